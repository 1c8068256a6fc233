/**
 * The storage interface: Kiln's searchable read model of builds and its counters. Written by
 * activities on each build transition (and by the API for schedule reservations and build logs),
 * read by the API.
 * Two backends implement it with the same SQL: embedded PGlite (default, one process) and
 * PostgreSQL (many processes and hosts).
 */
import { type Build, type BuilderId, type BuildLeaseKeys, type BuildStatus } from '../domain/build.ts';
import { type BuildStep, type StoredBuildProgress } from '../domain/steps.ts';
import { type StoredVerification } from '../domain/verification.ts';
import { type LogStore } from '../logs/logStore.ts';
import { type SqlClient } from './sqlClient.ts';

/** What `reserveBuild` needs: the build ID the API generated and the builder that gets a number. */
export interface ReserveBuildRequest {
  buildId: string;
  builder: BuilderId;
  /**
   * Idempotency key of the schedule request, already scoped by the caller (e.g. per bucket).
   * The same key always returns the first build reserved with it.
   */
  requestKey?: string;
}

/** A build ID with its per-builder number; `created` is false when `requestKey` was seen before. */
export interface BuildReservation {
  buildId: string;
  number: number;
  created: boolean;
}

/** Search filters; all given filters must match. */
export interface BuildQuery {
  /** Only builds in these `project/bucket`s, when given (the API passes what the caller may read). */
  buckets?: string[];
  builder?: Partial<BuilderId>;
  status?: BuildStatus;
  /** Every tag must be on the build. */
  tags?: string[];
  buildset?: string;
  createdAfter?: string;
  createdBefore?: string;
  /** Only builds scheduled by this caller (the token's name, `anonymous` without auth). */
  createdBy?: string;
  /** @default 100 */
  limit?: number;
  /** From a previous page's `nextCursor`. */
  cursor?: string;
}

/** One page of a search, newest first. */
export interface BuildPage {
  builds: Build[];
  nextCursor?: string;
}

/**
 * What a runner peeks for: SCHEDULED builds it can run, best priority first, then oldest. A build
 * whose stored lease has expired counts as unleased: storage may show a lease the workflow never
 * granted (its workflow task was lost), and the workflow decides at lease time anyway.
 */
export interface PeekQuery {
  /** `project/bucket` strings. */
  buckets: string[];
  /** The runner's dimensions (`key:value`); a build is returned only when they cover all of its own. */
  dimensions?: string[];
  /** Only these builder names, when given. */
  builders?: string[];
  /** @default 10 */
  limit?: number;
}

/** What a build was before a write replaced it: what the build metrics compare (`Storage.recordBuildReplacing`). */
export type ReplacedBuild = Pick<Build, 'version' | 'status' | 'leaseResets' | 'events'>;

/** The answer of `Storage.recordBuildReplacing`. */
export type RecordedBuildWrite = { written: false } | { written: true; previous?: ReplacedBuild };

/** What storage knows about a lease key a caller presented for a build (see `Storage.checkLeaseKeys`). */
export interface LeaseKeyCheck {
  /** The stored build; undefined when storage has not seen it. */
  build?: Build;
  /** Whether the build's workflow answers to this key; undefined when storage holds no key hashes for the build. */
  known?: boolean;
  /** True when this key's succeed/fail ended the build. */
  endedBy: boolean;
}

/** What `findVerifications` filters on. */
export interface VerificationQuery {
  host?: string;
  change: number;
  patchset?: number;
  /** @default 100 */
  limit?: number;
}

// --- Read model of the web UI (issue 14): summaries, grids, statistics and a change feed. ---

/** A build without its bulky parts (input, output, events), for lists, grids and live updates. */
export type BuildSummary = Omit<Build, 'input' | 'output' | 'events'>;

