/**
 * `kiln dev` as a process, started as a user would (bin/kiln.js, its own process group like a
 * shell's foreground job): a second `kiln dev` on the same data dir stops at the storage lock and
 * leaves the first one's Temporal server alone; a dev server that dies is restarted on the same
 * database; Ctrl-C during a running build reports it INFRA_FAILURE before the dev server stops;
 * SIGTERM with calls in flight on a hung Temporal server exits without SIGKILL; start errors exit
 * non-zero, name the path and the fix, and leave nothing running.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { Connection } from '@temporalio/client';
import { KilnClient } from '../../src/client/kilnClient.ts';
import { type Build } from '../../src/domain/build.ts';
import { freePort, kiln, type KilnProcess, startKiln } from '../support/kilnDev.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

describe('kiln dev as a process', () => {
  let dir: string;
  let dataDir: string;
  let cfg: string;
  let api: string;
  let tPort: number;
  let client: KilnClient;
  const started: KilnProcess[] = [];
  const serverPids = new Set<number>();

  const pidFile = () => join(dataDir, 'temporal', 'temporal.pid');
  /** The dev server's pid, from the pid file kiln dev writes. */
  const serverPid = (): number => {
    const pid = (JSON.parse(readFileSync(pidFile(), 'utf8')) as { pid: number }).pid;
    serverPids.add(pid);
    return pid;
  };
  const startDev = async (): Promise<KilnProcess> => {
    const p = startKiln(['dev', '-c', cfg], {}, { ownGroup: true });
    started.push(p);
    await p.waitFor('Kiln is running', 180_000);
    serverPid();
    return p;
  };
  const cli = (...args: string[]) => kiln([...args, '--api', api]);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-e2e-dev-'));
    dataDir = join(dir, 'data');
    const [apiPort, uiPort] = [await freePort(), await freePort()];
    tPort = await freePort();
    api = `http://127.0.0.1:${apiPort}`;
    client = new KilnClient({ baseUrl: api });
    cfg = join(dir, 'kiln.yaml');
    writeFileSync(
      cfg,
      `
dataDir: ${dataDir}
api: { host: 127.0.0.1, port: ${apiPort} }
temporal: { taskQueue: e2e-dev, devServer: { port: ${tPort}, uiPort: ${uiPort} } }
devRunner: { peekIntervalSecs: 1, heartbeatIntervalSecs: 2, logFlushIntervalSecs: 1, gracePeriodSecs: 1, killTimeoutSecs: 1 }
projects:
  - name: e2e
    buckets:
      - name: ci
        builders:
          - name: pass
            command: ["sh", "-c", "echo passing"]
          - name: long
            command: ["sh", "-c", "for i in $(seq 1 300); do echo step $i; sleep 1; done"]
`,
    );
  });

  after(async () => {
    for (const p of started) await p.stop('SIGKILL');
    // A SIGKILLed kiln dev cannot stop its server (it runs in its own group): stop every one seen.
    for (const pid of serverPids) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  let first: KilnProcess;

  it('a second kiln dev on the same data dir stops at the storage lock and never touches the running server', async () => {
    first = await startDev();
    const server = serverPid();
    const second = await kiln(['dev', '-c', cfg]);
    assert.notEqual(second.code, 0, second.stdout + second.stderr);
    assert.match(second.stderr, new RegExp(`${join(dataDir, 'storage')} is in use by process ${first.proc.pid}`));
    assert.doesNotMatch(second.stdout + second.stderr, /stopping a Temporal dev server/);
    assert.ok(alive(server), "the first kiln dev's Temporal server was killed");
    assert.equal(serverPid(), server, 'the pid file still names the first server');
    const r = await cli('schedule', 'e2e/ci/pass', '--wait');
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  it('restarts its dev server on the same database when it dies, and says so', async () => {
    const before = await cli('schedule', 'e2e/ci/pass', '--wait', '--json');
    assert.equal(before.code, 0, before.stderr);
    const earlier = JSON.parse(before.stdout) as Build;
    const server = serverPid();
    process.kill(server, 'SIGKILL');
    await first.waitFor('restarting it on the same database', 60_000);
    await first.waitFor('Temporal dev server restarted', 120_000);
    const now = serverPid();
    assert.notEqual(now, server);
    // Same database: the earlier build's workflow is still there.
    const conn = await Connection.connect({ address: `127.0.0.1:${tPort}` });
    try {
      const d = await conn.workflowService.describeWorkflowExecution({
        namespace: 'default',
        execution: { workflowId: `build/${earlier.id}` },
      });
      assert.ok(d.workflowExecutionInfo, 'the earlier build is in the restarted server');
    } finally {
      await conn.close();
    }
    const after = await until('a build to run after the restart', async () => {
      const r = await cli('schedule', 'e2e/ci/pass', '--wait');
      return r.code === 0 && r;
    });
    assert.match(after.stdout, /SUCCESS/);
  });

  it('Ctrl-C during a running build reports it INFRA_FAILURE, and stops the dev server last', async () => {
    const s = await cli('schedule', 'e2e/ci/long', '--json');
    const id = (JSON.parse(s.stdout) as Build).id;
    await until('the long build to log a step', async () => (await client.readLog(id)).data.includes('step 2'));
    const server = serverPid();
    // The terminal's Ctrl-C: SIGINT to the whole foreground process group.
    process.kill(-(first.proc.pid ?? 0), 'SIGINT');
    await until('kiln dev to exit', async () => first.proc.exitCode !== null || first.proc.signalCode !== null, 90_000);
    assert.equal(first.proc.exitCode, 0, first.output().slice(-3000));
    assert.doesNotMatch(first.output(), /report refused|build handling failed/);
    assert.equal(alive(server), false, 'the dev server outlived kiln dev');
    assert.equal(existsSync(pidFile()), false);

    first = await startDev();
    const b = await client.get(id);
    assert.equal(b.status, 'INFRA_FAILURE', JSON.stringify(b));
    assert.match(b.summaryMarkdown ?? '', /shut down before the build finished/);
  });

  it('SIGTERM with calls in flight on a hung Temporal server exits cleanly, without SIGKILL', async () => {
    const server = serverPid();
    process.kill(server, 'SIGSTOP');
    try {
      const inFlight = [1, 2, 3].map(() =>
        fetch(`${api}/api/v1/builds`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ builder: { project: 'e2e', bucket: 'ci', builder: 'pass' } }),
        }).catch(() => undefined),
      );
      await sleep(1500);
      // The harness would SIGKILL after 60 s; kiln dev must be gone by itself well before.
      await first.stop('SIGTERM', 60_000);
      assert.equal(first.proc.signalCode, null, `kiln dev needed ${first.proc.signalCode}`);
      assert.equal(first.proc.exitCode, 0, first.output().slice(-3000));
      await Promise.all(inFlight);
      await until('the stopped dev server to be gone', async () => !alive(server), 20_000);
    } finally {
      try {
        process.kill(server, 'SIGCONT');
      } catch {
        // gone
      }
    }
  });

  it('start errors exit non-zero, name the path or key and the fix, and leave nothing running', async () => {
    // No tokens, yet asked to listen on every interface: refused before anything starts.
    const openDir = join(dir, 'open');
    const openCfg = join(dir, 'open.yaml');
    writeFileSync(openCfg, readFileSync(cfg, 'utf8').replace(`dataDir: ${dataDir}`, `dataDir: ${openDir}`));
    const open = await kiln(['dev', '-c', openCfg], { KILN_API_HOST: '0.0.0.0' });
    assert.equal(open.code, 1, open.stderr);
    assert.match(open.stderr, /open\.yaml: api\.host \(or KILN_API_HOST\): refusing to listen on 0\.0\.0\.0/);
    assert.match(open.stderr, /add acls with tokens, or bind 127\.0\.0\.1/);
    assert.equal(existsSync(join(openDir, 'temporal')), false, 'a Temporal server was started');
    assert.ok(await portFree(tPort), 'a Temporal server was started');

    // Damaged embedded storage: the folder, and how to get going again.
    const broken = join(dir, 'broken');
    const brokenCfg = join(dir, 'broken.yaml');
    writeFileSync(brokenCfg, readFileSync(cfg, 'utf8').replace(`dataDir: ${dataDir}`, `dataDir: ${broken}`));
    const migrated = await kiln(['migrate', '-c', brokenCfg]);
    assert.equal(migrated.code, 0, migrated.stderr);
    writeFileSync(join(broken, 'storage', 'pgdata', 'global', 'pg_control'), Buffer.alloc(8192, 0x5a));
    const damaged = await kiln(['dev', '-c', brokenCfg]);
    assert.equal(damaged.code, 1, damaged.stderr);
    assert.match(
      damaged.stderr,
      new RegExp(`cannot start: embedded storage ${join(broken, 'storage')} cannot be opened`),
    );
    assert.match(damaged.stderr, /mv .*storage .*storage\.broken/);
    assert.doesNotMatch(damaged.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(existsSync(join(broken, 'temporal', 'temporal.pid')), false);
    assert.ok(await portFree(tPort), 'a Temporal server was left running');

    // Secrets named in the config but not set: every one of them at once.
    const secrets = join(dir, 'secrets.yaml');
    writeFileSync(
      secrets,
      readFileSync(cfg, 'utf8').replace(
        '      - name: ci\n',
        '      - name: ci\n        acls:\n          - { role: READER, tokenEnv: KILN_E2E_UNSET_A }\n          - { role: WRITER, tokenEnv: KILN_E2E_UNSET_B }\n',
      ),
    );
    const unset = await kiln(['dev', '-c', secrets]);
    assert.equal(unset.code, 1);
    assert.match(unset.stderr, /acls\[0\]\.tokenEnv: environment variable KILN_E2E_UNSET_A is not set/);
    assert.match(unset.stderr, /acls\[1\]\.tokenEnv: environment variable KILN_E2E_UNSET_B is not set/);
  });

  it('Temporal unreachable is UNAVAILABLE with the address, for kiln api and kiln stuck', async () => {
    const dead = await freePort();
    const apiCfg = join(dir, 'api.yaml');
    mkdirSync(join(dir, 'api-data'), { recursive: true });
    writeFileSync(
      apiCfg,
      readFileSync(cfg, 'utf8').replace(`dataDir: ${dataDir}`, `dataDir: ${join(dir, 'api-data')}`),
    );
    const a = await kiln(['api', '-c', apiCfg], { TEMPORAL_ADDRESS: `127.0.0.1:${dead}` });
    assert.equal(a.code, 3, a.stderr);
    assert.match(a.stderr, new RegExp(`kiln: UNAVAILABLE: Temporal is unreachable at 127\\.0\\.0\\.1:${dead}`));
    assert.doesNotMatch(a.stderr, /INTERNAL/);
    const s = await kiln(['stuck', '-c', apiCfg, '--address', `127.0.0.1:${dead}`]);
    assert.equal(s.code, 3, s.stderr);
    assert.match(s.stderr, new RegExp(`kiln: UNAVAILABLE: Temporal is unreachable at 127\\.0\\.0\\.1:${dead}`));
    // And the CLI, when Kiln itself is not there.
    const g = await kiln(['get', '1', '--api', `http://127.0.0.1:${dead}`]);
    assert.equal(g.code, 3);
    assert.match(g.stderr, new RegExp(`UNAVAILABLE: cannot reach Kiln at http://127\\.0\\.0\\.1:${dead}`));
    assert.match(g.stderr, /is Kiln running there\?/);
  });
});
