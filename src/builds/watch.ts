/**
 * Long-polls for the end of leases, so a runner stops a canceled build within a second instead of at
 * its next heartbeat. A runner asks with the builds it holds and their lease keys; the answer comes
 * as soon as one of them has ended or has a newer lease generation in storage, or empty after the
 * timeout. However many runners wait, one API process reads storage once per poll interval for all
 * of them (one query for every watched build) and makes no Temporal call at all: storage is written
 * by each build's workflow on every transition, and a cancel answers once storage has the ended build.
 */
import { type BuildState, type Storage } from '../storage/storage.ts';
import { type BuildStatus, isEnded } from '../domain/build.ts';

/** One build a runner watches: its id and the generation of the lease it holds (the lease key's prefix). */
export interface WatchedLease {
  buildId: string;
  leaseGeneration: number;
}

/** Why a watched lease is over; the codes a heartbeat would be refused with. */
export interface LeaseEnd {
  buildId: string;
  code: 'BUILD_IS_COMPLETED' | 'LEASE_EXPIRED' | 'BUILD_NOT_FOUND';
  message: string;
  /** The build's status in storage, when it is stored. */
  status?: BuildStatus;
}

interface Waiter {
  leases: WatchedLease[];
  resolve: (ends: LeaseEnd[]) => void;
  timer: NodeJS.Timeout;
}

/** Options of `BuildWatcher`. */
export interface BuildWatcherOptions {
  storage: Pick<Storage, 'getBuildStates'>;
  /** How often storage is read while anyone waits. @default 250 */
  pollMs?: number;
  /** Called with each poll's error (storage down); waiters keep waiting. */
  onError?: (e: unknown) => void;
}

/** What ended, for `leases`, given their stored states (pure). */
export function endedLeases(leases: WatchedLease[], states: Map<string, BuildState>): LeaseEnd[] {
  const ends: LeaseEnd[] = [];
  for (const l of leases) {
    const s = states.get(l.buildId);
    if (!s) {
      ends.push({ buildId: l.buildId, code: 'BUILD_NOT_FOUND', message: `build ${l.buildId} not found` });
    } else if (isEnded(s.status)) {
      ends.push({
        buildId: l.buildId,
        code: 'BUILD_IS_COMPLETED',
        status: s.status,
        message: `build ${l.buildId} has ended with status ${s.status}; stop working on it`,
      });
    } else if (s.leaseGeneration > l.leaseGeneration) {
      ends.push({
        buildId: l.buildId,
        code: 'LEASE_EXPIRED',
        status: s.status,
        message: `lease generation ${l.leaseGeneration} of build ${l.buildId} is over (now ${s.leaseGeneration}): stop`,
      });
    }
  }
  return ends;
}

/** See the module comment. One per API process. */
export class BuildWatcher {
  private readonly waiters = new Set<Waiter>();
  private loop: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly o: BuildWatcherOptions) {}

  /** Builds being watched right now (for metrics). */
  get watching(): number {
    let n = 0;
    for (const w of this.waiters) n += w.leases.length;
    return n;
  }

  /** Resolves with the leases that are over: at once when some already are, else at the first poll that sees one, else `[]` after `timeoutMs`. */
  async wait(leases: WatchedLease[], timeoutMs: number, signal?: AbortSignal): Promise<LeaseEnd[]> {
    const now = endedLeases(leases, await this.states(leases.map((l) => l.buildId)));
    if (now.length > 0 || timeoutMs <= 0 || this.closed) return now;
    return new Promise<LeaseEnd[]>((resolve) => {
      const w: Waiter = {
        leases,
        resolve: (ends) => {
          clearTimeout(w.timer);
          this.waiters.delete(w);
          resolve(ends);
        },
        timer: setTimeout(() => w.resolve([]), timeoutMs),
      };
      signal?.addEventListener('abort', () => w.resolve([]), { once: true });
      this.waiters.add(w);
      this.loop ??= this.run().finally(() => (this.loop = undefined));
    });
  }

  /** Answers every waiter (empty) and stops polling. */
  async close(): Promise<void> {
    this.closed = true;
    for (const w of [...this.waiters]) w.resolve([]);
    await this.loop;
  }

  /** The stored states of `ids` (for the caller's permission check). */
  statesOf(ids: string[]): Promise<BuildState[]> {
    return this.o.storage.getBuildStates([...new Set(ids)]);
  }

  private async states(ids: string[]): Promise<Map<string, BuildState>> {
    const rows = await this.o.storage.getBuildStates([...new Set(ids)]);
    return new Map(rows.map((r) => [r.id, r]));
  }

  private async run(): Promise<void> {
    while (this.waiters.size > 0 && !this.closed) {
      await new Promise((r) => setTimeout(r, this.o.pollMs ?? 250));
      const waiters = [...this.waiters];
      if (waiters.length === 0) break;
      let states: Map<string, BuildState>;
      try {
        states = await this.states(waiters.flatMap((w) => w.leases.map((l) => l.buildId)));
      } catch (e) {
        this.o.onError?.(e);
        continue;
      }
      for (const w of waiters) {
        const ends = endedLeases(w.leases, states);
        if (ends.length > 0) w.resolve(ends);
      }
    }
  }
}