/** One builder's queue and latest results. */
export interface BuilderSummary {
  builder: BuilderId;
  /** SCHEDULED builds (leased ones included: a runner took them but has not started them). */
  pending: number;
  /** STARTED builds. */
  running: number;
  /** Creation time of the oldest SCHEDULED build. */
  oldestPendingTime?: string;
  lastBuild?: BuildSummary;
  /** The newest SUCCESS. */
  lastGreen?: BuildSummary;
  /** The first pending builds in the order runners get them (best priority first, then oldest). */
  queue: BuildSummary[];
}

/** A builder's newest builds, newest first. */
export interface BuilderRecentBuilds {
  builder: BuilderId;
  builds: BuildSummary[];
}

/** Counts and percentiles over a set of builds; times in milliseconds, absent when no build had one. */
export interface BuildStatsFigures {
  total: number;
  success: number;
  failure: number;
  infraFailure: number;
  canceled: number;
  /** Not ended yet (SCHEDULED or STARTED). */
  open: number;
  /** Queue time: created → started. */
  queueP50Ms?: number;
  queueP95Ms?: number;
  /** Duration: started → ended. */
  durationP50Ms?: number;
  durationP95Ms?: number;
}

/** What `builderStats` answers: the whole window and each UTC day in it that had builds. */
export interface BuilderStats {
  window: BuildStatsFigures;
  days: (BuildStatsFigures & { day: string })[];
}

/** Rows changed after a cursor, oldest change first, each row once (its newest state). */
export interface ChangeFeedPage {
  /** Pass it back to get the next changes. */
  cursor: string;
  builds: BuildSummary[];
  verifications: StoredVerification[];
}

/** Where a build stands, as `getBuildStates` reads it. */
export interface BuildState {
  id: string;
  /** `project/bucket`, for the caller's permission check. */
  bucket: string;
  status: BuildStatus;
  leaseGeneration: number;
}

/** One row of `openBuildStats`. */
export interface OpenBuildStat {
  builder: BuilderId;
  status: 'SCHEDULED' | 'STARTED';
  count: number;
  /** Create time (ISO) of the oldest such build. */
  oldestCreateTime: string;
}

/** One `recordBuildProgress` write: absent fields are left alone. */
export interface BuildProgressWrite {
  buildId: string;
  attempt: number;
  steps?: BuildStep[];
  outputProperties?: Record<string, unknown>;
}

