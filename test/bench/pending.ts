/**
 * `npm run bench`, many pending builds (issue 18 item 1): schedules `n` builds over HTTP and keeps
 * them open, then measures what a queue that deep costs a runner and an operator — peek latency for
 * a runner's buckets and dimensions (alone and with 16 peeking at once), whether the oldest build of
 * the best priority is handed out first, the time from a worker restart to its first lease, and the
 * process's memory per open build. Figures only; the caller prints them and writes them to JSON.
 */
import { type Worker } from '@temporalio/worker';
import { type KilnClient } from '../../src/client/kilnClient.ts';
import { type Build } from '../../src/domain/build.ts';

/** The bucket the pending builds go to: five builders, two pools, all Linux. */
export const PENDING_BUCKET = 'bench/pending';
export const PENDING_BUILDERS = ['p0', 'p1', 'p2', 'p3', 'p4'];
/** Config YAML of `PENDING_BUCKET` (a bucket of project `bench`). */
export const PENDING_BUCKET_CONFIG = `
      - name: pending
        builders:
${PENDING_BUILDERS.map((b, i) => `          - { name: ${b}, dimensions: ['os:linux', 'pool:${i % 2 === 0 ? 'a' : 'b'}'] }`).join('\n')}
`;
/** What the measuring runner offers: pool a only, so its peek skips the other pool's builds. */
const RUNNER_DIMENSIONS = ['os:linux', 'pool:a', 'cpu:x86-64'];
/** Every tenth build is urgent (priority 20, the others 30). */
const URGENT_EVERY = 10;

export interface PendingFigures {
  pendingBuilds: number;
  scheduleBuildsPerSec: number;
  scheduleMsP50: number;
  scheduleMsP99: number;
  scheduleCpuMsPerBuild: number;
  peekMs: { alone: { p50: number; p99: number }; with16: { p50: number; p99: number } };
  /** The peek's first page is the oldest builds of the best priority the runner covers, in order. */
  oldestHighestPriorityFirst: boolean;
  /** From creating a new worker (all builds open, none cached) to its first granted lease. */
  workerRestartToFirstLeaseMs: number;
  /** Leases of builds no worker has cached (p50/p99), right after the restart. */
  coldLeaseMs: { p50: number; p99: number };
  /** RSS of the process (API + worker + clients) and its main-thread JS heap (API, clients, activities). */
  rssMB: { before: number; after: number; perOpenBuildKB: number };
  mainHeapMB: { before: number; after: number; perOpenBuildKB: number };
}

const pct = (xs: number[], p: number): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const mb = (bytes: number) => bytes / 2 ** 20;

/**
 * Runs the phase. `startWorker` starts a Kiln worker on the bench's task queue and returns it with
 * its run promise; the phase stops it after scheduling and starts another to time the restart.
 */
