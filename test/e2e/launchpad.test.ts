/**
 * Seed 004 end to end: Launchpad's Buildbot setup on Kiln. `kiln dev` (dev server, worker, API, a
 * runner) with a Launchpad-shaped config — four branches (master, stable, db-devel, db-stable),
 * pollers on master and db-devel, promotions master → stable and db-devel → db-stable after green
 * builds, a periodic merge stable → db-devel, and a Mattermost channel (faked at the HTTP level).
 * The builders' command builds the polled commit for real: it reads the commit's `status` file with
 * git and fails unless it says "green". Operators' commands run as the CLI.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type PromotionAttempt } from '../../src/domain/launchpad/promotion.ts';
import { type ScheduleView } from '../../src/launchpad/api.ts';
import { startWebhookServer, type WebhookServer } from '../fakes/webhookServer.ts';
import { GitFixture } from '../support/git.ts';
import { freePort, kiln, type KilnProcess, startKiln } from '../support/kilnDev.ts';

const T = 180_000;

async function until<T>(fn: () => Promise<T | undefined | false>, what: string, timeoutMs = T): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(300);
  }
}

describe("Launchpad's buildbot setup on Kiln (seed 004)", () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-lp-e2e-'));
  let fx: GitFixture;
  let chat: WebhookServer;
  let dev: KilnProcess;
  let api: string;

  before(async () => {
    fx = new GitFixture('launchpad');
    fx.commit('master', 'initial', { status: 'green\n', 'lib/lp.py': 'print("lp")\n' });
    fx.branch('stable', 'master');
    fx.branch('db-devel', 'master');
    fx.commit('db-devel', 'database patch', { 'database/schema/patch-2211-00-0.sql': 'create table x();\n' });
    fx.branch('db-stable', 'db-devel');
    chat = await startWebhookServer();
    const apiPort = await freePort();
    api = `http://127.0.0.1:${apiPort}`;
    const build = [
      'sh',
      '-c',
      `rev=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.env.KILN_PROPERTIES_FILE)).revision)'); echo "building $rev"; git --git-dir='${fx.bare}' show "$rev:status" | grep -qx green`,
    ];
    writeFileSync(
      join(dir, 'kiln.yaml'),
      `
dataDir: ${dir}/data
api: { host: 127.0.0.1, port: ${apiPort}, publicUrl: "${api}" }
temporal: { devServer: { port: ${await freePort()}, uiPort: ${await freePort()} } }
devRunner: { peekIntervalSecs: 0.5, workDir: ${dir}/runner }
projects:
  - name: launchpad
    buckets:
      - name: ci
        builders:
          - { name: lp-devel, command: ${JSON.stringify(build)} }
          - { name: lp-db-devel, command: ${JSON.stringify(build)} }
repositories:
  - { name: launchpad, url: "${fx.url}", bucket: launchpad/ci }
schedulers:
  - { name: lp-devel, kind: on-commit, repo: launchpad, branch: master, pollInterval: 1s, builders: [launchpad/ci/lp-devel] }
  - { name: lp-db-devel, kind: on-commit, repo: launchpad, branch: db-devel, pollInterval: 1s, builders: [launchpad/ci/lp-db-devel] }
promotions:
  - { repo: launchpad, from: master, to: stable, when: [launchpad/ci/lp-devel] }
  - { repo: launchpad, from: db-devel, to: db-stable, when: [launchpad/ci/lp-db-devel] }
merges:
  - { name: stable-to-db-devel, repo: launchpad, from: stable, to: db-devel, every: 15s }
notifications:
  targets:
    - { name: launchpad-buildbot, kind: mattermost, url: "${chat.url}/hooks/lp", channel: launchpad-buildbot }
  rules:
    - { project: launchpad, on: [end, promotion-done, promotion-failed], targets: [launchpad-buildbot] }
`,
    );
    dev = startKiln(['dev', '-c', join(dir, 'kiln.yaml')]);
    await dev.waitFor('Kiln is running', 240_000);
  });

  after(async () => {
    await dev?.stop();
    await chat?.close();
    fx?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const cli = async <T>(args: string[]): Promise<T> => {
    const r = await kiln([...args, '--api', api, '--json']);
    assert.equal(r.code, 0, `kiln ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  const messages = () => chat.received.map((r) => String(r.json.text));

  it('polls, builds, promotes only green commits, merges stable into db-devel on schedule, and announces it all', async () => {
    // Both pollers have recorded where their branch is.
    await until(async () => {
      const s = await cli<ScheduleView[]>(['schedules', 'list']);
      return s.filter((x) => x.kind === 'on-commit' && x.lastSuccessTime).length === 2;
    }, 'pollers started');
    const schedules = await cli<ScheduleView[]>(['schedules', 'list']);
    assert.deepEqual(
      schedules.map((s) => [s.name, s.kind]),
      [
        ['lp-devel', 'on-commit'],
        ['lp-db-devel', 'on-commit'],
        ['stable-to-db-devel', 'merge'],
      ],
    );
    assert.ok(schedules[2]?.nextRunTime, 'the merge is scheduled');

    // A green commit on master: polled, built, promoted to stable, announced.
    const green = fx.commit('master', 'Fix bug 2000000', { 'lib/lp.py': 'print("fixed")\n' });
    await until(async () => fx.tip('stable') === green, 'green commit promoted to stable');
    await until(
      async () => messages().some((m) => m.includes('launchpad/ci/lp-devel #1') && m.includes('SUCCESS')),
      'build announced',
    );
    await until(async () => messages().some((m) => m.includes('promotion master → stable')), 'promotion announced');
    const promoted = messages().find((m) => m.includes('promotion master → stable')) ?? '';
    assert.match(promoted, new RegExp(`pushed ${green.slice(0, 12)} to stable \\(fast-forward`));
    assert.equal(chat.received[0]?.json.channel, 'launchpad-buildbot');

    // A red commit is built, fails, is announced, and is not promoted.
    const red = fx.commit('master', 'Break the test suite', { status: 'red\n' });
    await until(
      async () => messages().some((m) => m.includes('launchpad/ci/lp-devel #2') && m.includes('FAILURE')),
      'failure announced',
    );
    const failure = messages().find((m) => m.includes('launchpad/ci/lp-devel #2')) ?? '';
    assert.match(failure, new RegExp(`on master @ \`${red.slice(0, 12)}\``));
    assert.match(failure, /\[build \d+\]\(http:\/\/127\.0\.0\.1:\d+\/api\/v1\/builds\/\d+\)/, 'links to the build');

    // On schedule, stable (with the green commit) is merged into db-devel; db-devel's poller builds the
    // merge, and once it is green it is promoted to db-stable.
    await until(async () => fx.isAncestor(green, fx.tip('db-devel') ?? ''), 'stable merged into db-devel');
    const merge = fx.tip('db-devel') ?? '';
    assert.equal(fx.parents(merge).length, 2, 'a merge commit');
    await until(async () => fx.tip('db-stable') === merge, 'db-devel promoted to db-stable after its green build');
    assert.equal(fx.tip('stable'), green, 'the red commit never reached stable');
    assert.ok(!fx.isAncestor(red, fx.tip('db-stable') ?? ''));
    await until(
      async () => messages().some((m) => m.includes('merge stable → db-devel') && m.includes('done')),
      'merge announced',
    );

    // What operators see.
    const attempts = await cli<PromotionAttempt[]>(['promotions', '--repo', 'launchpad']);
    const byName = (n: string) => attempts.filter((a) => a.name === n && a.state === 'PROMOTED');
    assert.equal(byName('launchpad-master-to-stable')[0]?.commit, green);
    assert.equal(byName('launchpad-db-devel-to-db-stable')[0]?.commit, merge);
    assert.ok(byName('stable-to-db-devel').length >= 1);
    const fedBy = byName('launchpad-master-to-stable')[0]?.builds[0] ?? '';
    const human = await kiln(['get', fedBy, '--api', api]);
    assert.match(
      human.stdout,
      /promotions fed:\n\s+\S+\s+promotion\/kiln\/launchpad-master-to-stable\/\d+\s+launchpad master → stable\s+PROMOTED/,
    );
    assert.match(human.stdout, new RegExp(`commit:\\s+localhost/\\S+ refs/heads/master ${green}`));
    const dry = await kiln(['promotions', '--dry-run', '--api', api]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(
      dry.stdout,
      /promotion launchpad-master-to-stable \(launchpad master → stable\): NOT_GREEN: .*lp-devel #2 FAILURE/,
    );
    const list = await kiln(['schedules', 'list', '--api', api]);
    assert.match(list.stdout, /stable-to-db-devel {2}merge {2}every 15s/);
    assert.match(list.stdout, /last success: \d{4}-/);
  });
});
