/**
 * Gerrit change verification on a real Temporal dev server against the fake Gerrit, for what a real Gerrit
 * cannot be made to do on demand (5xx answers while Kiln retries) and what needs no Gerrit behaviour of its own
 * (restarts between get-task and report, the intake's refusals, the CLI's view of stored verifications). The
 * flow itself runs against a real Gerrit in test/e2e/gerrit.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../../activities/index.ts';
import { BuildRepairer } from '../../src/builds/repair.ts';
import { buildWorkflowId, verificationWorkflowId } from '../../src/domain/buildId.ts';
import { GerritHosts } from '../../src/gerrit/settings.ts';
import { type Build } from '../../src/domain/build.ts';
import { type StoredVerification } from '../../src/domain/verification.ts';
import { eventually, startDevEnv, testLogger } from '../support/temporal.ts';
import { eventFactory, PUBLIC_URL, verificationHarness, type VerificationHarness } from '../support/verification.ts';

const online = eventFactory('online');
const WORKFLOWS = fileURLToPath(new URL('../../workflows/index.ts', import.meta.url));
const DIVERGENT = fileURLToPath(new URL('../fixtures/divergentInterceptors.ts', import.meta.url));
const run = promisify(execFile);
const KILN_BIN = new URL('../../bin/kiln.js', import.meta.url).pathname;

const CR = 'Code-Review';

describe('change verification', () => {
  let env: TestWorkflowEnvironment;
  const harnesses: VerificationHarness[] = [];
  before(async () => {
    env = await startDevEnv();
  });
  after(async () => {
    for (const h of harnesses) await h.close();
    await env?.teardown();
  });
  const harness = async (o: Parameters<typeof verificationHarness>[1] = {}) => {
    const h = await verificationHarness(env, o);
    harnesses.push(h);
    return h;
  };

  /** Waits until Kiln has posted `n` reviews on `change`, then returns them. */
  const reviews = (h: VerificationHarness, change: number, n: number) =>
    eventually(
      async () => h.kilnReviews(change).length >= n && h.kilnReviews(change),
      30_000,
      `${n} Kiln review(s) on change ${change}`,
    );

  /** A tinderbox's get-task, retried until a task is pending. */
  const take = (h: VerificationHarness, platform: string, id: string, caps: string[] = []) =>
    eventually(async () => (await h.getTask(platform, id, caps)) ?? false, 30_000, `a ${platform} task for ${id}`);

  const buildsOf = async (h: VerificationHarness, change: number, ps: number): Promise<Build[]> => {
    const res = await fetch(
      `${h.url}/api/v1/builds?buildset=${encodeURIComponent(`patch/gerrit/${h.host}/${change}/${ps}`)}`,
    );
    return ((await res.json()) as { builds: Build[] }).builds;
  };

  /** A change in project `core` (approval trigger) with Norbert's CR+2 on it, and the event. */
  const approvedChange = (h: VerificationHarness) => {
    const c = h.fake.createChange({ project: 'core', owner: 1 });
    h.fake.vote(c.number, 2, CR, 2);
    return { c, event: h.events.commentAdded(c.number, c.patchset, 'norbert', [{ type: CR, value: 2, oldValue: 0 }]) };
  };

  it('all platforms pass → Verified +1 once; a second trigger joins; a repeated approval does not rebuild', async () => {
    const h = await harness();
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const { c, event } = approvedChange(h);
      // The same patchset triggered twice at once: one verification, one build per platform.
      const [a, b] = await Promise.all([h.sendEvent(event), h.sendEvent(event)]);
      assert.equal(a.status, 202);
      assert.equal(b.status, 202);
      assert.equal(a.body.actions?.[0]?.workflowId, `verify/${h.host}/${c.number}/1`);
      const builds = await eventually(
        async () => {
          const x = await buildsOf(h, c.number, 1);
          return x.length === 2 && x;
        },
        30_000,
        'builds',
      );
      const linuxBuild = builds.find((x) => x.builder.builder === 'LINUX')!;
      // CQ properties and the buildset tag.
      assert.equal(linuxBuild.input.properties['event.change.number'], c.number);
      assert.equal(linuxBuild.input.properties['event.patchSet.ref'], c.patchset.ref);
      assert.equal(linuxBuild.input.properties.revision, c.patchset.revision);
      assert.equal(linuxBuild.input.properties.category, 'cq');
      assert.equal(linuxBuild.input.properties.patch_project, 'core');
      assert.ok(linuxBuild.tags.includes(`buildset:patch/gerrit/${h.host}/${c.number}/1`));

      const linux = await h.getTask('LINUX', 'tb-linux');
      assert.ok(linux);
      assert.equal(linux.gerrit?.ref, c.patchset.ref);
      assert.equal(linux.gerrit?.change, c.number);
      assert.equal(linux.builder.builder, 'LINUX');
      await reviews(h, c.number, 1);
      // WINDOWS needs the with-java capability.
      assert.equal(await h.getTask('WINDOWS', 'tb-win-nojava'), null);
      const win = await h.getTask('WINDOWS', 'tb-win', ['with-java']);
      assert.ok(win);
      await reviews(h, c.number, 2);
      assert.equal((await h.report(linux, 'SUCCESS', 'linux log\nall good\n')).status, 200);
      await reviews(h, c.number, 3);
      assert.equal((await h.report(win, 'SUCCESS')).status, 200);
      const r = await h.result(c.number, 1);
      assert.equal(r.vote, 1);
      assert.deepEqual(h.kilnReviews(c.number), [
        { message: `LINUX: taken by tb-linux (build ${linux.buildId}).`, patchset: 1 },
        { message: `WINDOWS: taken by tb-win (build ${win.buildId}).`, patchset: 1 },
        { message: `LINUX: SUCCESS on tb-linux. Log: ${PUBLIC_URL}/api/v1/builds/${linux.buildId}/log`, patchset: 1 },
        { message: `WINDOWS: SUCCESS on tb-win. Log: ${PUBLIC_URL}/api/v1/builds/${win.buildId}/log`, patchset: 1 },
        { message: 'Verified +1: all platforms passed (LINUX, WINDOWS).', labels: { Verified: 1 }, patchset: 1 },
      ]);
      // The uploaded log is the build's log.
      const log = await fetch(`${h.url}/api/v1/builds/${linux.buildId}/log`);
      assert.equal(log.status, 200);
      assert.match(await log.text(), /all good/);

      // The change is restored (an event that only asks the trigger to decide, not a new trigger): already
      // verified, nothing rebuilt or posted. (A fresh approval or `recheck` runs again: test/e2e/gerrit.test.ts.)
      const again = await h.sendEvent({ ...h.events.changeAbandoned(c.number, c.patchset), type: 'change-restored' });
      assert.equal(again.status, 202);
      const r2 = await h.result(c.number, 1);
      assert.equal(r2.phase, 'NOT_TRIGGERED');
      assert.match(r2.reason, /already verified/);
      assert.equal((await buildsOf(h, c.number, 1)).length, 2);
      assert.equal(h.kilnReviews(c.number).filter((x) => x.labels).length, 1, 'voted once');

      // Storage keeps both attempts, newest first: the verification that voted, and the re-trigger.
      const stored = await eventually(async () => {
        const res = await fetch(`${h.url}/api/v1/verifications?change=${c.number}&host=${h.host}`);
        const body = (await res.json()) as { verifications: StoredVerification[] };
        return body.verifications.length === 2 && body.verifications;
      });
      const voted = stored.find((v) => v.phase === 'ENDED');
      assert.ok(voted, JSON.stringify(stored));
      assert.equal(voted.vote, 1);
      assert.equal(voted.workflowId, `verify/${h.host}/${c.number}/1`);
      assert.deepEqual(
        voted.platforms.map((p) => [p.name, p.status, p.holder, p.buildId]),
        [
          ['LINUX', 'SUCCESS', 'tb-linux', linux.buildId],
          ['WINDOWS', 'SUCCESS', 'tb-win', win.buildId],
        ],
      );
      assert.equal(voted.messages.length, 5);
      assert.equal(stored.find((v) => v.phase === 'NOT_TRIGGERED')?.reason, r2.reason);
      // …and `kiln gerrit verifications` prints them.
      const { stdout } = await run(process.execPath, [
        KILN_BIN,
        'gerrit',
        'verifications',
        String(c.number),
        '--host',
        h.host,
        '--api',
        h.url,
      ]);
      assert.match(stdout, new RegExp(`change ${c.number} patch set 1  ENDED  Verified \\+1`));
      assert.match(stdout, new RegExp(`LINUX  SUCCESS on tb-linux  build ${linux.buildId}`));
      assert.match(stdout, /NOT_TRIGGERED {2}no vote/);
      // A bad query names the field.
      const bad = await fetch(`${h.url}/api/v1/verifications?patchset=1`);
      assert.equal(bad.status, 400);
      assert.match(((await bad.json()) as { message: string }).message, /change/);
    });
  });

  it('worker and API stopped between get-task and report: the report is accepted after restart', async () => {
    const h = await harness();
    const c = h.fake.createChange({ project: 'online', owner: 1 });
    let task!: NonNullable<Awaited<ReturnType<VerificationHarness['getTask']>>>;
    const first = await h.newWorker();
    await first.runUntil(async () => {
      await h.sendEvent(online.patchsetCreated(c.number, c.patchset));
      task = await take(h, 'LINUX', 'tb-1');
      await reviews(h, c.number, 1);
    });
    await h.restartApi();
    const second = await h.newWorker();
    await second.runUntil(async () => {
      const r = await h.report(task, 'SUCCESS');
      assert.equal(r.status, 200);
      assert.equal(r.body.status, 'SUCCESS');
      const v = await h.result(c.number, 1);
      assert.equal(v.vote, 1);
    });
    assert.deepEqual(h.kilnReviews(c.number), [
      { message: `LINUX: taken by tb-1 (build ${task.buildId}).`, patchset: 1 },
      { message: `LINUX: SUCCESS on tb-1. Log: ${PUBLIC_URL}/api/v1/builds/${task.buildId}/log`, patchset: 1 },
      { message: 'Verified +1: all platforms passed (LINUX).', labels: { Verified: 1 }, patchset: 1 },
    ]);
  });

  it('a child build whose workflow cannot go on is repaired, and the verification follows the new run to its vote', async () => {
    const h = await harness();
    const c = h.fake.createChange({ project: 'online', owner: 1 });
    // On a worker whose build workflows drift from Kiln's code (an extra timer after `start`), the
    // child's history no longer replays on Kiln's own code, as after a lost task.
    const divergent = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: h.taskQueue,
      workflowsPath: WORKFLOWS,
      interceptors: { workflowModules: [DIVERGENT] },
      activities: createActivities({
        storage: h.storage,
        logger: testLogger,
        gerrit: { hosts: new GerritHosts(h.settings) },
      }),
    });
    let task!: NonNullable<Awaited<ReturnType<VerificationHarness['getTask']>>>;
    await divergent.runUntil(async () => {
      await h.sendEvent(online.patchsetCreated(c.number, c.patchset));
      task = await take(h, 'LINUX', 'tb-1');
      await reviews(h, c.number, 1);
    });
    const verificationId = verificationWorkflowId(h.host, c.number, 1);
    const repairer = new BuildRepairer({
      client: env.client,
      storage: h.storage,
      taskQueue: h.taskQueue,
      logger: testLogger,
    });
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const repair = await eventually(
        () => repairer.repairIfBroken(buildWorkflowId(task.buildId)),
        60_000,
        'the child build repaired',
      );
      assert.equal(repair.parentWorkflowId, verificationId);
      assert.equal(repair.leaseReset, true);
      // The old lease is gone with the broken run; the build is offered again and taken anew.
      const late = await h.report(task, 'SUCCESS');
      assert.equal(late.body.code, 'LEASE_EXPIRED', JSON.stringify(late.body));
      const again = await take(h, 'LINUX', 'tb-2');
      assert.equal(again.buildId, task.buildId);
      assert.equal((await h.report(again, 'SUCCESS')).status, 200);
      const v = await h.result(c.number, 1);
      assert.equal(v.vote, 1);
      assert.equal(v.platforms[0]?.status, 'SUCCESS');
    });
    assert.deepEqual(
      h.kilnReviews(c.number).map((r) => r.message),
      [
        `LINUX: taken by tb-1 (build ${task.buildId}).`,
        'LINUX: tb-1 went silent and its lease expired; the task was rescheduled.',
        `LINUX: taken by tb-2 (build ${task.buildId}).`,
        `LINUX: SUCCESS on tb-2. Log: ${PUBLIC_URL}/api/v1/builds/${task.buildId}/log`,
        'Verified +1: all platforms passed (LINUX).',
      ],
    );
  });

  it('a Gerrit call being retried shows in the stored verification as "waiting on Gerrit: <cause>"', async () => {
    const h = await harness();
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const { c, event } = approvedChange(h);
      // Gerrit answers 503 to four reads of the change: Kiln retries in the open, then goes on.
      h.fake.failNext({ method: 'GET', path: '/detail', times: 4 });
      assert.equal((await h.sendEvent(event)).status, 202);
      const waiting = await eventually(
        async () => (await h.verifications(c.number)).find((v) => v.waiting !== undefined),
        30_000,
        'a stored verification that is waiting',
      );
      assert.equal(waiting.phase, 'EVALUATING');
      assert.match(
        waiting.waiting!,
        /^waiting on Gerrit: GET \/changes\/core~\d+\/detail.*: HTTP 503: Service Unavailable$/,
      );
      const building = await eventually(
        async () => (await h.verifications(c.number)).find((v) => v.phase === 'BUILDING'),
        60_000,
        'building once Gerrit answers',
      );
      assert.equal(building.waiting, undefined);
      await h.sendEvent(h.events.changeAbandoned(c.number, c.patchset));
      await h.result(c.number, 1);
    });
  });

  it("the intake refuses a wrong secret, malformed and unknown events, and ignores Kiln's own comments", async () => {
    const h = await harness();
    const c = h.fake.createChange({ project: 'core', owner: 1 });
    const ok = h.events.commentAdded(c.number, c.patchset, 'norbert', [{ type: CR, value: 2, oldValue: 0 }]);
    const wrong = await h.sendEvent(ok, 'not-the-secret-at-all');
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.code, 'UNAUTHENTICATED');
    const broken = await h.sendEvent('{"type": "comment-added", "change": ');
    assert.equal(broken.status, 400);
    assert.equal(broken.body.code, 'INVALID_ARGUMENT');
    const missing = await h.sendEvent({ ...ok, change: { ...ok.change, number: undefined } });
    assert.equal(missing.status, 400);
    assert.match(missing.body.message ?? '', /change\.number/);
    const unknown = await h.sendEvent({ type: 'ref-updated', refUpdate: { refName: 'refs/heads/master' } });
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.message ?? '', /ref-updated is not handled/);
    const own = await h.sendEvent(
      h.events.commentAdded(c.number, c.patchset, 'kiln', [{ type: 'Verified', value: 1, oldValue: 0 }]),
    );
    assert.equal(own.status, 202);
    assert.deepEqual(
      own.body.actions?.map((a) => a.action),
      ['ignore'],
    );
    const other = await h.sendEvent({ ...ok, change: { ...ok.change, project: 'not-configured' } });
    assert.equal(other.status, 202);
    assert.deepEqual(other.body.actions, [
      { action: 'ignore', reason: `project not-configured on ${h.host} is not configured for verification` },
    ]);
  });
});
