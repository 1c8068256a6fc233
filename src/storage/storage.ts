/**
 * The storage interface: Kiln's searchable read model of builds and its counters. Written by
 * activities on each build transition (and by the API for schedule reservations and build logs),
 * read by the API.
 * Two backends implement it with the same SQL: embedded PGlite (default, one process) and
 * PostgreSQL (many processes and hosts).
 */
import { type Build, type BuilderId, type BuildStatus } from '../domain/build.ts';
import { type StoredVerification } from '../domain/verification.ts';
import { type LogStore } from '../logs/logStore.ts';

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

/** What a runner peeks for: SCHEDULED unleased builds it can run, best priority first, then oldest. */
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

/** The storage every Kiln process uses. */
export interface Storage {
  /** Claims the request key (if any) and allocates the builder's next build number, atomically. */
  reserveBuild(req: ReserveBuildRequest): Promise<BuildReservation>;
  /** Inserts or updates a build; a write whose `version` is not newer than the stored one is ignored. */
  recordBuild(build: Build): Promise<void>;
  getBuild(id: string): Promise<Build | undefined>;
  /** The build of `builder` with this per-builder number (Buildbucket v2 GetBuild by builder and number). */
  getBuildByNumber(builder: BuilderId, number: number): Promise<Build | undefined>;
  searchBuilds(q: BuildQuery): Promise<BuildPage>;
  peekBuilds(q: PeekQuery): Promise<Build[]>;
  /** Inserts or updates a change verification; a write whose `version` is not newer is ignored. */
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
  close(): Promise<void>;
}
