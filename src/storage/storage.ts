/**
 * The storage interface: Kiln's searchable read model of builds and its counters. Written by
 * activities on each build transition (and by the API for schedule reservations and build logs),
 * read by the API.
 * Two backends implement it with the same SQL: embedded PGlite (default, one process) and
 * PostgreSQL (many processes and hosts).
 */
import { type Build, type BuilderId, type BuildLeaseKeys, type BuildStatus } from '../domain/build.ts';
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
  getBuild(id: string): Promise<Build | undefined>;
  /** For each item: the stored build and whether its workflow answers to the key (one read for all). */
  checkLeaseKeys(items: { buildId: string; leaseKey: string }[]): Promise<LeaseKeyCheck[]>;
  searchBuilds(q: BuildQuery): Promise<BuildPage>;
  peekBuilds(q: PeekQuery): Promise<Build[]>;
  /** Inserts or updates a change verification; versions as in `recordBuild` (older ignored, equal and different wins). */
  recordVerification(v: StoredVerification): Promise<void>;
  getVerification(id: string): Promise<StoredVerification | undefined>;
  /** Verifications of a change (newest patch set first), optionally of one patch set. */
  findVerifications(q: VerificationQuery): Promise<StoredVerification[]>;
  /** Which backend this is, for logs and benchmarks. */
  readonly kind: 'embedded' | 'postgres';
  /** Build logs kept in this database; what several API processes share (see `SqlLogStore`). */
  readonly logs: LogStore;
  close(): Promise<void>;
}
