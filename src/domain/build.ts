/**
 * The build model shared by workflows, activities, storage and the API. Pure: no Node built-ins,
 * no I/O, so workflow code may import it.
 */

/** Build statuses, as in Buildbucket v2. */
export const BUILD_STATUSES = ['SCHEDULED', 'STARTED', 'SUCCESS', 'FAILURE', 'INFRA_FAILURE', 'CANCELED'] as const;
export type BuildStatus = (typeof BUILD_STATUSES)[number];

/** The statuses a build never leaves. */
export const ENDED_STATUSES: readonly BuildStatus[] = ['SUCCESS', 'FAILURE', 'INFRA_FAILURE', 'CANCELED'];

/** True when the build has ended and no message can change it any more. */
export function isEnded(status: BuildStatus): boolean {
  return ENDED_STATUSES.includes(status);
}

/** Why a build ended the way it did, beyond its status. */
export interface StatusDetails {
  /** A scheduling or execution timeout fired. */
  timeout?: boolean;
  /** No resource could take the build (scheduling timeout, Swarming EXPIRED/NO_RESOURCE). */
  resourceExhaustion?: boolean;
  /** The lease expired more often than the builder's `maxLeaseResets` allows. */
  leaseExpired?: boolean;
}

/** `project/bucket/builder`. */
export interface BuilderId {
  project: string;
  bucket: string;
  builder: string;
}

/** Formats a builder id as `project/bucket/builder`. */
export function builderPath(b: BuilderId): string {
  return `${b.project}/${b.bucket}/${b.builder}`;
}

/** Formats a bucket as `project/bucket`. */
export function bucketPath(b: Pick<BuilderId, 'project' | 'bucket'>): string {
  return `${b.project}/${b.bucket}`;
}

/** What a build was asked to do; fixed at schedule time. */
export interface BuildInput {
  properties: Record<string, unknown>;
  /** Gerrit changes under test, for CQ builds. */
  gerritChanges?: { host: string; project: string; change: number; patchset: number }[];
  /** The commit under test, for builds a git poller scheduled (Buildbucket's `gitilesCommit`). */
  gitilesCommit?: { host: string; project: string; ref: string; id: string };
}

/** How a build left the builder's runner: properties it produced and a summary. */
export interface BuildOutput {
  properties?: Record<string, unknown>;
  summaryMarkdown?: string;
}

/** Lease-mode knobs resolved from builder config and fixed for the life of one build. */
export interface BuildTimeouts {
  /** Not started this long after entering SCHEDULED → INFRA_FAILURE {timeout, resourceExhaustion}. */
  schedulingTimeoutMs: number;
  /** STARTED this long → INFRA_FAILURE {timeout}. */
  executionTimeoutMs: number;
  /** Lease duration when the runner asks for none. */
  defaultLeaseMs: number;
  /** Longest lease a runner may ask for. */
  maxLeaseMs: number;
  /** How many times an expired lease returns the build to SCHEDULED before it ends INFRA_FAILURE. */
  maxLeaseResets: number;
}

/** One note in a build's own history: refused late reports, lease resets, cancel reasons. */
export interface BuildEvent {
  time: string;
  kind:
    | 'LEASED'
    | 'STARTED'
    | 'LEASE_EXPIRED'
    | 'STALE_REPORT_REFUSED'
    | 'CANCEL_REQUESTED'
    | 'ENDED'
    | 'PRIORITY_CHANGED'
    | 'SWARMING_TASK';
  message: string;
}

/** A build as the API returns it and storage keeps it. */
export interface Build {
  id: string;
  builder: BuilderId;
  number: number;
  status: BuildStatus;
  statusDetails: StatusDetails;
  /** `key:value` strings; keys may repeat. */
  tags: string[];
  input: BuildInput;
  output?: BuildOutput;
  priority: number;
  /** Dimensions a runner must cover to lease this build (`key:value`). */
  dimensions: string[];
  createTime: string;
  startTime?: string;
  endTime?: string;
  /** Last time anything about the build changed. */
  updateTime: string;
  summaryMarkdown?: string;
  /** Runner-supplied link to the build's page or log. */
  url?: string;
  canceledBy?: string;
  createdBy?: string;
  /** Who holds the lease now (runner name), when leased. */
  leaseHolder?: string;
  /** When the current lease ends, when leased. */
  leaseExpiration?: string;
  /** Current lease generation: bumped on every lease and every lease reset. */
  leaseGeneration: number;
  leaseResets: number;
  /** Build-local notes; bounded (oldest dropped). */
  events: BuildEvent[];
  /** Monotonic version: storage applies a write only when it is newer. */
  version: number;
}

/** Most notes a build keeps in `events`. */
export const MAX_BUILD_EVENTS = 50;

/**
 * Records a change to `b` (a build a workflow owns): bumps its version, so the workflow knows to
 * store it, and its update time. Returns the new version. Pure: the caller passes the time.
 */
export function touchBuild(b: Build, nowMs: number): number {
  b.version += 1;
  b.updateTime = new Date(nowMs).toISOString();
  return b.version;
}

/** Adds an event to `b`'s history, keeping the newest `MAX_BUILD_EVENTS`. Pure: the caller passes the time. */
export function noteBuildEvent(b: Build, kind: BuildEvent['kind'], message: string, nowMs: number): void {
  b.events.push({ time: new Date(nowMs).toISOString(), kind, message });
  if (b.events.length > MAX_BUILD_EVENTS) b.events.splice(0, b.events.length - MAX_BUILD_EVENTS);
}
