/**
 * Build metrics from storage. Worker side: `withBuildMetrics(storage)` wraps the storage the build
 * workflows' activities write through and counts each transition as it is stored — the write
 * answers what it replaced (`recordBuildReplacing`, one statement), so a retried write (same version)
 * counts nothing and no read goes before it. API side: gauges
 * of open builds and of the pending queue's age, read from storage at scrape time (one grouped
 * query over the open builds, cached for a second).
 */
import { Gauge } from 'prom-client';
import { type Build, isEnded } from '../domain/build.ts';
import { type OpenBuildStat, type ReplacedBuild, type Storage } from '../storage/storage.ts';
import { type KilnMetrics } from './registry.ts';

const BUILDER = ['project', 'bucket', 'builder'] as const;

const eventKey = (e: Build['events'][number]) => `${e.time}\u0000${e.kind}\u0000${e.message}`;

/** Counts what changed from `before` (the stored build, if any) to `after` (pure but for the counters). */
export function countTransition(m: KilnMetrics, before: ReplacedBuild | undefined, after: Build): void {
  if (before && before.version >= after.version) return; // storage ignores this write
  const labels = { project: after.builder.project, bucket: after.builder.bucket, builder: after.builder.builder };
  if (!before || before.status !== after.status) m.buildStatusChanges.inc({ ...labels, status: after.status });
  const resets = after.leaseResets - (before?.leaseResets ?? 0);
  if (resets > 0) m.leaseExpiries.inc({ ...labels, outcome: 'reset' }, resets);
  if (isEnded(after.status) && !(before && isEnded(before.status)) && after.statusDetails.leaseExpired) {
    m.leaseExpiries.inc({ ...labels, outcome: 'ended' });
  }
  const seen = new Set((before?.events ?? []).map(eventKey));
  const stale = after.events.filter((e) => e.kind === 'STALE_REPORT_REFUSED' && !seen.has(eventKey(e))).length;
  if (stale > 0) m.staleReportsRefused.inc(labels, stale);
}

/** `storage`, with every `recordBuild` counted in `m` (see the module comment). */
export function withBuildMetrics(storage: Storage, m: KilnMetrics): Storage {
  return new Proxy(storage, {
    get(target, prop, receiver) {
      if (prop === 'recordBuild') {
        // Every argument goes on: dropping the lease keys once left storage without their hashes.
        return async (...args: Parameters<Storage['recordBuild']>): Promise<void> => {
          const written = await target.recordBuildReplacing(...args);
          if (written.written) countTransition(m, written.previous, args[0]);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** Where the open-build gauges read from; the last API started in this process wins. */
let source: { storage: Pick<Storage, 'openBuildStats'>; builders: () => OpenBuildStat['builder'][] } | undefined;
let cached: { at: number; rows: Promise<OpenBuildStat[]> } | undefined;

function openStats(): Promise<OpenBuildStat[]> {
  if (!source) return Promise.resolve([]);
  if (!cached || Date.now() - cached.at > 1000) {
    cached = { at: Date.now(), rows: source.storage.openBuildStats() };
    cached.rows.catch(() => (cached = undefined));
  }
  return cached.rows;
}

let registered = false;

/**
 * Registers `kiln_builds_open` and `kiln_builds_pending_oldest_age_seconds`, read from `storage` at
 * scrape time; every configured builder gets a series (0 when it has no such builds).
 */
export function registerOpenBuildGauges(
  m: KilnMetrics,
  storage: Pick<Storage, 'openBuildStats'>,
  builders: () => OpenBuildStat['builder'][],
): void {
  source = { storage, builders };
  cached = undefined;
  if (registered) return;
  registered = true;
  new Gauge({
    name: 'kiln_builds_open',
    help: 'Builds not ended, by builder and status (SCHEDULED: the pending queue; STARTED: running)',
    labelNames: [...BUILDER, 'status'],
    registers: [m.registry],
    async collect() {
      const rows = await openStats();
      this.reset();
      for (const b of source?.builders() ?? []) {
        for (const status of ['SCHEDULED', 'STARTED']) this.set({ ...b, status }, 0);
      }
      for (const r of rows) this.set({ ...r.builder, status: r.status }, r.count);
    },
  });
  new Gauge({
    name: 'kiln_builds_pending_oldest_age_seconds',
    help: 'Age (since it was created) of the oldest SCHEDULED build, by builder; 0 when none is pending',
    labelNames: [...BUILDER],
    registers: [m.registry],
    async collect() {
      const rows = await openStats();
      this.reset();
      for (const b of source?.builders() ?? []) this.set(b, 0);
      const now = Date.now();
      for (const r of rows) {
        if (r.status === 'SCHEDULED') this.set(r.builder, Math.max(0, (now - Date.parse(r.oldestCreateTime)) / 1000));
      }
    },
  });
}
