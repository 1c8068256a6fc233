/**
 * Temporal's own processes die under load. Kiln (`kiln migrate`, `kiln api`, 2 `kiln worker`s, 2 `kiln runner`s)
 * runs on a real Temporal cluster (frontend, history with 4 shards, matching and worker as separate processes on
 * PostgreSQL, test/support/temporalCluster.ts) while builds are scheduled and run; the history process is
 * SIGKILLed and started again, then the matching process, then both at once. Afterwards: every scheduled build
 * exists once and ended SUCCESS exactly once, no lease was granted while another was live, a build's command ran
 * at least once and never more often than it was leased, and Temporal's SQL visibility agrees with Kiln's storage.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import pg from 'pg';
import { KilnApiError, KilnClient } from '../../src/client/kilnClient.ts';
import { type Build } from '../../src/domain/build.ts';
import { type RunningPostgres, startPostgres } from '../support/postgres.ts';
import { type Child, freePort, spawnKiln, waitForHttp } from '../support/processes.ts';
import { type ClusterService, type TemporalCluster, startTemporalCluster } from '../support/temporalCluster.ts';

const BUILDS = 60;
/** What is killed, in turn, each time another sixth of the builds has run. */
const FAULTS: ClusterService[][] = [['history'], ['matching'], ['history', 'matching']];

