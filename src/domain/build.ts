/**
 * The build model shared by workflows, activities, storage and the API. Pure: no Node built-ins,
 * no I/O, so workflow code may import it.
 */
import { type FailureType } from './errors.ts';
import type { BuildChange } from './buildInputs.ts';
import type { BuildStep } from './steps.ts';

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
  /** The changes the build is for, as the schedule request gave them (Buildbot-buildbucket's `changes`). */
  changes?: BuildChange[];
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
    | 'SWARMING_TASK'
    | 'STORAGE_REFUSED';
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
  /** Steps the lease holder reported (Buildbucket v2 `steps`); merged in on reads, never kept by the workflow. */
  steps?: BuildStep[];
  /** Build-local notes; bounded (oldest dropped). */
  events: BuildEvent[];
  /** Monotonic version: storage applies a write only when it is newer. */
  version: number;
}

/** What a new build is made of; everything else starts the same for every build. */
export type NewBuild = Pick<
  Build,
  'id' | 'builder' | 'number' | 'tags' | 'input' | 'priority' | 'dimensions' | 'createTime'
> &
  Partial<Pick<Build, 'createdBy'>>;

/** A build just scheduled: SCHEDULED, version 1, no lease yet, updated when created. */
export function scheduledBuildOf(n: NewBuild): Build {
  return {
    id: n.id,
    builder: n.builder,
    number: n.number,
    status: 'SCHEDULED',
    statusDetails: {},
    tags: n.tags,
    input: n.input,
    priority: n.priority,
    dimensions: n.dimensions,
    createTime: n.createTime,
    updateTime: n.createTime,
    createdBy: n.createdBy,
    leaseGeneration: 0,
    leaseResets: 0,
    events: [],
    version: 1,
  };
}

/** Most notes a build keeps in `events`. */
export const MAX_BUILD_EVENTS = 50;

/**
 * Records a change to `b` (a build a workflow owns): bumps its version, so the workflow knows to
 * store it, and its update time. Returns the new version. Pure: the caller passes the time.
 *
 * With `clockVersions` the version also moves up to the workflow task's clock in microseconds
 * (`nextBuildVersion`), so a version can never repeat after a lost workflow task.
 */
export function touchBuild(b: Build, nowMs: number, clockVersions = false): number {
  b.version = clockVersions ? nextBuildVersion(b.version, nowMs) : b.version + 1;
  b.updateTime = new Date(nowMs).toISOString();
  return b.version;
}

/**
 * The version after `version` for a change made by a workflow task whose clock reads `nowMs`:
 * `max(version + 1, nowMs × 1000)`.
 *
 * Why: storage is written by a local activity, before its workflow task is durable. When the
 * Temporal server loses that task, storage keeps a write the workflow never made, and the workflow
 * redoes the task later from its last durable state. Counting versions up by one would give the
 * redone write the lost write's version, and storage would keep the lost one. A redone task runs on
 * a later clock, so its versions are higher than anything the lost task wrote (up to 1000 changes
 * per millisecond keep that true). Workflow time is deterministic, so replays compute the same
 * versions.
 */
export function nextBuildVersion(version: number, nowMs: number): number {
  return Math.max(version + 1, Math.floor(nowMs) * 1000);
}

/** Adds an event to `b`'s history, keeping the newest `MAX_BUILD_EVENTS`. Pure: the caller passes the time. */
export function noteBuildEvent(b: Build, kind: BuildEvent['kind'], message: string, nowMs: number): void {
  b.events.push({ time: new Date(nowMs).toISOString(), kind, message });
  if (b.events.length > MAX_BUILD_EVENTS) b.events.splice(0, b.events.length - MAX_BUILD_EVENTS);
}

/** Deepest nesting of JSON values (properties, outputs) Kiln accepts and stores. */
export const MAX_JSON_DEPTH = 32;

