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

/** The storage every Kiln process uses. */
export interface Storage {
  /** Claims the request key (if any) and allocates the builder's next build number, atomically. */
  reserveBuild(req: ReserveBuildRequest): Promise<BuildReservation>;
  /** Inserts or updates a build; a write whose `version` is not newer than the stored one is ignored. */
  recordBuild(build: Build): Promise<void>;
  getBuild(id: string): Promise<Build | undefined>;
  searchBuilds(q: BuildQuery): Promise<BuildPage>;
  peekBuilds(q: PeekQuery): Promise<Build[]>;
  /** Inserts or updates a change verification; a write whose `version` is not newer is ignored. */
  recordVerification(v: StoredVerification): Promise<void>;
  getVerification(id: string): Promise<StoredVerification | undefined>;
  /** Verifications of a change (newest patch set first), optionally of one patch set. */
  findVerifications(q: VerificationQuery): Promise<StoredVerification[]>;
  /** Which backend this is, for logs and benchmarks. */
  readonly kind: 'embedded' | 'postgres';
  /** Build logs kept in this database; what several API processes share (see `SqlLogStore`). */
  readonly logs: LogStore;
  /** The database itself, for stores of other features that keep their own tables in it (promotions, notifications). */
  readonly sql: SqlClient;
  close(): Promise<void>;
}