/** The storage every Kiln process uses. */
export interface Storage {
  /** Claims the request key (if any) and allocates the builder's next build number, atomically. */
  reserveBuild(req: ReserveBuildRequest): Promise<BuildReservation>;
  /**
   * Inserts or updates a build, with the hashes of `leaseKeys` when given. A write whose `version`
   * is older than the stored one is ignored, and so is one of the same version and content; one of
   * the same version and other content wins (the stored one came from a workflow task the Temporal
   * server lost, or the workflow would never have written that version twice).
   */
  recordBuild(build: Build, leaseKeys?: BuildLeaseKeys): Promise<void>;
  /**
   * `recordBuild`, answering in the same statement what the write replaced: `written: false` when
   * storage ignored it, else the stored build's version, status, lease resets and stale-report
   * events before the write (`previous` undefined for a new build). For the build metrics, which
   * count transitions without reading the build first.
   */
  recordBuildReplacing(build: Build, leaseKeys?: BuildLeaseKeys): Promise<RecordedBuildWrite>;
  /**
   * Inserts a build storage has not seen; true when it did, false (nothing written) when storage
   * already holds a build with this id, whatever its version. For `schedule`, whose write must never
   * replace one of the build's workflow.
   */
  insertBuild(build: Build): Promise<boolean>;
  getBuild(id: string): Promise<Build | undefined>;
  /** For each item: the stored build and whether its workflow answers to the key (one read for all). */
  checkLeaseKeys(items: { buildId: string; leaseKey: string }[]): Promise<LeaseKeyCheck[]>;
  /** The build of `builder` with this per-builder number (Buildbucket v2 GetBuild by builder and number). */
  getBuildByNumber(builder: BuilderId, number: number): Promise<Build | undefined>;
  searchBuilds(q: BuildQuery): Promise<BuildPage>;
  peekBuilds(q: PeekQuery): Promise<Build[]>;
  /**
   * What `peekBuilds` would return, in the same order, as IDs with their `project/bucket` only: for
   * callers that lease the first they can and read nothing else (lease-next), it saves reading and
   * parsing every candidate's JSON.
   */
  peekBuildIds(q: PeekQuery): Promise<{ id: string; bucket: string }[]>;
  /** Inserts or updates a change verification; versions as in `recordBuild` (older ignored, equal and different wins). */
  recordVerification(v: StoredVerification): Promise<void>;
  getVerification(id: string): Promise<StoredVerification | undefined>;
  /** Verifications of a change (newest patch set first), optionally of one patch set. */
  findVerifications(q: VerificationQuery): Promise<StoredVerification[]>;
  // --- web UI read model (issue 14) ---
  /** Builds by ID, in no particular order; unknown IDs are left out. */
  getBuilds(ids: string[]): Promise<Build[]>;
  /** Queue and latest results of each builder, in the order given. */
  builderSummaries(builders: BuilderId[], opts?: { queueLimit?: number }): Promise<BuilderSummary[]>;
  /** Each builder's newest `perBuilder` builds, in the order given. */
  recentBuildsByBuilder(builders: BuilderId[], perBuilder: number): Promise<BuilderRecentBuilds[]>;
  /** Counts and queue/duration percentiles of one builder's builds created in [from, to). */
  builderStats(builder: BuilderId, from: string, to: string): Promise<BuilderStats>;
  /** SCHEDULED and STARTED builds of these `project/bucket`s, best priority first, then oldest. */
  openBuilds(buckets: string[], limit: number): Promise<BuildSummary[]>;
  /** Newest verifications first; only those still evaluating or building when `active`. */
  recentVerifications(opts: { active?: boolean; limit?: number }): Promise<StoredVerification[]>;
  /** The cursor of the newest change now (start of a change feed). */
  changeCursor(): Promise<string>;
  /** Builds and verifications written after `cursor`, up to `limit` rows of each. */
  changesSince(cursor: string, limit?: number): Promise<ChangeFeedPage>;
  /** Which backend this is, for logs and benchmarks. */
  readonly kind: 'embedded' | 'postgres';
  /** Build logs kept in this database; what several API processes share (see `SqlLogStore`). */
  readonly logs: LogStore;
  // ---- read by the runner's build watch and by metrics ----
  /** Status and lease generation of each of `ids` that is stored (one query, however many). */
  getBuildStates(ids: string[]): Promise<BuildState[]>;
  /** Per builder and open status (SCHEDULED, STARTED): how many builds and the oldest one's create time. */
  openBuildStats(): Promise<OpenBuildStat[]>;
  /**
   * IDs of SCHEDULED and STARTED builds whose stored lease expired before `before` (an ISO time),
   * the latest expiry first (so builds stale for good, such as ones terminated by hand, do not hide
   * new ones). A working workflow resets an expired lease within a second, so these are builds whose
   * workflow may have stopped (the API's repair looks at them).
   */
  overdueLeases(before: string, limit: number): Promise<string[]>;
  // ---- chromium2: steps and output properties the lease holder reports (Buildbucket v2 UpdateBuild) ----
  /**
   * Replaces, in one write, what is given of a build's reported steps and output properties for lease generation
   * `attempt` (a field not given is kept from the same attempt, dropped from an earlier one). Returns false and
   * writes nothing when a later attempt has already reported.
   */
  recordBuildProgress(w: BuildProgressWrite): Promise<boolean>;
  /** What the lease holder reported for the build, if anything. */
  getBuildProgress(buildId: string): Promise<StoredBuildProgress | undefined>;
  /** The database itself, for stores of other features that keep their own tables in it (promotions, notifications). */
  readonly sql: SqlClient;
  close(): Promise<void>;
}
