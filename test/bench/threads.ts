/**
 * CPU per thread of this process, grouped by who started the thread (Linux: /proc/self/task). The
 * lease-cycle bench uses it to say where Kiln's process CPU goes beside the bare baseline's: the
 * main thread (API, runners' HTTP clients, local activities, embedded storage), the SDK's Rust core
 * (tokio threads), each worker's own threads (its workflow threads) and the rest (V8's and libuv's).
 * Node 20 names every JavaScript thread "node", so groups come from when a thread first appeared.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc's utime and stime (USER_HZ, 100 on Linux). */
const HZ = 100;

interface Task {
  comm: string;
  ticks: number;
}

function tasks(): Map<number, Task> {
  const out = new Map<number, Task>();
  let ids: string[];
  try {
    ids = readdirSync('/proc/self/task');
  } catch {
    return out; // not Linux
  }
  for (const id of ids) {
    try {
      const stat = readFileSync(`/proc/self/task/${id}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const f = stat.slice(close + 2).split(' ');
      out.set(Number(id), { comm, ticks: Number(f[11]) + Number(f[12]) });
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** CPU seconds by group; see the module comment. */
export type ThreadCpu = Record<string, number>;

/** Assigns this process's threads to groups as they appear, and reads CPU by group. */
export class ThreadGroups {
  private readonly group = new Map<number, string>();

  constructor() {
    this.claim('V8 and libuv');
  }

  /** Threads not seen before belong to `name` (call right after starting what creates them). */
  claim(name: string): void {
    for (const [tid, t] of tasks()) {
      if (this.group.has(tid)) continue;
      this.group.set(tid, this.named(tid, t.comm) ?? name);
    }
  }

  private named(tid: number, comm: string): string | undefined {
    if (tid === process.pid) return 'main thread';
    if (comm.startsWith('tokio')) return 'SDK core (Rust)';
    return undefined;
  }

  /** CPU seconds used so far, by group; threads that appeared unclaimed count as "later threads". */
  cpu(): ThreadCpu {
    const out: ThreadCpu = {};
    for (const [tid, t] of tasks()) {
      const g = this.group.get(tid) ?? this.named(tid, t.comm) ?? 'later threads';
      out[g] = (out[g] ?? 0) + t.ticks / HZ;
    }
    return out;
  }
}

/** `b - a`, group by group (a thread that ended in between takes its CPU with it, so clamp at 0). */
export function cpuBetween(a: ThreadCpu, b: ThreadCpu): ThreadCpu {
  const out: ThreadCpu = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) out[k] = Math.max(0, (b[k] ?? 0) - (a[k] ?? 0));
  return out;
}

/** Adds two readings group by group. */
export function cpuSum(a: ThreadCpu, b: ThreadCpu): ThreadCpu {
  const out: ThreadCpu = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + v;
  return out;
}
