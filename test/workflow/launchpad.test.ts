/**
 * Schedulers, git pollers, promotions, periodic merges and notifications on a real Temporal dev
 * server with real git repositories and a fake Mattermost endpoint (HTTP level, real payloads).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { type Build } from '../../src/domain/build.ts';
import { type PromotionAttempt } from '../../src/domain/launchpad/promotion.ts';
import { launchpadIds } from '../../src/launchpad/context.ts';
import { refUpdatedHook } from '../../src/launchpad/runtime.ts';
import { startWebhookServer, type WebhookServer } from '../fakes/webhookServer.ts';
import { GitFixture, startGitHttpServer } from '../support/git.ts';
import { buildsOf, launchpadHarness } from '../support/launchpad.ts';
import { freePort } from '../support/processes.ts';
import { eventually, startDevEnv, testLogger } from '../support/temporal.ts';

const PROJECT = `
projects:
  - name: launchpad
    buckets:
      - name: ci
        builders:
          - name: lp-devel
          - name: lp-docs
          - name: lp-db-devel
`;

const T = 60_000;

describe('Launchpad features on a Temporal dev server', () => {
  let env: TestWorkflowEnvironment;
  let chat: WebhookServer;
  before(async () => {
    env = await startDevEnv();
    chat = await startWebhookServer();
  });
  after(async () => {
    await chat?.close();
    await env?.teardown();
  });

  const texts = (path: string) => chat.received.filter((r) => r.path === path).map((r) => String(r.json.text));

  it('polls a branch: each new commit built once with the commit as input and a blamelist, across worker restarts', async () => {
    const fx = new GitFixture('lp');
    fx.commit('master', 'before the poller');
    const h = await launchpadHarness(
      env,
      `${PROJECT}
repositories: [{ name: launchpad, url: "${fx.url}" }]
schedulers:
  - { name: lp-master, kind: on-commit, repo: launchpad, branch: master, pollInterval: 1s,
      builders: [launchpad/ci/lp-devel, launchpad/ci/lp-docs], properties: { suite: full } }
`,
    );
    try {
      const w1 = await h.newWorker();
      const [c1, c2] = await w1.runUntil(async () => {
        const r = await h.reconcile();
        assert.deepEqual(r.pollersStarted, [`poller/${h.taskQueue}/lp-master`]);
        await eventually(
          async () => (await h.store.getPollerStatus(`poller/${h.taskQueue}/lp-master`))?.lastSuccessTime,
          T,
          'baseline',
        );
        const a = fx.commit('master', 'one', {}, { name: 'Alice', email: 'alice@example.org' });
        const b = fx.commit('master', 'two', {}, { name: 'Bob', email: 'bob@example.org' });
        await eventually(
          async () => (await buildsOf(h.storage, 'launchpad/ci/lp-docs', b)).length === 1,
          T,
          'builds of two',
        );
        return [a, b];
      });
      // No worker: a commit lands; the next worker's poller picks up where the last one stopped.
      const c3 = fx.commit('master', 'three', {}, { name: 'Carol', email: 'carol@example.org' });
      const w2 = await h.newWorker();
      await w2.runUntil(async () => {
        assert.deepEqual((await h.reconcile()).pollersStarted, [], 'the running poller is kept');
        await eventually(async () => (await buildsOf(h.storage, 'launchpad/ci/lp-devel', c3)).length === 1, T, 'three');
        await new Promise((r) => setTimeout(r, 2500)); // a couple more polls: nothing new
      });
      for (const [sha, who] of [
        [c1, 'Alice <alice@example.org>'],
        [c2, 'Bob <bob@example.org>'],
        [c3, 'Carol <carol@example.org>'],
      ] as const) {
        for (const builder of ['launchpad/ci/lp-devel', 'launchpad/ci/lp-docs']) {
          const bs = await buildsOf(h.storage, builder, sha);
          assert.equal(bs.length, 1, `${builder} built ${sha} exactly once`);
          const b = bs[0] as Build;
          assert.deepEqual(b.input.gitilesCommit, {
            host: 'localhost',
            project: fx.bare.slice(1).replace(/\.git$/, ''),
            ref: 'refs/heads/master',
            id: sha,
          });
          assert.deepEqual(b.input.properties.blamelist, [who]);
          assert.equal(b.input.properties.revision, sha);
          assert.equal(b.input.properties.suite, 'full');
          assert.ok(b.tags.includes(`gitiles_ref:refs/heads/master`));
          assert.ok(b.tags.some((t) => t.startsWith('buildset:commit/gitiles/localhost/') && t.endsWith(`/+/${sha}`)));
        }
      }
      const all = await h.storage.searchBuilds({ builder: { project: 'launchpad' }, limit: 100 });
      assert.equal(all.builds.length, 6, 'the commit before the poller started is not built');
    } finally {
      await h.close();
      fx.cleanup();
    }
  });

  it('keeps polling an unreachable remote and shows the last error and the last success', async () => {
    const fx = new GitFixture('web');
    fx.commit('master', 'init');
    const port = await freePort();
    let http = await startGitHttpServer(join(fx.root, 'srv'), undefined, port);
    const h = await launchpadHarness(
      env,
      `${PROJECT}
repositories: [{ name: web, url: "http://127.0.0.1:${port}/web.git" }]
schedulers:
  - { name: web-master, kind: on-commit, repo: web, branch: master, pollInterval: 1s, builders: [launchpad/ci/lp-devel] }
`,
    );
    const w = await h.newWorker();
    try {
      await w.runUntil(async () => {
        await h.reconcile();
        const ok = await eventually(
          async () => {
            const s = (await h.api.listSchedules())[0];
            return s?.lastSuccessTime ? s : undefined;
          },
          T,
          'first success',
        );
        await http.close();
        const down = await eventually(
          async () => {
            const s = (await h.api.listSchedules())[0];
            return s?.lastError ? s : undefined;
          },
          T,
          'the error shows',
        );
        assert.match(down.lastError ?? '', /unable to access|Failed to connect|Connection refused|Could not connect/i);
        assert.ok(
          down.lastSuccessTime && down.lastSuccessTime >= (ok.lastSuccessTime ?? ''),
          'the last success is kept',
        );
        // Back up: the poller recovers by itself and builds what landed meanwhile.
        const c = fx.commit('master', 'while down');
        http = await startGitHttpServer(join(fx.root, 'srv'), undefined, port);
        await eventually(
          async () => (await buildsOf(h.storage, 'launchpad/ci/lp-devel', c)).length === 1,
          T,
          'recovered',
        );
        const up = (await h.api.listSchedules())[0];
        assert.equal(up?.lastError, undefined);
      });
    } finally {
      await http.close();
      await h.close();
      fx.cleanup();
    }
  });

  it('promotes a commit only when every required builder is green, announces it, and names what fed it', async () => {
    const fx = new GitFixture('lp');
    fx.commit('master', 'init');
    fx.branch('stable', 'master');
    const h = await launchpadHarness(
      env,
      `${PROJECT}
api: { publicUrl: "https://kiln.example.org" }
repositories: [{ name: launchpad, url: "${fx.url}" }]
schedulers:
  - { name: lp-master, kind: on-commit, repo: launchpad, branch: master, pollInterval: 1s,
      builders: [launchpad/ci/lp-devel, launchpad/ci/lp-docs] }
promotions:
  - { repo: launchpad, from: master, to: stable, when: [launchpad/ci/lp-devel, launchpad/ci/lp-docs] }
notifications:
  targets: [{ name: lp-buildbot, kind: mattermost, url: "${chat.url}/hooks/promote", channel: launchpad-buildbot }]
  rules:
    - { project: launchpad, on: [failure, fix, promotion-done, promotion-failed], targets: [lp-buildbot] }
`,
    );
    const w = await h.newWorker();
    try {
      await w.runUntil(async () => {
        await h.reconcile();
        await eventually(
          async () => (await h.store.getPollerStatus(`poller/${h.taskQueue}/lp-master`))?.lastSuccessTime,
          T,
          'baseline',
        );
        const green = fx.commit('master', 'green change');
        const builds = async (sha: string) =>
          eventually(
            async () => {
              const a = await buildsOf(h.storage, 'launchpad/ci/lp-devel', sha);
              const b = await buildsOf(h.storage, 'launchpad/ci/lp-docs', sha);
              return a[0] && b[0] ? ([a[0], b[0]] as const) : undefined;
            },
            T,
            `builds of ${sha}`,
          );
        const [g1, g2] = await builds(green);
        await h.finish(g1.id, 'SUCCESS');
        // One green builder is not enough.
        await new Promise((r) => setTimeout(r, 1500));
        assert.notEqual(fx.tip('stable'), green);
        await h.finish(g2.id, 'SUCCESS');
        await eventually(async () => fx.tip('stable') === green, T, 'stable promoted');
        const attempts = await eventually(
          async () => {
            const a = await h.store.listAttempts({ repo: 'launchpad' });
            return a[0]?.state === 'PROMOTED' ? a : undefined;
          },
          T,
          'attempt stored',
        );
        const a = attempts[0] as PromotionAttempt;
        assert.equal(a.commit, green);
        assert.deepEqual([...a.builds].sort(), [g1.id, g2.id].sort());
        assert.equal(
          (await h.api.listPromotions({ build: g2.id }))[0]?.id,
          a.id,
          'the build names the promotion it fed',
        );
        await eventually(
          async () => texts('/hooks/promote').some((t) => t.includes('done') && t.includes('stable')),
          T,
          'announced',
        );

        // A red commit is not promoted; its failure is announced.
        const red = fx.commit('master', 'breaks lp-devel');
        const [r1, r2] = await builds(red);
        await h.finish(r1.id, 'FAILURE');
        await h.finish(r2.id, 'SUCCESS');
        await eventually(
          async () => texts('/hooks/promote').some((t) => t.includes('lp-devel') && t.includes('FAILURE')),
          T,
          'failure announced',
        );
        await new Promise((r) => setTimeout(r, 1500));
        assert.equal(fx.tip('stable'), green, 'red is never promoted');

        // The fix: green again, promoted past the red commit; "fixed" is announced.
        const fix = fx.commit('master', 'fixes lp-devel');
        const [f1, f2] = await builds(fix);
        await h.finish(f1.id, 'SUCCESS');
        await h.finish(f2.id, 'SUCCESS');
        await eventually(async () => fx.tip('stable') === fix, T, 'fix promoted');
        await eventually(async () => texts('/hooks/promote').some((t) => t.includes('(fixed)')), T, 'fix announced');
        const msg = texts('/hooks/promote').find((t) => t.includes('(fixed)')) ?? '';
        assert.match(
          msg,
          new RegExp(`\\(https://kiln\\.example\\.org/api/v1/builds/${f1.id}\\)`),
          'links to the build',
        );
        const ch = chat.received.find((r) => r.path === '/hooks/promote');
        assert.equal(ch?.json.channel, 'launchpad-buildbot');
        // Exactly one message per event: 2 promotions, 1 failure, 1 fix.
        await eventually(async () => texts('/hooks/promote').length >= 4, T, 'four messages');
        await new Promise((r) => setTimeout(r, 2000));
        assert.equal(texts('/hooks/promote').length, 4, texts('/hooks/promote').join('\n---\n'));
      });
    } finally {
      await h.close();
      fx.cleanup();
    }
  });

  it('a newer green commit supersedes an older one still waiting; a diverged target is refused, never forced', async () => {
    const fx = new GitFixture('lp');
    fx.commit('master', 'init');
    fx.branch('stable', 'master');
    const h = await launchpadHarness(
      env,
      `${PROJECT}
repositories: [{ name: launchpad, url: "${fx.url}" }]
promotions:
  - { repo: launchpad, from: master, to: stable, when: [launchpad/ci/lp-devel] }
`,
    );
    try {
      const repo = h.context.repo('launchpad');
      assert.ok(repo);
      const older = fx.commit('master', 'older');
      const newer = fx.commit('master', 'newer');
      const ids: Record<string, string> = {};
      for (const sha of [older, newer]) {
        const b = await h.service.schedule({
          builder: { project: 'launchpad', bucket: 'ci', builder: 'lp-devel' },
          gitilesCommit: h.context.commitOf(repo, 'master', sha),
          tags: [
            `buildset:commit/gitiles/${h.context.commitOf(repo, 'master', sha).host}/${h.context.commitOf(repo, 'master', sha).project}/+/${sha}`,
          ],
        });
        ids[sha] = b.id;
      }
      const w = await h.newWorker();
      await w.runUntil(async () => {
        for (const sha of [older, newer]) await h.finish(ids[sha] ?? '', 'SUCCESS');
        await eventually(async () => fx.tip('stable') === newer, T, 'newest promoted');
        const attempts = await eventually(
          async () => {
            const a = await h.store.listAttempts({ name: 'launchpad-master-to-stable' });
            return a.length >= 1 && a.every((x) => x.state !== 'RUNNING') && a.some((x) => x.commit === newer)
              ? a
              : undefined;
          },
          T,
          'attempts',
        );
        // Either the newer commit superseded the older one still waiting, or (when the older one's attempt ran
        // before the newer build ended) the older was promoted first and the newer then moved stable on from it.
        const pushedNewer = attempts.find((x) => x.commit === newer && x.state === 'PROMOTED');
        assert.ok(pushedNewer, `the newer commit was promoted: ${JSON.stringify(attempts)}`);
        const pushedOlder = attempts.filter((x) => x.commit === older && x.state === 'PROMOTED');
        if (pushedOlder.length === 0) {
          assert.ok(
            attempts.every((x) => x.commit !== older || x.state === 'UP_TO_DATE'),
            `the older commit is never pushed after the newer one: ${JSON.stringify(attempts)}`,
          );
        } else {
          assert.equal(pushedOlder.length, 1, 'the older commit was pushed once');
          assert.equal(pushedNewer.before, older, 'the older commit was pushed before the newer one, never after');
        }
        assert.ok(fx.isAncestor(older, newer));
        // stable diverges (a hotfix on it); the next green master commit cannot fast-forward.
        const hotfix = fx.commit('stable', 'hotfix');
        const next = fx.commit('master', 'next');
        const b = await h.service.schedule({
          builder: { project: 'launchpad', bucket: 'ci', builder: 'lp-devel' },
          gitilesCommit: h.context.commitOf(repo, 'master', next),
          tags: [
            `buildset:commit/gitiles/${h.context.commitOf(repo, 'master', next).host}/${h.context.commitOf(repo, 'master', next).project}/+/${next}`,
          ],
        });
        await h.finish(b.id, 'SUCCESS');
        const failed = await eventually(
          async () => {
            const a = (await h.store.listAttempts({ name: 'launchpad-master-to-stable' }))[0];
            return a?.state === 'FAILED' ? a : undefined;
          },
          T,
          'refused',
        );
        assert.match(failed.reason ?? '', /not a fast-forward, and Kiln never forces/);
        assert.equal(fx.tip('stable'), hotfix);
        // The dry run says the same, and exactly what it would push where.
        const dry = await h.api.dryRun();
        assert.equal(dry[0]?.state, 'FAILED');
      });
    } finally {
      await h.close();
      fx.cleanup();
    }
  });

  it('periodic merges: merges on trigger, stops on a conflict with the reason and a notification; dry run pushes nothing', async () => {
    const fx = new GitFixture('lp');
    fx.commit('master', 'init', { 'code.py': 'v1\n' });
    fx.branch('stable', 'master');
    fx.branch('db-devel', 'master');
    fx.commit('db-devel', 'schema', { 'schema.sql': 'create table x;\n' });
    const h = await launchpadHarness(
      env,
      `${PROJECT}
repositories: [{ name: launchpad, url: "${fx.url}", bucket: launchpad/ci }]
merges:
  - { name: stable-to-db-devel, repo: launchpad, from: stable, to: db-devel, every: 6h }
notifications:
  targets: [{ name: chat, kind: mattermost, url: "${chat.url}/hooks/merge" }]
  rules: [{ repo: launchpad, on: [promotion-done, promotion-failed], targets: [chat] }]
`,
    );
    const w = await h.newWorker();
    try {
      await w.runUntil(async () => {
        const r = await h.reconcile();
        assert.deepEqual(r.created, [launchpadIds.merge(h.taskQueue, 'stable-to-db-devel')]);
        const s = fx.commit('stable', 'stable fix', { 'code.py': 'v2\n' });
        const dryBefore = fx.tip('db-devel');
        const dry = await h.api.dryRun('launchpad');
        assert.equal(dry[0]?.state, 'DRY_RUN');
        assert.match(
          dry[0]?.message ?? '',
          new RegExp(
            `^would push [0-9a-f]{40} to ${fx.url.replace(/[/.]/g, '\\$&')} refs/heads/db-devel \\(merge commit`,
          ),
        );
        assert.equal(fx.tip('db-devel'), dryBefore, 'the dry run pushed nothing');
        await h.api.act('stable-to-db-devel', 'trigger');
        await eventually(async () => fx.isAncestor(s, fx.tip('db-devel') ?? ''), T, 'merged');
        const merge = fx.tip('db-devel') ?? '';
        assert.deepEqual(fx.parents(merge), [dryBefore, s]);
        await eventually(
          async () => texts('/hooks/merge').some((t) => t.includes('merge stable → db-devel') && t.includes('done')),
          T,
          'announced',
        );
        fx.commit('db-devel', 'db edits code', { 'code.py': 'db\n' });
        fx.commit('stable', 'stable edits code', { 'code.py': 'stable\n' });
        const tip = fx.tip('db-devel');
        await h.api.act('stable-to-db-devel', 'trigger');
        const failed = await eventually(
          async () => {
            const a = (await h.store.listAttempts({ name: 'stable-to-db-devel' }))[0];
            return a?.state === 'FAILED' ? a : undefined;
          },
          T,
          'conflict',
        );
        assert.match(failed.reason ?? '', /merging stable into db-devel conflicts in code\.py/);
        assert.equal(fx.tip('db-devel'), tip);
        await eventually(
          async () => texts('/hooks/merge').some((t) => t.includes('failed') && t.includes('code.py')),
          T,
          'conflict announced',
        );
      });
    } finally {
      await h.close();
      fx.cleanup();
    }
  });

  it('reconciles schedules with the config: created, updated, deleted; pause, unpause, trigger; backfill over hours', async () => {
    const fx = new GitFixture('lp');
    fx.commit('master', 'init');
    fx.branch('stable', 'master');
    fx.branch('db-devel', 'master');
    const yaml = (cron: string, withMerge: boolean) => `${PROJECT}
repositories: [{ name: launchpad, url: "${fx.url}" }]
schedulers:
  - { name: nightly, kind: periodic, cron: "${cron}", builders: [launchpad/ci/lp-docs], overlap: skip, catchupWindow: 1h }
${withMerge ? 'merges:\n  - { name: stable-to-db-devel, repo: launchpad, from: stable, to: db-devel, every: 6h }\n' : ''}`;
    const h = await launchpadHarness(env, yaml('0 3 * * *', true));
    const w = await h.newWorker();
    try {
      await w.runUntil(async () => {
        const nightly = launchpadIds.schedule(h.taskQueue, 'nightly');
        const merge = launchpadIds.merge(h.taskQueue, 'stable-to-db-devel');
        assert.deepEqual((await h.reconcile()).created.sort(), [merge, nightly].sort());
        const d1 = await env.client.schedule.getHandle(nightly).describe();
        assert.deepEqual(d1.spec.calendars?.[0]?.hour, [{ start: 3, end: 3, step: 1 }]);
        assert.equal(d1.policies.overlap, 'SKIP');
        assert.equal(d1.policies.catchupWindow, 3600_000);

        // Backfill 12 hours of the 6-hourly merge: two runs, both merging nothing new (UP_TO_DATE).
        const now = Date.now();
        await env.client.schedule
          .getHandle(merge)
          .backfill({ start: new Date(now - 12 * 3600_000 + 1000), end: new Date(now), overlap: 'ALLOW_ALL' });
        await eventually(
          async () => {
            let n = 0;
            for await (const x of env.client.workflow.list({
              query: `WorkflowId STARTS_WITH '${merge}' AND ExecutionStatus = 'Completed'`,
            }))
              n += x ? 1 : 0;
            return n === 2;
          },
          T,
          'two backfilled merges',
        );

        await h.api.act('nightly', 'pause', 'release freeze');
        h.useConfig(yaml('30 4 * * *', false));
        const r = await h.reconcile();
        assert.deepEqual(r.updated, [nightly]);
        assert.deepEqual(r.deleted, [merge], 'a schedule removed from the config is deleted');
        const d2 = await env.client.schedule.getHandle(nightly).describe();
        assert.deepEqual(d2.spec.calendars?.[0]?.hour, [{ start: 4, end: 4, step: 1 }]);
        assert.equal(d2.state.paused, true, 'a paused schedule stays paused across reconciles');
        const listed = await h.api.listSchedules();
        assert.deepEqual(
          listed.map((s) => [s.name, s.paused, s.note]),
          [['nightly', true, 'release freeze']],
        );
        await h.api.act('nightly', 'unpause');
        assert.equal((await env.client.schedule.getHandle(nightly).describe()).state.paused, false);

        await h.api.act('nightly', 'trigger');
        const b = await eventually(
          async () => {
            const p = await h.storage.searchBuilds({ tags: ['scheduler:nightly'] });
            return p.builds[0];
          },
          T,
          'periodic build',
        );
        assert.equal(b.builder.builder, 'lp-docs');
        // The run waits for its builds, so "skip" skips while they run.
        let running = 0;
        for await (const x of env.client.workflow.list({
          query: `WorkflowId STARTS_WITH '${nightly}' AND ExecutionStatus = 'Running'`,
        }))
          running += x ? 1 : 0;
        assert.equal(running, 1);
        await h.finish(b.id, 'SUCCESS');
        await eventually(
          async () => {
            let n = 0;
            for await (const x of env.client.workflow.list({
              query: `WorkflowId STARTS_WITH '${nightly}' AND ExecutionStatus = 'Completed'`,
            }))
              n += x ? 1 : 0;
            return n === 1;
          },
          90_000,
          'the run ends with its builds',
        );
        h.useConfig(PROJECT);
        assert.deepEqual((await h.reconcile()).deleted, [nightly], 'none left behind');
      });
    } finally {
      await h.close();
      fx.cleanup();
    }
  });

  it('a Gerrit ref-updated event makes the poller poll at once', async () => {
    const fx = new GitFixture('core');
    fx.commit('master', 'init');
    const h = await launchpadHarness(
      env,
      `${PROJECT}
repositories: [{ name: core, url: "${fx.url}", gerrit: { host: gerrit.example.org, project: core } }]
schedulers:
  - { name: core-master, kind: on-commit, repo: core, branch: master, pollInterval: 1h, builders: [launchpad/ci/lp-devel] }
`,
    );
    const w = await h.newWorker();
    try {
      await w.runUntil(async () => {
        await h.reconcile();
        await eventually(
          async () => (await h.store.getPollerStatus(`poller/${h.taskQueue}/core-master`))?.lastSuccessTime,
          T,
          'baseline',
        );
        const c = fx.commit('master', 'merged in Gerrit');
        const hook = refUpdatedHook(h.config, env.client, testLogger);
        const other = await hook('gerrit.example.org', {
          type: 'ref-updated',
          refUpdate: { project: 'other', refName: 'refs/heads/master', newRev: c },
        });
        assert.deepEqual(other, []);
        const acts = await hook('gerrit.example.org', {
          type: 'ref-updated',
          refUpdate: { project: 'core', refName: 'refs/heads/master', newRev: c },
        });
        assert.deepEqual(
          acts.map((a) => a.workflowId),
          [`poller/${h.taskQueue}/core-master`],
        );
        await eventually(
          async () => (await buildsOf(h.storage, 'launchpad/ci/lp-devel', c)).length === 1,
          30_000,
          'built without waiting an hour',
        );
      });
    } finally {
      await h.close();
      fx.cleanup();
    }
  });
});