/** NUL, and UTF-16 surrogates without their other half: text PostgreSQL (and PGlite) cannot hold. */
// eslint-disable-next-line no-control-regex -- NUL is exactly what this looks for
const UNSTORABLE_CHAR = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const UNSTORABLE_CHARS = new RegExp(UNSTORABLE_CHAR.source, 'g');

/** Why storage can never hold `s` (a NUL or a lone surrogate, and where), or undefined when it can. */
export function unstorableText(s: string): string | undefined {
  const m = UNSTORABLE_CHAR.exec(s);
  if (!m) return undefined;
  const what = m[0] === '\u0000' ? 'a NUL character' : 'an unpaired UTF-16 surrogate';
  return `contains ${what} at index ${m.index} (storage cannot hold it)`;
}

/** `s` with every character storage cannot hold replaced by U+FFFD. */
export function storableText(s: string): string {
  return s.replace(UNSTORABLE_CHARS, '\uFFFD');
}

/** A JSON-like value with unstorable text replaced and nesting past `MAX_JSON_DEPTH` cut. */
function storableValue(v: unknown, depth: number): unknown {
  if (typeof v === 'string') return storableText(v);
  if (v === null || typeof v !== 'object') return v;
  if (depth >= MAX_JSON_DEPTH) return '(nested too deep to store)';
  if (Array.isArray(v)) return v.map((x) => storableValue(x, depth + 1));
  return Object.fromEntries(
    Object.entries(v as Record<string, unknown>).map(([k, x]) => [storableText(k), storableValue(x, depth + 1)]),
  );
}

/**
 * Called when storage refused to write `b` for good (`reason`: what it said): makes the build
 * storable and failed, so it ends visibly instead of retrying a write forever. The first refusal
 * replaces unstorable text (U+FFFD) and cuts deep nesting; a second one also drops the build's
 * free-form content (properties, output, tags but the builder's, notes). A build that had ended
 * anyway becomes INFRA_FAILURE too (storage never showed its first ending). Returns the summary
 * the caller ends the build with, or undefined after three refusals (then the caller gives up).
 * Pure: the caller passes the time, and bumps the version.
 */
export function refuseUnstorableBuild(b: Build, reason: string, nowMs: number): string | undefined {
  const refusals = b.events.filter((e) => e.kind === 'STORAGE_REFUSED').length + 1;
  if (refusals > 3) return undefined;
  const clean = storableValue(b, 0) as Build;
  Object.assign(b, clean);
  if (refusals > 1) {
    b.input = { properties: {} };
    b.output = undefined;
    b.tags = b.tags.filter((t) => t.startsWith('builder:'));
    b.dimensions = [];
    b.events = b.events.filter((e) => e.kind === 'STORAGE_REFUSED' || e.kind === 'ENDED');
    b.url = undefined;
  }
  const summary =
    `Kiln could not store this build (${storableText(reason).slice(0, 500)}), so it failed it: ` +
    (refusals > 1
      ? 'its properties, output and tags were dropped.'
      : 'text storage cannot hold was replaced by U+FFFD.');
  noteBuildEvent(b, 'STORAGE_REFUSED', summary, nowMs);
  if (isEnded(b.status)) {
    b.status = 'INFRA_FAILURE';
    b.statusDetails = {};
    b.summaryMarkdown = summary;
  }
  return summary;
}

/** `ApplicationFailure.type` of a storage write that can never succeed as it is (not retried). */
export const UNSTORABLE_BUILD_FAILURE = 'UNSTORABLE_BUILD' satisfies FailureType;

/**
 * The lease keys a build's workflow still answers to, written with each storage write (storage
 * keeps only their hashes). The API refuses any other key without asking the workflow, and gives a
 * retried report the ended build only with the key that ended it.
 */
export interface BuildLeaseKeys {
  /** Every key the workflow would do anything for: current, past (to note late reports), at end. */
  known: string[];
  /** The key whose succeed/fail ended the build. */
  endedBy?: string;
}