export async function pendingPhase(opts: {
  kiln: KilnClient;
  n: number;
  concurrency?: number;
  startWorker: () => Promise<{ worker: Worker; run: Promise<void> }>;
  log: (line: string) => void;
}): Promise<PendingFigures> {
  const { kiln, n } = opts;
  const concurrency = opts.concurrency ?? 16;
  let w = await opts.startWorker();
  global.gc?.();
  const rss0 = process.memoryUsage().rss;
  const heap0 = process.memoryUsage().heapUsed;

  // Schedule: `concurrency` clients at once, as a burst from CQ or a scheduler would.
  const scheduled: Build[] = [];
  const scheduleMs: number[] = [];
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        const t = performance.now();
        const b = await kiln.schedule({
          builder: { project: 'bench', bucket: 'pending', builder: PENDING_BUILDERS[i % PENDING_BUILDERS.length]! },
          ...(i % URGENT_EVERY === 0 ? { priority: 20 } : {}),
        });
        scheduleMs.push(performance.now() - t);
        scheduled.push(b);
        if ((i + 1) % 5000 === 0) opts.log(`  pending: ${i + 1} of ${n} scheduled`);
      }
    }),
  );
  const scheduleSecs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);

  // Peek as one runner covering pool a, alone and with 15 others peeking at the same time.
  const peek = (limit: number) =>
    kiln.peek({ buckets: [PENDING_BUCKET], dimensions: RUNNER_DIMENSIONS, maxBuilds: limit });
  const timedPeeks = async (peekers: number, each: number): Promise<number[]> => {
    const xs: number[] = [];
    await Promise.all(
      Array.from({ length: peekers }, async () => {
        for (let i = 0; i < each; i++) {
          const t = performance.now();
          await peek(10);
          xs.push(performance.now() - t);
        }
      }),
    );
    return xs;
  };
  await timedPeeks(1, 5); // warm-up
  const alone = await timedPeeks(1, 200);
  const with16 = await timedPeeks(16, 25);

  // The head of the queue: pool-a builds, best priority first, oldest first (IDs decrease with time).
  const covers = (b: Build) => b.dimensions.every((d) => RUNNER_DIMENSIONS.includes(d));
  const expected = scheduled
    .filter(covers)
    // IDs decrease with creation time (the ms the build was reserved), so the oldest has the largest.
    .sort((a, b) => a.priority - b.priority || (BigInt(b.id) > BigInt(a.id) ? 1 : -1))
    .slice(0, 50);
  const page = (await peek(50)).builds;
  const oldestHighestPriorityFirst = page.length === expected.length && page.every((b, i) => b.id === expected[i]?.id);
  if (!oldestHighestPriorityFirst) {
    opts.log(
      `  pending: peek order differs: got ${page
        .slice(0, 5)
        .map((b) => `${b.priority}/${b.createTime}`)
        .join(', ')}; expected ${expected
        .slice(0, 5)
        .map((b) => `${b.priority}/${b.createTime}`)
        .join(', ')}`,
    );
  }

  global.gc?.();
  await new Promise((r) => setTimeout(r, 2000));
  const rss1 = process.memoryUsage().rss;
  const heap1 = process.memoryUsage().heapUsed;

  // Worker restart with every build open: the first lease it serves, then leases of uncached builds.
  w.worker.shutdown();
  await w.run;
  const head = page[0];
  if (!head) throw new Error('peek found no pending build');
  const tRestart = performance.now();
  w = await opts.startWorker();
  await kiln.lease(head.id, { holder: 'bench-restart' });
  const workerRestartToFirstLeaseMs = performance.now() - tRestart;
  const cold: number[] = [];
  for (const b of page.slice(1, 31)) {
    const t = performance.now();
    await kiln.lease(b.id, { holder: 'bench-cold' });
    cold.push(performance.now() - t);
  }
  w.worker.shutdown();
  await w.run;

  return {
    pendingBuilds: n,
    scheduleBuildsPerSec: n / scheduleSecs,
    scheduleMsP50: pct(scheduleMs, 50),
    scheduleMsP99: pct(scheduleMs, 99),
    scheduleCpuMsPerBuild: (cpu.user + cpu.system) / 1000 / n,
    peekMs: {
      alone: { p50: pct(alone, 50), p99: pct(alone, 99) },
      with16: { p50: pct(with16, 50), p99: pct(with16, 99) },
    },
    oldestHighestPriorityFirst,
    workerRestartToFirstLeaseMs,
    coldLeaseMs: { p50: pct(cold, 50), p99: pct(cold, 99) },
    rssMB: { before: mb(rss0), after: mb(rss1), perOpenBuildKB: (rss1 - rss0) / 1024 / n },
    mainHeapMB: { before: mb(heap0), after: mb(heap1), perOpenBuildKB: (heap1 - heap0) / 1024 / n },
  };
}

/** The phase's figures as a Markdown table. */
export function pendingTable(f: PendingFigures): string {
  const n = (x: number, d = 1) => (Number.isNaN(x) ? '-' : x.toFixed(d));
  return [
    '| figure | value |',
    '|---|---|',
    `| pending builds | ${f.pendingBuilds} |`,
    `| schedule builds/s (16 clients) | ${n(f.scheduleBuildsPerSec)} |`,
    `| schedule p50 / p99 ms | ${n(f.scheduleMsP50)} / ${n(f.scheduleMsP99)} |`,
    `| schedule CPU ms/build (process) | ${n(f.scheduleCpuMsPerBuild)} |`,
    `| peek p50 / p99 ms, alone | ${n(f.peekMs.alone.p50)} / ${n(f.peekMs.alone.p99)} |`,
    `| peek p50 / p99 ms, 16 at once | ${n(f.peekMs.with16.p50)} / ${n(f.peekMs.with16.p99)} |`,
    `| oldest build of the best priority first | ${f.oldestHighestPriorityFirst ? 'yes' : 'NO'} |`,
    `| worker restart → first lease ms | ${n(f.workerRestartToFirstLeaseMs, 0)} |`,
    `| lease of an uncached build p50 / p99 ms | ${n(f.coldLeaseMs.p50)} / ${n(f.coldLeaseMs.p99)} |`,
    `| process RSS MB before → after (KB per open build) | ${n(f.rssMB.before, 0)} → ${n(f.rssMB.after, 0)} (${n(f.rssMB.perOpenBuildKB)}) |`,
    `| main-thread heap MB before → after (KB per open build) | ${n(f.mainHeapMB.before, 0)} → ${n(f.mainHeapMB.after, 0)} (${n(f.mainHeapMB.perOpenBuildKB)}) |`,
  ].join('\n');
}
