/**
 * The fault suite (`npm run test:faults`; also part of `npm test`). While builds are in flight,
 * SIGKILL and restart in turn the worker, the API, a runner, and the Temporal dev server itself
 * (its SQLite file kept). Afterwards every build has ended SUCCESS exactly once, no lease was ever
 * granted while another was live, no heartbeat from a dead lease was accepted, nothing is lost
 * or duplicated (storage and Temporal visibility agree), and a tinderbox that took a task before
 * the restarts reports after them and is accepted.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import pg from 'pg';
import { KilnApiError, KilnClient } from '../../src/client/kilnClient.ts';
import { type Build } from '../../src/domain/build.ts';
import { startPostgres } from '../support/postgres.ts';
import {
  type Child,
  freePort,
  restartDevServer,
  spawnDevServerOnFreePort,
  spawnKiln,
  waitForHttp,
} from '../support/processes.ts';

const BUILDS_PER_PHASE = 6;
const PHASES = ['worker', 'api', 'runner', 'temporal'] as const;

describe('fault suite: SIGKILL every process in turn', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-faults-'));
  let db: Awaited<ReturnType<typeof startPostgres>>;
  let temporalPort: number;
  let apiPort: number;
  let env: Record<string, string>;
  let temporal: Child;
  let worker: Child;
  let api: Child;
  const runners: Child[] = [];
  let kiln: KilnClient;

  const startRunner = (i: number) => spawnKiln(['runner', '-c', join(dir, `runner-${i}.yaml`)], env);
  const startApi = async () => {
    const c = spawnKiln(['api'], env);
    await waitForHttp(`http://127.0.0.1:${apiPort}/healthz`, c);
    return c;
  };

  before(async () => {
    db = await startPostgres();
    ({ port: temporalPort, temporal } = await spawnDevServerOnFreePort(join(dir, 'temporal.db')));
    apiPort = await freePort();
    writeFileSync(
      join(dir, 'kiln.yaml'),
      `
dataDir: ${dir}/data
api: { host: 127.0.0.1, port: ${apiPort} }
projects:
  - name: fault
    buckets:
      - name: ci
        builders:
          - name: work
            command: ["sh", "-c", "sleep 2; echo done"]
            leaseDurationSecs: 4
            maxLeaseResets: 10
          - name: zombie
            leaseDurationSecs: 2
            maxLeaseResets: 10
          - name: tinderbox
            leaseDurationSecs: 3600
            maxLeaseDurationSecs: 14400
`,
    );
    for (const i of [0, 1]) {
      writeFileSync(
        join(dir, `runner-${i}.yaml`),
        `
api: http://127.0.0.1:${apiPort}
name: runner-${i}
serve: [{ bucket: fault/ci, builders: [work] }]
capacity: 3
peekIntervalSecs: 0.5
heartbeatIntervalSecs: 1
leaseDurationSecs: 4
logFlushIntervalSecs: 1
killTimeoutSecs: 1
workDir: ${dir}/runner-${i}
`,
      );
    }
    env = { KILN_CONFIG: join(dir, 'kiln.yaml'), TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`, DATABASE_URL: db.url };
    worker = spawnKiln(['worker'], env);
    api = await startApi();
    runners.push(startRunner(0), startRunner(1));
    kiln = new KilnClient({ baseUrl: `http://127.0.0.1:${apiPort}`, timeoutMs: 20_000 });
  });

  after(async () => {
    for (const c of [...runners, api, worker, temporal]) await c?.kill('SIGKILL');
    await db?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Calls the API, retrying while it (or Temporal behind it) is down. */
  async function retrying<T>(fn: () => Promise<T>, what: string): Promise<T> {
    const deadline = Date.now() + 90_000;
    for (;;) {
      try {
        return await fn();
      } catch (e) {
        const down = e instanceof KilnApiError && (e.code === 'UNAVAILABLE' || e.code === 'INTERNAL');
        if (!down) throw e;
        if (Date.now() > deadline) throw new Error(`${what}: Kiln still unavailable after 90 s`, { cause: e });
        await sleep(300);
      }
    }
  }

  it('loses no build and grants no lease twice while every process is killed in turn', async () => {
    const ids: string[] = [];
    const schedule = async (phase: string) => {
      for (let i = 0; i < BUILDS_PER_PHASE; i++) {
        const b = await retrying(
          () =>
            kiln.schedule({ builder: { project: 'fault', bucket: 'ci', builder: 'work' }, requestId: `${phase}-${i}` }),
          'schedule',
        );
        ids.push(b.id);
      }
    };

    // A tinderbox takes a task before anything is killed, and a zombie lease that will expire.
    const tinderbox = { project: 'fault', bucket: 'ci', builder: 'tinderbox' };
    const tb = await retrying(() => kiln.schedule({ builder: tinderbox }), 'schedule tinderbox');
    let task: { buildId: string; leaseKey: string } | null = null;
    // The worker may still be starting (bundling its workflows) on a loaded machine: give it time.
    for (const until = Date.now() + 120_000; !task && Date.now() < until;) {
      task = (
        await kiln.request<{ task: { buildId: string; leaseKey: string } | null }>(
          'POST',
          '/api/v1/tinderbox/get-task',
          { platform: 'tinderbox', tinderboxId: 'tb-1' },
        )
      ).task;
      if (!task) await sleep(200);
    }
    assert.ok(task, 'the tinderbox got its task');
    assert.equal(task.buildId, tb.id);

    // A zombie holder leases a build and goes silent: its lease dies during the restarts.
    const z = await retrying(
      () => kiln.schedule({ builder: { project: 'fault', bucket: 'ci', builder: 'zombie' } }),
      'schedule zombie',
    );
    let zombie: { leaseKey: string } | undefined;
    for (let i = 0; i < 50 && !zombie; i++) {
      zombie = await kiln.lease(z.id, { holder: 'zombie' }).catch(async () => {
        await sleep(200);
        return undefined;
      });
    }
    assert.ok(zombie, 'the zombie got its lease');
    await kiln.start(z.id, { leaseKey: zombie.leaseKey });

    await schedule('before');
    for (const phase of PHASES) {
      await sleep(1500); // builds are leased and running now
      if (phase === 'worker') {
        await worker.kill('SIGKILL');
        await sleep(2000);
        worker = spawnKiln(['worker'], env);
      } else if (phase === 'api') {
        await api.kill('SIGKILL');
        await sleep(1000);
        api = await startApi();
      } else if (phase === 'runner') {
        const victim = runners.shift();
        await victim?.kill('SIGKILL');
        runners.push(startRunner(2));
      } else {
        await temporal.kill('SIGKILL');
        await sleep(2000);
        temporal = await restartDevServer(temporalPort, join(dir, 'temporal.db'));
      }
      await schedule(phase);
    }

    // Every build ends SUCCESS (the killed runner's builds after their lease expired).
    const ended = new Map<string, Build>();
    const deadline = Date.now() + 180_000;
    while (ended.size < ids.length) {
      for (const id of ids) {
        if (ended.has(id)) continue;
        const b = await retrying(() => kiln.get(id), 'get');
        if (!['SCHEDULED', 'STARTED'].includes(b.status)) ended.set(id, b);
      }
      if (Date.now() > deadline) assert.fail(`builds still pending: ${ids.filter((x) => !ended.has(x)).join(', ')}`);
      await sleep(500);
    }
    for (const b of ended.values()) {
      assert.equal(b.status, 'SUCCESS', `build ${b.id}: ${b.status} ${b.summaryMarkdown ?? ''}`);
      // Leases never overlapped: every LEASED after the first follows a LEASE_EXPIRED.
      let live = false;
      for (const e of b.events) {
        if (e.kind === 'LEASED') {
          assert.ok(!live, `build ${b.id} leased twice without an expiry: ${JSON.stringify(b.events)}`);
          live = true;
        } else if (e.kind === 'LEASE_EXPIRED' || e.kind === 'ENDED') live = false;
      }
    }
    assert.equal(new Set(ids).size, ids.length);

    // The tinderbox reports after every restart: accepted.
    const report = await retrying(
      () =>
        kiln.request<Build>('POST', '/api/v1/tinderbox/report', {
          buildId: task.buildId,
          leaseKey: task.leaseKey,
          outcome: 'SUCCESS',
          log: 'built fine\n',
        }),
      'tinderbox report',
    );
    assert.equal(report.status, 'SUCCESS');

    // The zombie's lease died while everything was restarting: nothing it sends is accepted.
    const reset = await retrying(() => kiln.get(z.id), 'get zombie');
    assert.equal(reset.status, 'SCHEDULED', 'the silent build went back to SCHEDULED');
    assert.ok(reset.leaseResets >= 1);
    for (const call of [
      () => kiln.heartbeat(z.id, { leaseKey: zombie.leaseKey }),
      () => kiln.start(z.id, { leaseKey: zombie.leaseKey }),
      () => kiln.succeed(z.id, { leaseKey: zombie.leaseKey }),
    ]) {
      await assert.rejects(call(), (e: unknown) => e instanceof KilnApiError && e.code === 'LEASE_EXPIRED');
    }
    const after = await kiln.get(z.id);
    assert.equal(after.status, 'SCHEDULED');
    assert.ok(
      after.events.some((e) => e.kind === 'STALE_REPORT_REFUSED'),
      'the late report is noted',
    );

    // Storage and Temporal visibility agree: each build once, nothing extra.
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const rows = (
      await client.query<{ id: string; n: string }>(
        `SELECT id::text AS id, count(*) OVER (PARTITION BY project, bucket, builder, number) AS n FROM builds WHERE builder = 'work'`,
      )
    ).rows;
    await client.end();
    assert.deepEqual(new Set(rows.map((r) => r.id)), new Set(ids), 'storage holds exactly the scheduled builds');
    assert.ok(
      rows.every((r) => r.n === '1'),
      'build numbers unique per builder',
    );
    const connection = await Connection.connect({ address: `127.0.0.1:${temporalPort}` });
    const temporalClient = new Client({ connection });
    const closed = await temporalClient.workflow.count(`KilnBuilder = 'work' AND ExecutionStatus = 'Completed'`);
    assert.equal(closed.count, ids.length, 'one completed workflow per build in visibility');
    await connection.close();
  });
});