void describe('a Temporal cluster loses history and matching processes under load', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-cluster-faults-'));
  const ledger = join(dir, 'ledger.txt');
  let db: RunningPostgres;
  let cluster: TemporalCluster;
  let env: Record<string, string>;
  const procs: Child[] = [];
  let kiln: KilnClient;
  // What happened when, printed as the test's diagnostics (node --test shows them under the test).
  const notes: string[] = [];
  const note = (line: string) => notes.push(`${new Date().toISOString()} ${line}`);
  let outageErrors = 0;

  before(async () => {
    db = await startPostgres();
    cluster = await startTemporalCluster({ postgresUrl: db.url });
    note(
      `cluster up: schema ${cluster.startupMs.schema.toFixed(0)} ms, services ${cluster.startupMs.services.toFixed(0)} ms`,
    );
    const apiPort = await freePort();
    writeFileSync(ledger, '');
    writeFileSync(
      join(dir, 'kiln.yaml'),
      `
dataDir: ${dir}/data
api: { host: 127.0.0.1, port: ${apiPort} }
projects:
  - name: cfault
    buckets:
      - name: ci
        builders:
          - name: work
            command: ["sh", "-c", "echo \\"$KILN_BUILD_ID $RUNNER_NAME\\" >> ${ledger}; sleep 1; echo done"]
            leaseDurationSecs: 20
            maxLeaseResets: 10
`,
    );
    env = {
      KILN_CONFIG: join(dir, 'kiln.yaml'),
      TEMPORAL_ADDRESS: cluster.address,
      TEMPORAL_NAMESPACE: cluster.namespace,
      TEMPORAL_TASK_QUEUE: 'kiln-cluster-faults',
      DATABASE_URL: db.url,
    };
    const migrate = spawnKiln(['migrate'], env);
    await new Promise((r) => migrate.proc.once('exit', r));
    assert.equal(migrate.proc.exitCode, 0, migrate.output());
    procs.push(spawnKiln(['worker'], env), spawnKiln(['worker'], env));
    const api = spawnKiln(['api'], env);
    procs.push(api);
    await waitForHttp(`http://127.0.0.1:${apiPort}/healthz`, api, 120_000);
    for (const i of [1, 2]) {
      const file = join(dir, `runner-${i}.yaml`);
      writeFileSync(
        file,
        [
          `api: http://127.0.0.1:${apiPort}`,
          `name: runner-${i}`,
          'serve: [{ bucket: cfault/ci }]',
          'capacity: 4',
          'peekIntervalSecs: 0.5',
          'heartbeatIntervalSecs: 2',
          `workDir: ${dir}/runner-${i}`,
        ].join('\n'),
      );
      procs.push(spawnKiln(['runner', '-c', file], { ...env, RUNNER_NAME: `runner-${i}` }));
    }
    kiln = new KilnClient({ baseUrl: `http://127.0.0.1:${apiPort}`, timeoutMs: 30_000 });
  });

  after(async () => {
    for (const p of procs) await p.kill('SIGKILL');
    await cluster?.stop();
    await db?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Calls the API, retrying while it (or Temporal behind it) is down. */
  async function retrying<T>(fn: () => Promise<T>, what: string): Promise<T> {
    const deadline = Date.now() + 180_000;
    for (;;) {
      try {
        return await fn();
      } catch (e) {
        const down = e instanceof KilnApiError ? ['UNAVAILABLE', 'INTERNAL'].includes(e.code) : true;
        if (!down) throw e;
        outageErrors++;
        if (Date.now() > deadline) throw new Error(`${what}: Kiln still unavailable after 180 s`, { cause: e });
        await sleep(300);
      }
    }
  }

  const ran = () =>
    readFileSync(ledger, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ')[0]!);

  void it('loses no build, ends each once and never runs one more often than it was leased', async (t) => {
    t.after(() => notes.forEach((n) => t.diagnostic(n)));
    // Schedule in 3 lanes, keeping about 12 builds ahead of the runners so that scheduling goes on through every
    // fault (a retry after an outage reuses the requestId) ...
    const ids: string[] = [];
    let next = 0;
    let slowestScheduleMs = 0;
    const lanes = Array.from({ length: 3 }, async () => {
      while (next < BUILDS) {
        while (next < BUILDS && next - new Set(ran()).size > 12) await sleep(100);
        if (next >= BUILDS) break;
        const i = next++;
        const t = performance.now();
        const b = await retrying(
          () => kiln.schedule({ builder: { project: 'cfault', bucket: 'ci', builder: 'work' }, requestId: `b-${i}` }),
          `schedule b-${i}`,
        );
        slowestScheduleMs = Math.max(slowestScheduleMs, performance.now() - t);
        ids.push(b.id);
      }
    });
    // ... while the cluster loses its history and matching processes.
    for (const [k, services] of FAULTS.entries()) {
      const target = Math.ceil(((k + 1) * BUILDS) / 6);
      const deadline = Date.now() + 240_000;
      while (new Set(ran()).size < target) {
        if (Date.now() > deadline) assert.fail(`only ${new Set(ran()).size} builds ran before fault ${k + 1}`);
        await sleep(200);
      }
      note(`SIGKILL ${services.join(' + ')} after ${new Set(ran()).size} builds ran`);
      const pids = services.map((s) => cluster.pid(s));
      await Promise.all(services.map((s) => cluster.kill(s)));
      assert.ok(
        pids.every((pid) => pid !== undefined && !isAlive(pid)),
        `${services.join(' + ')} died`,
      );
      await sleep(3000);
      const t = performance.now();
      await Promise.all(services.map((s) => cluster.start(s)));
      note(`${services.join(' + ')} serving again after ${(performance.now() - t).toFixed(0)} ms`);
    }
    note(`${next} builds scheduled when the last fault was over`);
    await Promise.all(lanes);
    note(`the slowest schedule call took ${slowestScheduleMs.toFixed(0)} ms`);
    assert.equal(ids.length, BUILDS);
    assert.equal(new Set(ids).size, BUILDS, 'every schedule made its own build');

    // Every build ends, SUCCESS, exactly once.
    const ended = new Map<string, Build>();
    const deadline = Date.now() + 300_000;
    while (ended.size < ids.length) {
      for (const id of ids) {
        if (ended.has(id)) continue;
        const b = await retrying(() => kiln.get(id), 'get');
        if (!['SCHEDULED', 'STARTED'].includes(b.status)) ended.set(id, b);
      }
      if (Date.now() > deadline) assert.fail(`builds still pending: ${ids.filter((x) => !ended.has(x)).join(', ')}`);
      await sleep(500);
    }
    const runs = new Map<string, number>();
    for (const id of ran()) runs.set(id, (runs.get(id) ?? 0) + 1);
    for (const b of ended.values()) {
      assert.equal(b.status, 'SUCCESS', `build ${b.id}: ${b.status} ${b.summaryMarkdown ?? ''}`);
      assert.equal(b.events.filter((e) => e.kind === 'ENDED').length, 1, `build ${b.id} ended once`);
      // Leases never overlapped: every LEASED after the first follows a LEASE_EXPIRED.
      let live = false;
      for (const e of b.events) {
        if (e.kind === 'LEASED') {
          assert.ok(!live, `build ${b.id} leased twice without an expiry: ${JSON.stringify(b.events)}`);
          live = true;
        } else if (e.kind === 'LEASE_EXPIRED' || e.kind === 'ENDED') live = false;
      }
      const leases = b.events.filter((e) => e.kind === 'LEASED').length;
      const n = runs.get(b.id) ?? 0;
      assert.ok(n >= 1 && n <= leases, `build ${b.id} ran ${n} times on ${leases} leases: ${JSON.stringify(b.events)}`);
    }
    const reruns = [...runs.values()].filter((n) => n > 1).length;
    note(
      `${reruns} of ${BUILDS} builds ran again after their lease expired; ${outageErrors} API calls failed meanwhile`,
    );

    // Storage and Temporal's SQL visibility agree: each build once, nothing extra, all closed.
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const rows = (
      await client.query<{ id: string; n: string }>(
        `SELECT id::text AS id, count(*) OVER (PARTITION BY project, bucket, builder, number) AS n FROM builds WHERE project = 'cfault'`,
      )
    ).rows;
    await client.end();
    assert.deepEqual(new Set(rows.map((r) => r.id)), new Set(ids), 'storage holds exactly the scheduled builds');
    assert.ok(
      rows.every((r) => r.n === '1'),
      'build numbers unique per builder',
    );
    const connection = await Connection.connect({ address: cluster.address });
    try {
      const temporal = new Client({ connection, namespace: cluster.namespace });
      const count = async (q: string) => (await temporal.workflow.count(q)).count;
      await retrying(async () => {
        const completed = await count(`KilnProject = 'cfault' AND ExecutionStatus = 'Completed'`);
        const all = await count(`KilnProject = 'cfault'`);
        if (completed !== BUILDS || all !== BUILDS) throw new Error(`visibility: ${completed}/${all} of ${BUILDS}`);
      }, 'visibility to catch up');
    } finally {
      await connection.close();
    }
  });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
