/**
 * `npm run bench`: Kiln's lease cycle through its HTTP API on one machine, against a real Temporal
 * dev server, for 1, 4 and 16 concurrent runners; the bare-Temporal baseline with the same round
 * trips; latencies per call; history events per build and per heartbeat; worker RSS with 1,000
 * builds open. Prints a table and writes bench-results.json. Options (env):
 *   BENCH_STORAGE=embedded|postgres   storage backend (postgres starts a throwaway server)
 *   BENCH_SCALE=1                     multiplies build counts
 *   BENCH_OPEN_BUILDS=1000            builds held open for the RSS figure (0 skips it)
 *   BENCH_LEVELS=1,4,16               runner counts to measure
 *   BENCH_BARE=0                      skips the bare-Temporal baseline (for profiling Kiln alone)
 *   BENCH_ROUNDS=3                    the classic, lease-next and bare cycles of a level take turns in this many rounds
 *   BENCH_WARMUP=20                   unmeasured Kiln and bare cycles first (JIT, bundle, connections)
 *   BENCH_TEMPORAL=dev|cluster        the Temporal dev server (default), or a multi-process Temporal cluster on
 *                                     a throwaway PostgreSQL (test/support/temporalCluster.ts; `npm run bench:cluster`)
 *   BENCH_NEXT=0                      skips the lease-next cycle (schedule → lease-next with start → 3 heartbeats
 *                                     → succeed: 6 calls instead of 8) measured beside the classic one
 *   BENCH_PENDING=25000               builds kept pending for the deep-queue figures (0 skips them; test/bench/pending.ts)
 *   BENCH_FLEET=500                   simulated pull runners against one API (0 skips them; test/bench/fleet.ts)
 *   BENCH_FLEET_SECS=120              how long the fleet runs (heartbeats and peeks every 10 s each)
 *   BENCH_LONG_HOURS=12               a build heartbeating every 10 s for this long on the time-skipping test server
 *                                     (0 skips it; needs KILN_SETUP_EXTRAS=java-test-server; test/bench/longBuild.ts)
 *   BENCH_LONG_MAX_EVENTS             that build's continue-as-new threshold (the workflow's default when unset)
 *   BENCH_RELAY=1                     the lease-cycle worker reaches Temporal through the supervisor's relay
 *                                     (workers/relay.ts), as under `kiln worker` and `kiln dev`: its cost
 *   BENCH_STARTUP=0                   skips the start time and idle RSS of `kiln api` / `kiln worker` (sources vs
 *                                     the production build; needs PostgreSQL, test/bench/startup.ts)
 * CPU per build is this process (API, worker, clients: all threads) and the Temporal server's processes (the
 * dev server, or the cluster's four; not PostgreSQL's); on a saturated machine it, not latency, sets the ratio.
 * The process's CPU is also split by thread (test/bench/threads.ts): the main thread, each worker's workflow
 * threads, the SDK's Rust core, and V8's and libuv's threads.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker } from '@temporalio/worker';
import pgClient from 'pg';
import { buildApi, listenApi } from '../../src/api/server.ts';
import { KilnClient } from '../../src/client/kilnClient.ts';
import { buildWorkflowId } from '../../src/domain/buildId.ts';
import { openStorage } from '../../src/storage/open.ts';
import { BuildService } from '../../src/builds/service.ts';
import { parseConfig, Registry } from '../../src/config/load.ts';
import { startDevEnv, testLogger } from '../support/temporal.ts';
import { type RunningPostgres, startPostgres } from '../support/postgres.ts';
import { connectToCluster, startTemporalCluster } from '../support/temporalCluster.ts';
import { compiledMode, measureStartup, startupTable, TSX_MODE } from './startup.ts';
import { buildKiln } from '../../scripts/build.ts';
import { KilnMetrics } from '../../src/metrics/registry.ts';
import { createKilnWorker, workflowBundle } from '../../workers/worker.ts';
import { hostPort, openRelay } from '../../workers/relay.ts';
import { baselineWorkflow, stepUpdate } from './baselineWorkflow.ts';
import { PENDING_BUCKET, PENDING_BUCKET_CONFIG, pendingPhase, pendingTable } from './pending.ts';
import { FLEET_BUCKET_CONFIG, fleetPhase, fleetTable } from './fleet.ts';
import { longBuildPhase, longBuildTable } from './longBuild.ts';
import { cpuBetween, cpuSum, type ThreadCpu, ThreadGroups } from './threads.ts';

const SCALE = Number(process.env.BENCH_SCALE ?? '1');
const STORAGE = process.env.BENCH_STORAGE === 'postgres' ? 'postgres' : 'embedded';
const OPEN_BUILDS = Number(process.env.BENCH_OPEN_BUILDS ?? '1000');
const BARE = process.env.BENCH_BARE !== '0';
const LEVELS = (process.env.BENCH_LEVELS ?? '1,4,16').split(',').filter(Boolean).map(Number);
const TEMPORAL = process.env.BENCH_TEMPORAL === 'cluster' ? 'cluster' : 'dev';
const STARTUP = process.env.BENCH_STARTUP !== '0';
const PENDING = Number(process.env.BENCH_PENDING ?? '25000');
const NEXT = process.env.BENCH_NEXT !== '0';
const WARMUP = Number(process.env.BENCH_WARMUP ?? '20');
const FLEET = Number(process.env.BENCH_FLEET ?? '500');
const FLEET_SECS = Number(process.env.BENCH_FLEET_SECS ?? '120');
const LONG_HOURS = Number(process.env.BENCH_LONG_HOURS ?? '12');
const LONG_MAX_EVENTS = process.env.BENCH_LONG_MAX_EVENTS ? Number(process.env.BENCH_LONG_MAX_EVENTS) : undefined;
const RELAY = process.env.BENCH_RELAY === '1';
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? '3'));
const buildsAt = (c: number) => Math.max(40, c * 20) * SCALE;

type Samples = Record<string, number[]>;
const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const ms = (x: number) => (Number.isNaN(x) ? '-' : x.toFixed(1));

/** CPU seconds used so far by the Temporal server's processes (children of this one); NaN off Linux. */
function serverCpuSecs(): number {
  let secs = 0;
  let found = false;
  try {
    for (const k of readdirSync('/proc')) {
      if (!/^\d+$/.test(k)) continue;
      try {
        const f = readFileSync(`/proc/${k}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
        if (Number(f[1]) !== process.pid || !readFileSync(`/proc/${k}/cmdline`, 'utf8').includes('temporal')) continue;
        secs += (Number(f[11]) + Number(f[12])) / 100;
        found = true;
      } catch {
        // gone meanwhile
      }
    }
  } catch {
    /* not Linux */
  }
  return found ? secs : NaN;
}
/** This process's threads by who started them (claimed as the bench starts each part). */
const threads = new ThreadGroups();
const cpuNow = () => ({
  node: process.cpuUsage(),
  server: serverCpuSecs(),
  threads: threads.cpu(),
  t: performance.now(),
});
const cpuSince = (a: ReturnType<typeof cpuNow>) => {
  const u = process.cpuUsage(a.node);
  return {
    nodeSecs: (u.user + u.system) / 1e6,
    serverSecs: serverCpuSecs() - a.server,
    threadSecs: cpuBetween(a.threads, threads.cpu()),
    wallSecs: (performance.now() - a.t) / 1000,
  };
};
/** CPU ms per build of each thread group over `n` builds. */
const threadMsPerBuild = (t: ThreadCpu, n: number) =>
  Object.fromEntries(Object.entries(t).map(([k, v]) => [k, (1000 * v) / n]));

async function timed<T>(samples: Samples, name: string, fn: () => Promise<T>): Promise<T> {
  const t = performance.now();
  const v = await fn();
  (samples[name] ??= []).push(performance.now() - t);
  return v;
}

const builder = { project: 'bench', bucket: 'ci', builder: 'b' };
const CONFIG = `
projects:
  - name: bench
    buckets:
      - name: ci
        builders:
          - name: b
${PENDING_BUCKET_CONFIG}${FLEET_BUCKET_CONFIG}`;

/** What a failed bench stops before it exits, newest first: it must not leave its servers running. */
const onFailure: (() => Promise<unknown>)[] = [];

async function main(): Promise<void> {
  // --- Temporal: the dev server, or a cluster on PostgreSQL (BENCH_TEMPORAL=cluster) ---
  const pg = STORAGE === 'postgres' || TEMPORAL === 'cluster' ? await startPostgres() : undefined;
  const cluster = TEMPORAL === 'cluster' ? await startTemporalCluster({ postgresUrl: pg!.url }) : undefined;
  if (cluster) {
    console.error(
      `  Temporal cluster (${cluster.historyShards} history shards) up in ${((cluster.startupMs.schema + cluster.startupMs.services) / 1000).toFixed(1)} s`,
    );
  }
  const env = cluster
    ? await connectToCluster(cluster).then((c) => ({
        ...c,
        teardown: async () => (await c.close(), await cluster.stop()),
      }))
    : await startDevEnv();
  onFailure.push(async () => (await env.teardown(), await pg?.stop()));
  threads.claim('client connections');
  // --- end Temporal ---
  const dataDir = mkdtempSync(join(tmpdir(), 'kiln-bench-'));
  const storage = pg
    ? await openStorage({ kind: 'postgres', url: pg.url })
    : await openStorage({ kind: 'embedded', dataDir });
  const registry = new Registry(parseConfig(CONFIG, 'bench-config.yaml', { LOG_LEVEL: 'silent' }));
  const taskQueue = `kiln-bench-${process.pid}`;
  const service = new BuildService({ client: env.client, storage, registry, taskQueue, logger: testLogger });
  const ctx = { service, registry, logger: testLogger };
  const app = buildApi(ctx);
  const url = await listenApi(app, ctx, '127.0.0.1', 0);
  const kiln = new KilnClient({ baseUrl: url });
  const relay = RELAY ? await openRelay(hostPort(env.address)!) : undefined;
  const workerConnection = relay ? await NativeConnection.connect({ address: relay.address }) : env.nativeConnection;
  if (relay) console.error(`  worker through a relay at ${relay.address}`);
  const worker = await createKilnWorker({
    connection: workerConnection,
    namespace: 'default',
    taskQueue,
    deps: { storage, logger: testLogger },
    // As `kiln dev` and `kiln worker` run by default (metrics.enabled): every stored transition is counted.
    metrics: new KilnMetrics(),
  });
  threads.claim('Kiln worker (workflow threads)');
  const baselineQueue = `${taskQueue}-baseline`;
  const baseline = await Worker.create({
    connection: env.nativeConnection,
    taskQueue: baselineQueue,
    workflowsPath: fileURLToPath(new URL('./baselineWorkflow.ts', import.meta.url)),
  });
  threads.claim('bare worker (workflow threads)');
  await workflowBundle();

  const results: Record<string, unknown>[] = [];
  const sampleIds: string[] = [];
  await Promise.all([
    baseline.runUntil(
      worker.runUntil(async () => {
        // Warm-up, not measured: the first builds of a process pay for JIT, the workflow bundle's first
        // evaluations and connection set-up, which would otherwise land on whichever cycle runs first.
        for (let i = 0; i < WARMUP; i++) {
          const b = await kiln.schedule({ builder });
          const g = await kiln.lease(b.id, { holder: 'warm-up' });
          await kiln.start(b.id, { leaseKey: g.leaseKey });
          await kiln.heartbeat(b.id, { leaseKey: g.leaseKey });
          await kiln.succeed(b.id, { leaseKey: g.leaseKey });
          const wf = await env.client.workflow.start(baselineWorkflow, {
            taskQueue: baselineQueue,
            workflowId: `baseline-warmup-${i}-${Date.now()}`,
            args: [1],
          });
          await wf.executeUpdate(stepUpdate, { args: [0] });
        }
        for (const c of LEVELS) {
          const n = buildsAt(c);
          const s: Samples = {};
          const ns: Samples = {};
          const bs: Samples = {};
          /** Runs `count` cycles of `one` on `c` runners at once; its CPU and wall time. */
          const phase = async (count: number, one: (i: number) => Promise<void>) => {
            let next = 0;
            const at = cpuNow();
            await Promise.all(
              Array.from({ length: c }, async () => {
                while (next < count) await one(next++);
              }),
            );
            return cpuSince(at);
          };
          // Kiln: schedule → visible to peek → lease → start → 3 heartbeats → succeed, over HTTP.
          const classicCycle = async () => {
            const b = await timed(s, 'schedule', () => kiln.schedule({ builder }));
            const visibleFrom = performance.now();
            for (;;) {
              const p = await kiln.peek({ buckets: ['bench/ci'], maxBuilds: 100 });
              if (p.builds.some((x) => x.id === b.id)) break;
              await new Promise((r) => setTimeout(r, 2));
            }
            (s['schedule→leasable'] ??= []).push(performance.now() - visibleFrom);
            const g = await timed(s, 'lease', () => kiln.lease(b.id, { holder: 'bench' }));
            await timed(s, 'start', () => kiln.start(b.id, { leaseKey: g.leaseKey }));
            for (let i = 0; i < 3; i++)
              await timed(s, 'heartbeat', () => kiln.heartbeat(b.id, { leaseKey: g.leaseKey }));
            await timed(s, 'succeed', () => kiln.succeed(b.id, { leaseKey: g.leaseKey }));
            if (sampleIds.length < 5) sampleIds.push(b.id);
          };
          // Kiln with lease-next (issue 18): schedule → lease-next (+ start) → 3 heartbeats → succeed.
          const nextCycle = async () => {
            await timed(ns, 'schedule', () => kiln.schedule({ builder }));
            type Grant = { leaseKey: string; build: { id: string } };
            let g: Grant | null = null;
            while (g === null) {
              g = (
                await timed(ns, 'lease-next', () =>
                  kiln.request<{ lease: Grant | null }>('POST', '/api/v1/lease-next', {
                    buckets: ['bench/ci'],
                    holder: 'bench',
                    start: true,
                  }),
                )
              ).lease;
              if (g === null) await new Promise((r) => setTimeout(r, 2));
            }
            const { leaseKey, build: leased } = g;
            for (let i = 0; i < 3; i++) await timed(ns, 'heartbeat', () => kiln.heartbeat(leased.id, { leaseKey }));
            await timed(ns, 'succeed', () => kiln.succeed(leased.id, { leaseKey }));
          };
          // Bare Temporal: start + 6 updates per workflow, straight from the client.
          const bareCycle = async (i: number) => {
            const handle = await timed(bs, 'start', () =>
              env.client.workflow.start(baselineWorkflow, {
                taskQueue: baselineQueue,
                workflowId: `baseline-${c}-${i}-${Date.now()}`,
                args: [6],
              }),
            );
            for (let k = 0; k < 6; k++)
              await timed(bs, 'update', () => handle.executeUpdate(stepUpdate, { args: [k] }));
          };
          // The three take turns in ROUNDS rounds (n builds each in all), so a drift of the machine or of
          // the server's state over the level (another process's burst, a growing database) falls on all of them.
          const zero = { nodeSecs: 0, serverSecs: 0, threadSecs: {} as ThreadCpu, wallSecs: 0 };
          const add = (a: typeof zero, b: typeof zero) => ({
            nodeSecs: a.nodeSecs + b.nodeSecs,
            serverSecs: a.serverSecs + b.serverSecs,
            threadSecs: cpuSum(a.threadSecs, b.threadSecs),
            wallSecs: a.wallSecs + b.wallSecs,
          });
          let kilnCpu = zero;
          let nextCpu = zero;
          let bareCpu = zero;
          /** Each round's ratios (bare wall time over Kiln's), to show the spread within one run. */
          const rounds: { classic: number; leaseNext?: number }[] = [];
          for (let r = 0; r < ROUNDS; r++) {
            const share = Math.floor(n / ROUNDS) + (r < n % ROUNDS ? 1 : 0);
            const k = await phase(share, classicCycle);
            const x = NEXT ? await phase(share, nextCycle) : zero;
            const b = BARE ? await phase(share, (i) => bareCycle(r * n + i)) : zero;
            kilnCpu = add(kilnCpu, k);
            nextCpu = add(nextCpu, x);
            bareCpu = add(bareCpu, b);
            rounds.push({ classic: b.wallSecs / k.wallSecs, ...(NEXT ? { leaseNext: b.wallSecs / x.wallSecs } : {}) });
          }
          const kilnSecs = kilnCpu.wallSecs;
          const bareSecs = bareCpu.wallSecs;
          const row = {
            runners: c,
            builds: n,
            kilnBuildsPerSec: n / kilnSecs,
            bareBuildsPerSec: n / bareSecs,
            ratio: bareSecs / kilnSecs,
            roundRatios: rounds,
            ...(NEXT
              ? {
                  leaseNextBuildsPerSec: n / nextCpu.wallSecs,
                  leaseNextRatio: bareSecs / nextCpu.wallSecs,
                  leaseNextCpuMsPerBuild: {
                    process: (1000 * nextCpu.nodeSecs) / n,
                    temporal: (1000 * nextCpu.serverSecs) / n,
                  },
                  leaseNextThreadCpuMsPerBuild: threadMsPerBuild(nextCpu.threadSecs, n),
                  leaseNextLatencyMs: Object.fromEntries(
                    Object.entries(ns).map(([k, v]) => [k, { p50: pct(v, 50), p99: pct(v, 99) }]),
                  ),
                }
              : {}),
            cpuMsPerBuild: {
              kiln: { process: (1000 * kilnCpu.nodeSecs) / n, temporal: (1000 * kilnCpu.serverSecs) / n },
              bare: { process: (1000 * bareCpu.nodeSecs) / n, temporal: (1000 * bareCpu.serverSecs) / n },
            },
            threadCpuMsPerBuild: {
              kiln: threadMsPerBuild(kilnCpu.threadSecs, n),
              bare: threadMsPerBuild(bareCpu.threadSecs, n),
            },
            latencyMs: Object.fromEntries(Object.entries(s).map(([k, v]) => [k, { p50: pct(v, 50), p99: pct(v, 99) }])),
            bareLatencyMs: Object.fromEntries(
              Object.entries(bs).map(([k, v]) => [k, { p50: pct(v, 50), p99: pct(v, 99) }]),
            ),
          };
          results.push(row);
          console.error(
            `  ${c} runner(s): ${row.kilnBuildsPerSec.toFixed(1)} builds/s${NEXT ? `, lease-next ${(n / nextCpu.wallSecs).toFixed(1)}/s` : ''} (bare ${row.bareBuildsPerSec.toFixed(1)}/s); ratio by round: classic ${rounds.map((r) => r.classic.toFixed(2)).join(' / ')}${NEXT ? `, lease-next ${rounds.map((r) => (r.leaseNext ?? NaN).toFixed(2)).join(' / ')}` : ''}`,
          );
        }

        // History events per build, and per heartbeat (a build with 3 more heartbeats).
        if (sampleIds.length === 0) return;
        const lens = await Promise.all(
          sampleIds.map(
            async (id) => (await env.client.workflow.getHandle(buildWorkflowId(id)).describe()).historyLength,
          ),
        );
        const extra = await kiln.schedule({ builder });
        await new Promise((r) => setTimeout(r, 200));
        const g = await kiln.lease(extra.id, {});
        await kiln.start(extra.id, { leaseKey: g.leaseKey });
        for (let i = 0; i < 23; i++) await kiln.heartbeat(extra.id, { leaseKey: g.leaseKey });
        await kiln.succeed(extra.id, { leaseKey: g.leaseKey });
        const extraLen = (await env.client.workflow.getHandle(buildWorkflowId(extra.id)).describe()).historyLength;
        const perBuild = lens.reduce((a, b) => a + b, 0) / lens.length;
        // A lease-next build (lease and start in one update), same 3 heartbeats.
        let leaseNextEvents: number | undefined;
        if (NEXT) {
          await kiln.schedule({ builder });
          const ng = (await kiln.leaseNext({ buckets: ['bench/ci'], holder: 'bench', start: true })).lease;
          if (ng) {
            for (let i = 0; i < 3; i++) await kiln.heartbeat(ng.build.id, { leaseKey: ng.leaseKey });
            await kiln.succeed(ng.build.id, { leaseKey: ng.leaseKey });
            leaseNextEvents = (await env.client.workflow.getHandle(buildWorkflowId(ng.build.id)).describe())
              .historyLength;
          }
        }
        results.push({
          historyEventsPerBuild: perBuild,
          eventsPerHeartbeat: (extraLen - perBuild) / 20,
          ...(leaseNextEvents !== undefined ? { historyEventsPerLeaseNextBuild: leaseNextEvents } : {}),
        });

        // Worker RSS with many builds open (scheduled, not leased).
        if (OPEN_BUILDS > 0) {
          global.gc?.();
          const before = process.memoryUsage().rss;
          let k = 0;
          await Promise.all(
            Array.from({ length: 16 }, async () => {
              while (k < OPEN_BUILDS) {
                k++;
                await kiln.schedule({ builder });
              }
            }),
          );
          await new Promise((r) => setTimeout(r, 3000));
          const after = process.memoryUsage().rss;
          results.push({
            openBuilds: OPEN_BUILDS,
            processRssMB: after / 2 ** 20,
            rssGrowthMB: (after - before) / 2 ** 20,
          });
        }
      }),
    ),
  ]);

  // --- many pending builds (issue 18 item 1): a fresh worker, stopped and restarted by the phase ---
  const startWorker = async () => {
    const w = await createKilnWorker({
      connection: env.nativeConnection,
      namespace: 'default',
      taskQueue,
      deps: { storage, logger: testLogger },
    });
    return { worker: w, run: w.run() };
  };
  if (PENDING > 0) {
    const figures = await pendingPhase({ kiln, n: PENDING, startWorker, log: (l) => console.error(l) });
    results.push({ pending: figures });
    console.error(
      `  ${PENDING} pending: schedule ${figures.scheduleBuildsPerSec.toFixed(1)} builds/s, peek p99 ${ms(figures.peekMs.alone.p99)} ms alone / ${ms(figures.peekMs.with16.p99)} ms with 16, restart → lease ${ms(figures.workerRestartToFirstLeaseMs)} ms`,
    );
  }
  // --- end pending ---
  // --- a fleet of runners against one API (issue 18 item 2), peeking the pending queue too ---
  if (FLEET > 0) {
    const w = await startWorker();
    const figures = await fleetPhase({
      kiln,
      url,
      runners: FLEET,
      secs: FLEET_SECS,
      peekBuckets: [PENDING_BUCKET, 'bench/fleet'],
      serverCpuSecs,
      log: (l) => console.error(l),
    });
    w.worker.shutdown();
    await w.run;
    results.push({ fleet: figures });
    console.error(
      `  ${FLEET} runners: heartbeat p99 ${ms(figures.heartbeatMs.p99)} ms, API CPU ${figures.apiCpuMsPerRunnerSec.toFixed(2)} ms/s per runner, ${figures.leasesLost} leases lost`,
    );
  }
  // --- end fleet ---
  // --- a 12-hour build on the time-skipping server (issue 18 item 5) ---
  if (LONG_HOURS > 0) {
    const figures = await longBuildPhase({
      hours: LONG_HOURS,
      maxHistoryEvents: LONG_MAX_EVENTS,
      log: (l) => console.error(l),
    });
    results.push({ longBuild: figures });
    console.error(
      `  ${LONG_HOURS} h build: ${figures.runs} runs, max ${figures.maxEventsPerRun} events per run, ${figures.ok ? 'all carried' : figures.problems.join('; ')}`,
    );
  }
  // --- end long build ---

  await app.close();
  await storage.close();

  // --- start time and idle RSS of kiln api / kiln worker: the sources (tsx) vs the production build ---
  if (STARTUP) {
    const startupPg: RunningPostgres | undefined = pg ?? (await startPostgres().catch(() => undefined));
    if (!startupPg) {
      console.error('  startup figures skipped: they need PostgreSQL (npm run bench:postgres installs it)');
    } else {
      const build = await buildKiln({
        outDir: 'node_modules/.cache/kiln-bench-build',
        typecheck: false,
        log: () => {},
      });
      const pool = new pgClient.Pool({ connectionString: startupPg.url });
      await pool.query('CREATE DATABASE kiln_startup').finally(() => pool.end());
      const figures = await measureStartup({
        temporalAddress: env.address,
        namespace: env.namespace ?? 'default',
        databaseUrl: startupPg.url.replace(/\/kiln$/, '/kiln_startup'),
        modes: [TSX_MODE, compiledMode(build.outDir)],
      });
      results.push({ startup: figures });
      if (startupPg !== pg) await startupPg.stop();
      rmSync(build.outDir, { recursive: true, force: true });
    }
  }
  // --- end startup ---

  if (relay) {
    await workerConnection.close();
    await relay.cut();
  }
  await env.teardown();
  await pg?.stop();
  rmSync(dataDir, { recursive: true, force: true });

  const lines = [
    '',
    `Kiln lease-cycle benchmark — storage: ${STORAGE}, ${TEMPORAL === 'cluster' ? `Temporal cluster (frontend, history, matching, worker processes; ${cluster?.historyShards} shards) on PostgreSQL` : 'Temporal dev server'} on 127.0.0.1, one process (API + worker + clients)`,
    '',
    '| runners | builds | Kiln builds/s | bare Temporal builds/s | ratio | CPU ms/build Kiln (process + server) | CPU ms/build bare | schedule→leasable p50/p99 ms | schedule p50/p99 | lease p50/p99 | start p50/p99 | heartbeat p50/p99 | succeed p50/p99 |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  type Cpu = { process: number; temporal: number };
  for (const r of results.filter((x) => 'runners' in x) as {
    runners: number;
    builds: number;
    kilnBuildsPerSec: number;
    bareBuildsPerSec: number;
    ratio: number;
    cpuMsPerBuild: { kiln: Cpu; bare: Cpu };
    latencyMs: Record<string, { p50: number; p99: number }>;
  }[]) {
    const l = (k: string) => `${ms(r.latencyMs[k]?.p50 ?? NaN)} / ${ms(r.latencyMs[k]?.p99 ?? NaN)}`;
    const cpu = (c: Cpu) => `${c.process.toFixed(0)} + ${Number.isNaN(c.temporal) ? '-' : c.temporal.toFixed(0)}`;
    lines.push(
      `| ${r.runners} | ${r.builds} | ${r.kilnBuildsPerSec.toFixed(1)} | ${r.bareBuildsPerSec.toFixed(1)} | ${r.ratio.toFixed(2)} | ${cpu(r.cpuMsPerBuild.kiln)} | ${cpu(r.cpuMsPerBuild.bare)} | ${l('schedule→leasable')} | ${l('schedule')} | ${l('lease')} | ${l('start')} | ${l('heartbeat')} | ${l('succeed')} |`,
    );
  }
  const nextRows = results.filter((x) => 'leaseNextBuildsPerSec' in x) as {
    runners: number;
    builds: number;
    bareBuildsPerSec: number;
    leaseNextBuildsPerSec: number;
    leaseNextRatio: number;
    leaseNextCpuMsPerBuild: Cpu;
    leaseNextLatencyMs: Record<string, { p50: number; p99: number }>;
  }[];
  if (nextRows.length > 0) {
    lines.push(
      '',
      'With lease-next (schedule → lease-next with start → 3 heartbeats → succeed: 6 HTTP calls instead of 8):',
      '',
      '| runners | builds | Kiln builds/s | bare Temporal builds/s | ratio | CPU ms/build Kiln (process + server) | schedule p50/p99 | lease-next p50/p99 | heartbeat p50/p99 | succeed p50/p99 |',
      '|---|---|---|---|---|---|---|---|---|---|',
    );
    for (const r of nextRows) {
      const l = (k: string) =>
        `${ms(r.leaseNextLatencyMs[k]?.p50 ?? NaN)} / ${ms(r.leaseNextLatencyMs[k]?.p99 ?? NaN)}`;
      const c = r.leaseNextCpuMsPerBuild;
      lines.push(
        `| ${r.runners} | ${r.builds} | ${r.leaseNextBuildsPerSec.toFixed(1)} | ${r.bareBuildsPerSec.toFixed(1)} | ${r.leaseNextRatio.toFixed(2)} | ${c.process.toFixed(0)} + ${Number.isNaN(c.temporal) ? '-' : c.temporal.toFixed(0)} | ${l('schedule')} | ${l('lease-next')} | ${l('heartbeat')} | ${l('succeed')} |`,
      );
    }
  }
  const threadRows = results.filter((x) => 'threadCpuMsPerBuild' in x) as {
    runners: number;
    leaseNextThreadCpuMsPerBuild?: Record<string, number>;
    threadCpuMsPerBuild: { kiln: Record<string, number>; bare: Record<string, number> };
  }[];
  if (threadRows.length > 0 && Object.keys(threadRows[0]!.threadCpuMsPerBuild.bare).length > 0) {
    // Where the process CPU goes, thread group by thread group (see test/bench/threads.ts).
    const groups = [
      ...new Set(
        threadRows.flatMap((r) => [
          ...Object.keys(r.threadCpuMsPerBuild.kiln),
          ...Object.keys(r.threadCpuMsPerBuild.bare),
        ]),
      ),
    ]
      .filter((g) =>
        threadRows.some(
          (r) =>
            (r.threadCpuMsPerBuild.kiln[g] ?? 0) +
              (r.leaseNextThreadCpuMsPerBuild?.[g] ?? 0) +
              (r.threadCpuMsPerBuild.bare[g] ?? 0) >=
            0.05,
        ),
      )
      .sort();
    const f = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(1));
    lines.push(
      '',
      'Process CPU by thread, ms per build (classic / lease-next / bare):',
      '',
      `| runners | ${groups.join(' | ')} |`,
      `|---|${groups.map(() => '---').join('|')}|`,
    );
    for (const r of threadRows) {
      const t = r.threadCpuMsPerBuild;
      const cells = groups.map(
        (g) => `${f(t.kiln[g] ?? 0)} / ${f(r.leaseNextThreadCpuMsPerBuild?.[g] ?? 0)} / ${f(t.bare[g] ?? 0)}`,
      );
      lines.push(`| ${r.runners} | ${cells.join(' | ')} |`);
    }
  }
  for (const r of results.filter((x) => 'pending' in x))
    lines.push('', 'Many pending builds (one runner covering half of them):', '', pendingTable(r.pending as never));
  for (const r of results.filter((x) => 'fleet' in x))
    lines.push(
      '',
      'Pull runners against one API (one build each; process = API + worker):',
      '',
      fleetTable(r.fleet as never),
    );
  for (const r of results.filter((x) => 'longBuild' in x))
    lines.push('', 'A long build (runner heartbeats every 10 s):', '', longBuildTable(r.longBuild as never));
  const own = ['runners', 'startup', 'pending', 'fleet', 'longBuild'];
  for (const r of results.filter((x) => !own.some((k) => k in x)))
    lines.push('', ...Object.entries(r).map(([k, v]) => `${k}: ${typeof v === 'number' ? v.toFixed(1) : String(v)}`));
  for (const r of results.filter((x) => 'startup' in x))
    lines.push(
      '',
      'Start time and idle RSS (separate processes, PostgreSQL storage):',
      '',
      startupTable(r.startup as never),
    );
  console.log(lines.join('\n'));
  const out = `bench-results${STORAGE === 'postgres' ? '-postgres' : ''}${TEMPORAL === 'cluster' ? '-cluster' : ''}.json`;
  writeFileSync(
    out,
    JSON.stringify({ storage: STORAGE, temporal: TEMPORAL, when: new Date().toISOString(), results }, null, 2),
  );
  console.log(`\nwrote ${out}`);
  process.exit(0);
}

await main().catch(async (e: unknown) => {
  console.error(e);
  for (const stop of onFailure.reverse()) await stop().catch(() => undefined);
  process.exit(1);
});
