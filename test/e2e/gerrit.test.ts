/**
 * LibreOffice's verification flow against a real Gerrit 3.10 (one server for this whole file): Gerrit's events
 * reach Kiln through `kiln gerrit listen` running `ssh … gerrit stream-events`, Kiln reads changes and posts
 * reviews through Gerrit's REST API, tinderboxes take and report tasks. Every message, vote and submit is read
 * back from Gerrit itself.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { type Worker } from '@temporalio/worker';
import { type TinderboxTask } from '../../src/builds/tinderbox.ts';
import { KILN_VERSION, startTinderboxSsh } from '../../src/builds/tinderboxSsh.ts';
import { GerritHosts } from '../../src/gerrit/settings.ts';
import { type StoredVerification } from '../../src/domain/verification.ts';
import { setUpGerrit, sshCommandLine, startGerrit, type GerritServer, type GerritWorld } from '../support/gerrit.ts';
import { eventually, startDevEnv, testLogger } from '../support/temporal.ts';
import { PUBLIC_URL, realGerritHarness, type RealGerritHarness } from '../support/verification.ts';

const CR = 'Code-Review';
const CQ = 'Commit-Queue';
const LINUX = 'lo/gerrit/LINUX';
const WINDOWS = 'lo/gerrit/WINDOWS';
const MAC = 'lo/gerrit/MAC';

describe('verification against a real Gerrit', () => {
  let env: TestWorkflowEnvironment;
  let server: GerritServer;
  let world: GerritWorld;
  /** Kiln with a 1 h idle timeout, and one with 6 s (its own projects). */
  let h: RealGerritHarness;
  let hIdle: RealGerritHarness;
  const closers: (() => Promise<void>)[] = [];

  before(async () => {
    const started = Date.now();
    [env, server] = await Promise.all([startDevEnv(), startGerrit()]);
    closers.push(
      () => env.teardown(),
      () => server.stop(),
    );
    const up = Date.now();
    world = await setUpGerrit(server);
    await world.createGroup('Hidden Reviewers', [world.norbert], { visibleToAll: false });
    await Promise.all([
      ...['core', 'online', 'trio', 'cq', 'hidden', 'idle'].map((p) => world.createProject(p)),
      world.createProject('novote', { verifiedLabel: false }),
    ]);
    h = await realGerritHarness(env, world, [
      { project: 'core', trigger: 'approval', reviewerGroup: 'Reviewers', builders: [LINUX, WINDOWS] },
      { project: 'trio', trigger: 'approval', reviewerGroup: 'Reviewers', builders: [LINUX, WINDOWS, MAC] },
      { project: 'hidden', trigger: 'approval', reviewerGroup: 'Hidden Reviewers', builders: [LINUX] },
      { project: 'online', trigger: 'patchset-created', builders: [LINUX] },
      { project: 'novote', trigger: 'patchset-created', builders: [LINUX] },
      { project: 'cq', trigger: 'commit-queue', builders: [LINUX] },
    ]);
    closers.unshift(() => h.close());
    hIdle = await realGerritHarness(
      env,
      world,
      [{ project: 'idle', trigger: 'patchset-created', builders: [LINUX, WINDOWS] }],
      { idleTimeoutSecs: 6 },
    );
    closers.unshift(() => hIdle.close());
    const workers: Worker[] = [await h.newWorker(), await hIdle.newWorker()];
    const running = workers.map((w) => w.run());
    closers.unshift(async () => {
      for (const w of workers) w.shutdown();
      await Promise.all(running);
    });
    console.log(
      `real Gerrit: daemon up in ${server.startupMs} ms (${Math.round(server.rssBytes() / 2 ** 20)} MB RSS), ` +
        `Gerrit set up and Kiln listening after ${Date.now() - up} ms more; suite ready in ${Date.now() - started} ms`,
    );
  });
  after(async () => {
    if (server) console.log(`real Gerrit RSS at the end: ${Math.round(server.rssBytes() / 2 ** 20)} MB`);
    for (const c of closers) await c().catch((e: unknown) => console.error(e));
  });

  const take = (k: RealGerritHarness, platform: string, id: string, caps: string[] = []) =>
    eventually(async () => (await k.getTask(platform, id, caps)) ?? false, 60_000, `a ${platform} task for ${id}`);
  /** Waits until Kiln posted at least `n` messages on the change; returns them. */
  const messages = (change: number, n: number) =>
    eventually(
      async () => {
        const m = await world.kilnMessages(change);
        return m.length >= n && m;
      },
      60_000,
      `${n} Kiln message(s) on change ${change}`,
    );
  const texts = async (change: number, n: number) => (await messages(change, n)).map((m) => m.message);
  /** Waits until the change has `n` stored verifications matching `ok`; returns them (newest first). */
  const stored = (k: RealGerritHarness, change: number, ok: (v: StoredVerification[]) => boolean, what: string) =>
    eventually(
      async () => {
        const v = await k.verifications(change);
        return ok(v) && v;
      },
      60_000,
      what,
    );
  const kilnVerified = async (change: number) =>
    (await world.detail(change)).labels?.Verified?.all?.find((a) => a._account_id === world.kiln.id)?.value ?? 0;
  const log = (t: TinderboxTask) => `${PUBLIC_URL}/api/v1/builds/${t.buildId}/log`;

  it("Norbert's rule: a non-member's CR+1 runs nothing, the member's CR+2 runs both platforms → Verified +1", async () => {
    const c = await world.createChange(world.alice, 'core', 'Fix the frobnicator\n\nKiln-Requires: with-java');
    await world.review(world.bob, c.number, { labels: { [CR]: 1 } });
    const [no] = await stored(h, c.number, (v) => v.some((x) => x.phase === 'NOT_TRIGGERED'), 'bob evaluated');
    assert.equal(no?.reason, 'no Code-Review > 0 by a member of the reviewer group');
    await world.review(world.norbert, c.number, { labels: { [CR]: 2 } });
    // The change asks for with-java: no platform goes to a tinderbox without it.
    const [building] = await stored(h, c.number, (v) => v.some((x) => x.phase === 'BUILDING'), 'building');
    assert.deepEqual(building?.requirements, ['with-java']);
    assert.equal(await h.getTask('LINUX', 'tb-linux-plain'), null);
    const linux = await take(h, 'LINUX', 'tb-linux', ['with-java']);
    const win = await take(h, 'WINDOWS', 'tb-win', ['with-java']);
    assert.equal(linux.gerrit?.ref, c.patchset.ref);
    // URLs come from Gerrit itself: http, under its /r path prefix.
    assert.equal(linux.properties.gerrit, server.baseUrl);
    assert.equal(linux.gerrit?.url, `${server.baseUrl}/c/core/+/${c.number}`);
    await messages(c.number, 2);
    assert.equal((await h.report(linux, 'SUCCESS', 'all good\n')).status, 200);
    assert.equal((await h.report(win, 'SUCCESS')).status, 200);
    assert.equal((await h.result(c.number, 1)).vote, 1);
    const posted = await messages(c.number, 5);
    assert.deepEqual(
      posted.map((m) => m.message).sort(),
      [
        `LINUX: taken by tb-linux (build ${linux.buildId}).`,
        `WINDOWS: taken by tb-win (build ${win.buildId}).`,
        `LINUX: SUCCESS on tb-linux. Log: ${log(linux)}`,
        `WINDOWS: SUCCESS on tb-win. Log: ${log(win)}`,
        'Verified +1: all platforms passed (LINUX, WINDOWS).',
      ].sort(),
    );
    assert.equal(posted.at(-1)?.votes, 'Verified+1');
    assert.equal(await kilnVerified(c.number), 1);

    // A plain reply lists the standing votes without oldValue: nothing changed, nothing read, nothing stored.
    const before = (await h.verifications(c.number)).length;
    await world.review(world.alice, c.number, { message: 'Thanks!' });
    await eventually(async () => h.listenerOutput().includes('ignore (no Code-Review/Verified vote changed)'));
    assert.equal((await h.verifications(c.number)).length, before);
  });

  it('fail fast: a failure discards the platforms not yet taken; the running one reports; Verified -1', async () => {
    const c = await world.createChange(world.alice, 'trio', 'Break the build');
    await world.review(world.norbert, c.number, { labels: { [CR]: 2 } });
    const linux = await take(h, 'LINUX', 'tb-linux');
    const mac = await take(h, 'MAC', 'tb-mac');
    await messages(c.number, 2);
    await h.report(linux, 'FAILURE', 'error: it broke\n');
    await eventually(
      async () => (await texts(c.number, 3)).includes('LINUX failed: discarded WINDOWS (not started yet).'),
      60_000,
      'discarded message',
    );
    assert.equal(await h.getTask('WINDOWS', 'tb-win'), null, 'the discarded task is not handed out');
    await h.report(mac, 'SUCCESS');
    const r = await h.result(c.number, 1);
    assert.equal(r.vote, -1);
    const all = await texts(c.number, 6);
    assert.equal(all.at(-1), 'Verified -1: failed on LINUX (discarded: WINDOWS).');
    assert.ok(all.includes(`MAC: SUCCESS on tb-mac. Log: ${log(mac)}`));
    assert.equal(await kilnVerified(c.number), -1);

    // recheck after Kiln's own -1 runs again (its earlier verdict does not veto).
    await world.review(world.alice, c.number, { message: 'recheck' });
    await stored(h, c.number, (v) => v.filter((x) => x.phase === 'BUILDING').length === 1, 'rerun building');
    const again = await take(h, 'LINUX', 'tb-linux-2');
    assert.notEqual(again.buildId, linux.buildId);
    await world.abandon(world.alice, c.number); // leaves no pending task for the tests after this one
  });

  it('a new patchset cancels the old verification; the old tinderbox learns it; the new one runs', async () => {
    const c = await world.createChange(world.alice, 'online', 'Online thing');
    const old = await take(h, 'LINUX', 'tb-1');
    await messages(c.number, 1);
    const ps2 = await world.newPatchset(world.alice, c.number);
    const r1 = await h.result(c.number, 1);
    assert.equal(r1.canceled, 'patch set 2 uploaded');
    const late = await h.report(old, 'SUCCESS');
    assert.equal(late.status, 409);
    assert.equal(late.body.code, 'BUILD_IS_COMPLETED');
    const fresh = await take(h, 'LINUX', 'tb-2');
    assert.equal(fresh.gerrit?.patchset, 2);
    assert.equal(fresh.gerrit?.ref, ps2.ref);
    await h.report(fresh, 'SUCCESS');
    assert.equal((await h.result(c.number, 2)).vote, 1);
    const posted = await messages(c.number, 5);
    assert.deepEqual(
      posted.map((m) => [m.patchset, m.message]),
      [
        [1, `LINUX: taken by tb-1 (build ${old.buildId}).`],
        [1, 'Verification of patch set 1 canceled: patch set 2 uploaded. Canceled: LINUX.'],
        [2, `LINUX: taken by tb-2 (build ${fresh.buildId}).`],
        [2, `LINUX: SUCCESS on tb-2. Log: ${log(fresh)}`],
        [2, 'Verified +1: all platforms passed (LINUX).'],
      ],
    );

    // Run again: a `recheck` comment on the verified patch set is a new trigger.
    await world.review(world.alice, c.number, { message: 'recheck' });
    const rerun = await take(h, 'LINUX', 'tb-3');
    assert.equal(rerun.gerrit?.patchset, 2);
    await h.report(rerun, 'SUCCESS');
    const ended = await stored(
      h,
      c.number,
      (v) => v.filter((x) => x.patchset === 2 && x.phase === 'ENDED').length === 2,
      'two verifications of patch set 2',
    );
    assert.deepEqual(
      ended
        .filter((x) => x.patchset === 2)
        .map((x) => [x.vote, x.reason])
        .sort(),
      [
        [1, 'patchset 2 uploaded'],
        [1, 'recheck requested by alice'],
      ],
    );
  });

  it('merged while pending: the unstarted platform is canceled, the running one reports, no vote', async () => {
    const c = await world.createChange(world.alice, 'core', 'Merge me by hand');
    await world.review(world.norbert, c.number, { labels: { [CR]: 2 } });
    const linux = await take(h, 'LINUX', 'tb-linux');
    await messages(c.number, 1);
    await world.review({ ...world.alice, rest: server.admin }, c.number, { labels: { Verified: 1 } });
    await world.submit({ ...world.alice, rest: server.admin }, c.number);
    await eventually(
      async () => (await texts(c.number, 2)).some((m) => m.startsWith('Change merged while the verification')),
      60_000,
      'merged message',
    );
    await h.report(linux, 'FAILURE');
    const r = await h.result(c.number, 1);
    assert.equal(r.merged, true);
    assert.equal(r.vote, undefined);
    assert.deepEqual(await texts(c.number, 3), [
      `LINUX: taken by tb-linux (build ${linux.buildId}).`,
      'Change merged while the verification was pending. Canceled (not started): WINDOWS. Still running, will report here: LINUX. The Verified vote is left alone.',
      `LINUX: FAILURE on tb-linux. Log: ${log(linux)}`,
    ]);
  });

  it('abandoned while pending: everything is canceled, no vote', async () => {
    const c = await world.createChange(world.alice, 'core', 'Abandon me');
    await world.review(world.norbert, c.number, { labels: { [CR]: 2 } });
    const linux = await take(h, 'LINUX', 'tb-linux');
    await messages(c.number, 1);
    await world.abandon(world.alice, c.number);
    const r = await h.result(c.number, 1);
    assert.equal(r.canceled, 'change abandoned');
    assert.equal((await h.report(linux, 'SUCCESS')).body.code, 'BUILD_IS_COMPLETED');
    assert.deepEqual((await texts(c.number, 2)).slice(1), [
      'Verification of patch set 1 canceled: change abandoned. Canceled: LINUX, WINDOWS.',
    ]);
  });

  it('idle: a platform no tinderbox takes → Verified 0, even though the other platform failed', async () => {
    const c = await world.createChange(world.alice, 'idle', 'Nobody builds Windows');
    const linux = await take(hIdle, 'LINUX', 'tb-linux');
    const [v] = await stored(hIdle, c.number, (x) => x[0]?.platforms.length === 2, 'platforms');
    const winId = v!.platforms.find((p) => p.name === 'WINDOWS')!.buildId;
    await eventually(async () => (await hIdle.storage.getBuild(winId))?.status === 'CANCELED', 60_000, 'idle');
    await hIdle.report(linux, 'FAILURE');
    const r = await hIdle.result(c.number, 1);
    assert.equal(r.vote, 0);
    assert.equal(
      (await texts(c.number, 3)).at(-1),
      'Verified 0: no verdict. LINUX: failure; WINDOWS: no tinderbox took the task within 6s.',
    );
    assert.equal(await kilnVerified(c.number), 0);
  });

  it('Commit-Queue: +1 is a dry run (no submit), +2 a full run that submits; a refused submit says why', async () => {
    const c = await world.createChange(world.alice, 'cq', 'CQ me');
    await world.review(world.norbert, c.number, { labels: { [CQ]: 1 } });
    const dry = await take(h, 'LINUX', 'tb-linux');
    assert.equal(dry.properties.dry_run, true);
    await h.report(dry, 'SUCCESS');
    const r1 = await h.result(c.number, 1);
    assert.deepEqual([r1.mode, r1.vote, r1.submitted], ['dry-run', 1, undefined]);
    // A full run after the dry run: a new run of the same patch set, and a pass submits the change.
    await world.review(world.norbert, c.number, { labels: { [CR]: 2, [CQ]: 2 } });
    const full = await take(h, 'LINUX', 'tb-linux');
    assert.equal(full.properties.dry_run, false);
    await h.report(full, 'SUCCESS');
    await eventually(async () => (await world.detail(c.number)).status === 'MERGED', 60_000, 'merged');
    const [last] = await stored(h, c.number, (v) => v[0]?.submitted === true, 'stored as submitted');
    assert.equal(last?.mode, 'full-run');

    // Without Code-Review +2 Gerrit refuses; Kiln says why on the change and in the verification.
    const d = await world.createChange(world.alice, 'cq', 'CQ without review');
    await world.review(world.norbert, d.number, { labels: { [CQ]: 2 } });
    await h.report(await take(h, 'LINUX', 'tb-linux'), 'SUCCESS');
    const r = await h.result(d.number, 1);
    assert.equal(r.vote, 1);
    assert.equal(r.submitted, false);
    assert.match(r.submitError ?? '', /Gerrit refused to submit: HTTP 409/);
    assert.match((await texts(d.number, 4)).at(-1) ?? '', /^Verified \+1, but the change was not submitted: /);
    assert.equal((await world.detail(d.number)).status, 'NEW');
  });

  it('a reviewer group Kiln cannot see is a stored outcome naming the group and the fix', async () => {
    const c = await world.createChange(world.alice, 'hidden', 'Reviewed by a hidden group');
    await world.review(world.norbert, c.number, { labels: { [CR]: 2 } });
    const [v] = await stored(h, c.number, (x) => x[0]?.phase === 'NOT_TRIGGERED', 'evaluated');
    assert.equal(v?.problem, 'REVIEWER_GROUP_NOT_VISIBLE');
    assert.match(v?.reason ?? '', /reviewer group "Hidden Reviewers" is not visible to Kiln's Gerrit account kiln/);
    assert.match(v?.reason ?? '', /visible to all registered users/);
    assert.deepEqual(await world.kilnMessages(c.number), []);
  });

  it('a vote Gerrit drops (the project has no Verified label) is recorded as dropped, not as made', async () => {
    const c = await world.createChange(world.alice, 'novote', 'No Verified label here');
    await h.report(await take(h, 'LINUX', 'tb-linux'), 'SUCCESS');
    const r = await h.result(c.number, 1);
    assert.equal(r.vote, undefined);
    assert.equal(r.voteDropped, 'Verified +1');
    const [v] = await stored(h, c.number, (x) => x[0]?.phase === 'ENDED', 'stored');
    assert.equal(v?.voteDropped, 'Verified +1');
    assert.equal(v?.vote, undefined);
    assert.match((await texts(c.number, 4)).at(-1) ?? '', /^Kiln's vote Verified \+1 was dropped by Gerrit/);
  });

  it('tinderboxes unchanged over SSH: a tinbuild2-style loop (get --format BASH, build, put --log -) verifies a change', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-tinderbox-'));
    closers.unshift(async () => rmSync(dir, { recursive: true, force: true }));
    const key = (name: string) => {
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', join(dir, name)]);
      return readFileSync(join(dir, `${name}.pub`), 'utf8').trim();
    };
    const endpoint = await startTinderboxSsh(
      {
        host: '127.0.0.1',
        port: 0,
        tinderboxes: [
          { id: 'tb-shell', publicKey: key('tb-shell'), capabilities: [], admin: false },
          { id: 'tb-admin', publicKey: key('tb-admin'), capabilities: [], admin: true },
        ],
      },
      {
        service: h.service,
        logs: h.logs,
        buckets: h.registry.bucketPaths(),
        projects: h.settings.projects,
        intake: h.intake,
        hosts: new GerritHosts(h.settings),
        version: KILN_VERSION,
      },
      { logger: testLogger, hostKeyFile: join(dir, 'ssh_host_rsa_key') },
    );
    closers.unshift(() => endpoint.close());
    const ssh = (who: string) => sshCommandLine(join(dir, who), endpoint.port, who);
    const run = async (who: string, command: string) => {
      const [cmd, ...args] = ssh(who);
      try {
        const r = await promisify(execFile)(cmd!, [...args, command], { encoding: 'utf8' });
        return { stdout: r.stdout, stderr: r.stderr, code: 0 };
      } catch (e) {
        const x = e as { stdout: string; stderr: string; code: number };
        return { stdout: x.stdout, stderr: x.stderr, code: x.code };
      }
    };
    assert.deepEqual(await run('tb-shell', 'buildbot version'), {
      stdout: `buildbot version ${KILN_VERSION}\n`,
      stderr: '',
      code: 0,
    });
    assert.equal((await run('tb-shell', 'buildbot get --project online --platform linux')).stdout, 'empty');
    const refused = await run('tb-shell', 'buildbot get -p elsewhere -a linux');
    assert.deepEqual([refused.code, refused.stderr], [1, 'project <elsewhere> is not enabled for building!\n']);

    const c = await world.createChange(world.alice, 'online', 'Built by a shell tinderbox');
    // The shape of tinbuild2's gerrit mode: poll, source the task, fetch and build it, report with the log on stdin.
    const script = join(dir, 'tinbuild.sh');
    writeFileSync(
      script,
      `set -euo pipefail
SSH="${ssh('tb-shell').join(' ')}"
for i in $(seq 1 120); do
  source <($SSH buildbot get --project online --platform LINUX --id tb-shell --format BASH master)
  [ -n "$GERRIT_TASK_TICKET" ] && break
  sleep 0.5
done
[ -n "$GERRIT_TASK_TICKET" ] || { echo "no task" >&2; exit 3; }
$SSH buildbot show --project online > show.txt
echo "building $GERRIT_TASK_REF on branch $GERRIT_TASK_BRANCH" > build.log
gzip -c build.log | $SSH buildbot put --ticket "$GERRIT_TASK_TICKET" --status success --id tb-shell --log -
echo "$GERRIT_TASK_TICKET"
`,
    );
    // A put for a ticket another tinderbox holds is ignored, as the plugin does.
    const sh = promisify(execFile)('bash', [script], { cwd: dir, encoding: 'utf8' });
    const ticket = (await sh).stdout.trim();
    assert.equal(ticket, `${c.patchset.revision}_LINUX`);
    const show = readFileSync(join(dir, 'show.txt'), 'utf8').split('\n');
    assert.equal(
      show[1],
      `${'Task-Id'.padEnd(17)} ${'Start/End'.padEnd(12)} ${'Type/State'.padEnd(12)} ${'Ref'.padEnd(22)} Bot Branch`,
    );
    assert.ok(
      show.some((l) => l.startsWith(`${ticket} `) && l.includes('Job: STARTED') && l.includes(' tb-shell ')),
      show.join('\n'),
    );
    assert.equal((await h.result(c.number, 1)).vote, 1);
    const posted = await texts(c.number, 3);
    assert.match(posted[1] ?? '', /^LINUX: SUCCESS on tb-shell\. Log: /);
    const buildId = /builds\/(\d+)\/log/.exec(posted[1]!)![1]!;
    const log = await fetch(`${h.url}/api/v1/builds/${buildId}/log`);
    assert.equal(await log.text(), `building ${c.patchset.ref} on branch master\n`);
    const late = await run('tb-shell', `buildbot put --ticket ${ticket} --status success --log -`);
    assert.deepEqual([late.code, late.stderr], [1, `Can not find task for ticket ${ticket}\n`]);

    // schedule by hand (admin only): a new run; TEXT format; another id's put is ignored; failed → Verified -1.
    assert.match((await run('tb-shell', `buildbot schedule --project online ${c.number},1`)).stderr, /has not the ACL/);
    assert.equal((await run('tb-admin', `buildbot schedule --project online ${c.patchset.revision}`)).code, 0);
    const got = await eventually(
      async () => {
        const r = await run('tb-shell', 'buildbot get -p online -a linux');
        return r.stdout !== 'empty' && r.stdout;
      },
      60_000,
      'the scheduled task',
    );
    assert.equal(got, `engaged: ticket=${ticket} branch=master ref=${c.patchset.ref}\n`);
    const other = await run('tb-admin', `buildbot put -t ${ticket} -s failed -l https://tb.example.org/1`);
    assert.deepEqual([other.code, other.stderr], [1, `Can not find task for ticket ${ticket}\n`]);
    assert.equal((await run('tb-shell', `buildbot put -t ${ticket} -s failed -l https://tb.example.org/2`)).code, 0);
    await eventually(async () => (await kilnVerified(c.number)) === -1, 60_000, 'Verified -1');
    assert.equal((await texts(c.number, 6)).at(-1), 'Verified -1: failed on LINUX.');
  });
});
