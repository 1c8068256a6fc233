/** How the UI writes times, durations and statuses. */
import type { BuildStatus } from '../../src/domain/build.ts';

/** `1h 02m`, `3m 20s`, `45s`, `850 ms`. */
export function duration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** Milliseconds between two ISO times (or until `now`). */
export function between(from: string | undefined, to: string | undefined, nowMs = Date.now()): number | undefined {
  if (!from) return undefined;
  return (to ? Date.parse(to) : nowMs) - Date.parse(from);
}

/** A local date and time, to the second. */
export function when(iso: string | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `3m ago`. */
export function ago(iso: string | undefined, nowMs = Date.now()): string {
  const ms = between(iso, undefined, nowMs);
  return ms === undefined ? '—' : `${duration(Math.max(ms, 0))} ago`;
}

/** The words each status is shown with. */
export const STATUS_LABEL: Record<BuildStatus, string> = {
  SCHEDULED: 'Scheduled',
  STARTED: 'Started',
  SUCCESS: 'Success',
  FAILURE: 'Failure',
  INFRA_FAILURE: 'Infra failure',
  CANCELED: 'Canceled',
};

/** Why a build ended as it did, from its status details. */
export function statusReason(b: {
  status: BuildStatus;
  statusDetails: { timeout?: boolean; resourceExhaustion?: boolean; leaseExpired?: boolean };
  canceledBy?: string;
}): string | undefined {
  const d = b.statusDetails;
  if (d.leaseExpired) return 'the lease expired more often than the builder allows';
  if (d.timeout && d.resourceExhaustion) return 'scheduling timeout: no runner took it in time';
  if (d.timeout) return 'execution timeout';
  if (d.resourceExhaustion) return 'no resource could take it';
  if (b.status === 'CANCELED' && b.canceledBy) return `canceled by ${b.canceledBy}`;
  return undefined;
}

/** `project/bucket/builder`. */
export function builderPath(b: { project: string; bucket: string; builder: string }): string {
  return `${b.project}/${b.bucket}/${b.builder}`;
}

/** The values of every tag with `key`. */
export function tagValues(tags: readonly string[], key: string): string[] {
  return tags.filter((t) => t.startsWith(`${key}:`)).map((t) => t.slice(key.length + 1));
}

/** `patch/gerrit/<host>/<change>/<patchset>` → its parts. */
export function gerritPatchOf(
  buildset: string | undefined,
): { host: string; change: number; patchset: number } | undefined {
  const m = buildset ? /^patch\/gerrit\/([^/]+)\/(\d+)\/(\d+)$/.exec(buildset) : null;
  return m ? { host: m[1]!, change: Number(m[2]), patchset: Number(m[3]) } : undefined;
}
