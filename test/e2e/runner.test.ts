/**
 * `kiln dev` as a user runs it (a subprocess with its own config, data dir and ports), builds
 * scheduled through the CLI and run by real runners: a passing build with its log, a failing one,
 * a runner SIGKILLed mid-build whose lease expires so a second runner finishes the build, and a
 * canceled build whose process tree is gone within one heartbeat interval.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { KilnClient } from '../../src/client/kilnClient.ts';
import { type Build } from '../../src/domain/build.ts';
import { groupAlive } from '../../src/runner/processTree.ts';
import { freePort, kiln, type KilnProcess, startKiln } from '../support/kilnDev.ts';

/** The dev runner's heartbeat interval in this test: a canceled build must be gone within it. */
const HEARTBEAT_SECS = 3;

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

describe('kiln dev with runners, end to end', () => {
  let dir: string;
  let pidDir: string;
  let api: string;
  let dev: KilnProcess;
  let client: KilnClient;
  const runners: KilnProcess[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-e2e-runner-'));
    pidDir = join(dir, 'pids');
    mkdirSync(pidDir);
    const [apiPort, tPort, uiPort] = [await freePort(), await freePort(), await freePort()];
    api = `http://127.0.0.1:${apiPort}`;
    client = new KilnClient({ baseUrl: api });
    writeFileSync(
      join(dir, 'kiln.yaml'),
      `
dataDir: ${join(dir, 'data')}
api: { host: 127.0.0.1, port: ${apiPort} }
temporal: { taskQueue: e2e-runner, devServer: { port: ${tPort}, uiPort: ${uiPort} } }
devRunner:
  name: dev-runner
  serve: [{ bucket: e2e/ci, builders: [pass, fail, sleepy] }]
  dimensions: []
  peekIntervalSecs: 1
  heartbeatIntervalSecs: ${HEARTBEAT_SECS}
  logFlushIntervalSecs: 1
  killTimeoutSecs: 1
projects:
  - name: e2e
    buckets:
      - name: ci
        builders:
          - name: pass
            command: ["sh", "-c", "echo hello from $KILN_BUILDER number $KILN_BUILD_NUMBER; cat \\"$KILN_PROPERTIES_FILE\\"; echo; echo all tests passed"]
          - name: fail
            command: ["sh", "-c", "echo running tests; echo '1 test failed' >&2; exit 3"]
          - name: sleepy
            command: ["sh", "-c", "echo $$ > \\"$PIDDIR/$KILN_BUILD_ID\\"; echo sleeping; sleep 300 & wait"]
          - name: slow
            dimensions: ["pool:external"]
            leaseDurationSecs: 4
            maxLeaseResets: 1
            command: ["sh", "-c", "echo $$ >> \\"$PIDDIR/$KILN_BUILD_ID\\"; echo step 1 on $KILN_BUILD_ID; sleep 6; echo slow build finished"]
`,
    );
    dev = startKiln(['dev', '-c', join(dir, 'kiln.yaml')], { PIDDIR: pidDir });
    await dev.waitFor('Kiln is running', 180_000);
  });

  after(async () => {
    for (const r of runners) await r.stop('SIGKILL');
    await dev?.stop('SIGTERM');
    // Any build command a failed test left running, by the process groups the commands recorded.
    if (pidDir && existsSync(pidDir)) {
      for (const f of readdirSync(pidDir)) {
        for (const pid of readFileSync(join(pidDir, f), 'utf8').split('\n').filter(Boolean)) {
          try {
            process.kill(-Number(pid), 'SIGKILL');
          } catch {
            // gone
          }
        }
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const cli = (...args: string[]) => kiln([...args, '--api', api]);

  it('runs a passing build to SUCCESS through `kiln schedule --wait`, and its log is retrievable', async () => {
    const r = await cli('schedule', 'e2e/ci/pass', '--wait', '-p', 'answer=42');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /SCHEDULED/);
    assert.match(r.stdout, /e2e\/ci\/pass #1 STARTED/);
    assert.match(r.stdout, /e2e\/ci\/pass #1 SUCCESS/);
    const id = /^build (\d+)$/m.exec(r.stdout)?.[1];
    assert.ok(id, r.stdout);
    const built = await client.get(id);
    assert.ok(built.events.some((e) => e.kind === 'LEASED' && e.message.includes('dev-runner')));
    const log = await cli('log', id);
    assert.equal(log.code, 0, log.stderr);
    assert.match(log.stdout, /hello from e2e\/ci\/pass number 1/);
    assert.match(log.stdout, /"answer": 42/);
    assert.match(log.stdout, /all tests passed/);
    const raw = await fetch(`${api}/api/v1/builds/${id}/log`);
    assert.equal(raw.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(raw.headers.get('x-kiln-log-complete'), 'true');
  });

  it('ends a failing build FAILURE, and `schedule --wait` exits non-zero', async () => {
    const r = await cli('schedule', 'e2e/ci/fail', '--wait');
    assert.notEqual(r.code, 0);
    assert.match(r.stdout, /e2e\/ci\/fail #1 FAILURE: the command exited with code 3/);
    const id = /^build (\d+)$/m.exec(r.stdout)?.[1] ?? '';
    assert.equal((await client.get(id)).status, 'FAILURE');
    const log = await cli('log', id);
    assert.match(log.stdout, /1 test failed/);
  });

  it("stops a canceled build's process tree within one heartbeat interval", async () => {
    const s = await cli('schedule', 'e2e/ci/sleepy', '--json');
    const id = (JSON.parse(s.stdout) as Build).id;
    const pidFile = join(pidDir, id);
    const pgid = await until(
      'the sleepy command to start',
      async () => existsSync(pidFile) && Number.parseInt(readFileSync(pidFile, 'utf8'), 10),
    );
    assert.ok(groupAlive(pgid));
    const c = await cli('cancel', id, '--reason', 'no longer needed');
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /CANCELED/);
    const canceledAt = Date.now();
    await until('the process group to go', async () => !groupAlive(pgid), 30_000);
    const tookMs = Date.now() - canceledAt;
    // One heartbeat interval, plus a little for the kill and for a busy 2-core machine.
    assert.ok(tookMs <= HEARTBEAT_SECS * 1000 + 1500, `process tree lived ${tookMs} ms after the cancel`);
    // The canceled runner could still finish the log with its (last) lease key.
    const log = await until('the canceled build log to be complete', async () => {
      const l = await client.readLog(id);
      return l.complete && l;
    });
    assert.match(log.data.toString(), /sleeping/);
    assert.equal((await client.get(id)).status, 'CANCELED');
  });

  it('lets a second runner finish a build after the first is SIGKILLed and its lease expires', async () => {
    const runnerYaml = (name: string) => {
      const f = join(dir, `${name}.yaml`);
      writeFileSync(
        f,
        `api: ${api}
name: ${name}
serve: [{ bucket: e2e/ci, builders: [slow] }]
dimensions: ["pool:external", "os:Linux"]
peekIntervalSecs: 1
heartbeatIntervalSecs: 1
logFlushIntervalSecs: 1
workDir: ${join(dir, name)}
`,
      );
      return f;
    };
    const s = await cli('schedule', 'e2e/ci/slow', '--json');
    const id = (JSON.parse(s.stdout) as Build).id;
    // The dev runner does not cover pool:external: it never takes this build.
    await sleep(2500);
    assert.equal((await client.get(id)).status, 'SCHEDULED');

    const a = startKiln(['runner', '-c', runnerYaml('runner-a')], { PIDDIR: pidDir });
    runners.push(a);
    await until('runner-a to start the build', async () => {
      const b = await client.get(id);
      return b.status === 'STARTED' && b.leaseHolder === 'runner-a';
    });
    await until('runner-a to upload some log', async () =>
      (await client.readLog(id)).data.toString().includes('step 1'),
    );
    await a.stop('SIGKILL');
    // A SIGKILLed runner cannot stop its command: the orphan would run on; end it here.
    const orphan = Number.parseInt(readFileSync(join(pidDir, id), 'utf8').split('\n')[0] ?? '', 10);
    try {
      process.kill(-orphan, 'SIGKILL');
    } catch {
      // already gone
    }

    await until('the lease to expire and the build to return to SCHEDULED', async () => {
      const b = await client.get(id);
      return b.status === 'SCHEDULED' && b.leaseResets === 1 && b;
    });
    const b2 = startKiln(['runner', '-c', runnerYaml('runner-b')], { PIDDIR: pidDir });
    runners.push(b2);
    const done = await until('runner-b to finish the build', async () => {
      const b = await client.get(id);
      return b.status !== 'SCHEDULED' && b.status !== 'STARTED' && b;
    });
    assert.equal(done.status, 'SUCCESS');
    assert.equal(done.leaseResets, 1);
    assert.ok(done.events.some((e) => e.kind === 'LEASE_EXPIRED' && e.message.includes('runner-a')));
    assert.ok(done.events.some((e) => e.kind === 'LEASED' && e.message.includes('runner-b')));
    const log = await cli('log', id);
    assert.match(log.stdout, /runner-b/);
    assert.match(log.stdout, /slow build finished/);
    // The first attempt's log is kept too.
    const first = await client.readLog(id, { attempt: 1 });
    assert.match(first.data.toString(), /runner-a/);
    await b2.stop('SIGTERM');
  });
});
