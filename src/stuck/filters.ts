/**
 * The Temporal visibility queries ("list filters") that find stuck builds. The same strings work in
 * the Temporal Web UI's workflow list filter box, in `temporal workflow list --query`, and in
 * `client.workflow.list({ query })`; `kiln stuck` prints them and README lists them.
 */

/** What `kiln stuck` looks for. */
export interface StuckThresholds {
  /** Builds SCHEDULED (not started) for longer than this. @default 600 (10 min) */
  scheduledForSecs: number;
  /** Leased builds whose lease expires within this much time (or has expired). @default 60 */
  leaseExpiresWithinSecs: number;
  /** STARTED builds whose last heartbeat is older than this. @default 60 */
  heartbeatOlderThanSecs: number;
}

export const DEFAULT_STUCK_THRESHOLDS: StuckThresholds = {
  scheduledForSecs: 600,
  leaseExpiresWithinSecs: 60,
  heartbeatOlderThanSecs: 60,
};

/** The kinds of stuck build, in the order `kiln stuck` prints them. */
export const STUCK_CATEGORIES = ['scheduled-too-long', 'lease-expiring', 'heartbeat-old'] as const;
export type StuckCategory = (typeof STUCK_CATEGORIES)[number];

/** Human titles for the categories. */
export const CATEGORY_TITLES: Record<StuckCategory, string> = {
  'scheduled-too-long': 'Builds scheduled for too long (no runner took them)',
  'lease-expiring': 'Leased builds whose lease expires soon (or already has)',
  'heartbeat-old': 'Started builds whose last heartbeat is old',
};

/** Visibility wants RFC 3339 timestamps without milliseconds. */
export function visibilityTime(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** The list filter of each category, evaluated at `nowMs`. */
export function stuckFilters(
  nowMs: number,
  t: StuckThresholds = DEFAULT_STUCK_THRESHOLDS,
): Record<StuckCategory, string> {
  const running = `WorkflowType = 'buildWorkflow' AND ExecutionStatus = 'Running'`;
  return {
    'scheduled-too-long': `${running} AND KilnStatus = 'SCHEDULED' AND StartTime < '${visibilityTime(nowMs - t.scheduledForSecs * 1000)}'`,
    'lease-expiring': `${running} AND KilnLeaseExpiresAt < '${visibilityTime(nowMs + t.leaseExpiresWithinSecs * 1000)}'`,
    'heartbeat-old': `${running} AND KilnStatus = 'STARTED' AND KilnLastHeartbeatAt < '${visibilityTime(nowMs - t.heartbeatOlderThanSecs * 1000)}'`,
  };
}

/** The list filter for change verifications with the given workflow IDs. */
export function verificationFilter(workflowIds: readonly string[]): string {
  const ids = workflowIds.map((id) => `'${id.replaceAll("'", "\\'")}'`).join(', ');
  return `ExecutionStatus = 'Running' AND WorkflowId IN (${ids})`;
}

/** The change verification that waits on a build with this buildset, by its workflow ID convention. */
export function verificationIdOf(buildset: string | undefined): string | undefined {
  const m = buildset === undefined ? null : /^patch\/gerrit\/([^/]+)\/(\d+)\/(\d+)$/.exec(buildset);
  return m ? `verify/${m[1]}/${m[2]}/${m[3]}` : undefined;
}

/** A Temporal Web UI link that opens the workflow list with `query` as its filter. */
export function uiListUrl(uiBase: string, namespace: string, query: string): string {
  return `${uiBase.replace(/\/$/, '')}/namespaces/${encodeURIComponent(namespace)}/workflows?query=${encodeURIComponent(query)}`;
}
