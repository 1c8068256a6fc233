/**
 * Tinderboxes (the Buildbot Gerrit Plugin's build machines) in one call each: `getTask` = peek +
 * lease + start, `report` = succeed or fail with an optional log. A tinderbox names its platform
 * (a builder name, or the `platform:<X>` dimension of builders) and its capabilities (each maps
 * to the required dimension `cap:<capability>`); a build is handed only to a tinderbox that
 * covers all of its dimensions. The lease key returned is the tinderbox's capability for report.
 */
import { type Build } from '../domain/build.ts';
import { buildsetOf } from '../domain/tags.ts';
import { KilnError } from '../domain/errors.ts';
import { type LogStore } from '../logs/logStore.ts';
import { type BuildService } from './service.ts';

/** What a tinderbox asks for. */
export interface GetTaskRequest {
  platform: string;
  tinderboxId: string;
  capabilities: string[];
  /** Only builds in these `project/bucket`s (what the caller may lease). */
  buckets: string[];
  /** Only builds this accepts (e.g. a Gerrit project and branches). */
  filter?: (b: Build) => boolean;
  /** The lease's request id for a build (a retried lease with it gets the same key back). */
  requestId?: (b: Build) => string;
  /** Only look: the best task, not leased (the plugin's `get --test`). */
  peekOnly?: boolean;
}

/** What a tinderbox gets: what to build and the lease key to report with. */
export interface TinderboxTask {
  buildId: string;
  leaseKey: string;
  leaseExpiration: string;
  builder: Build['builder'];
  number: number;
  buildset?: string;
  /** The Gerrit change under test, for verification builds. */
  gerrit?: {
    host: string;
    project: string;
    change: number;
    patchset: number;
    ref?: string;
    revision?: string;
    url?: string;
    branch?: string;
  };
  properties: Record<string, unknown>;
}

/** The required dimension a capability maps to. */
export function capabilityDimension(capability: string): string {
  return `cap:${capability}`;
}

const PEEK_LIMIT = 20;

/** A build as a tinderbox task (what to build; the lease key and expiry when leased). */
export function toTask(build: Build, leaseKey: string, leaseExpiration: string): TinderboxTask {
  const p = build.input.properties;
  const change = build.input.gerritChanges?.[0];
  const str = (k: string): string | undefined => (typeof p[k] === 'string' ? p[k] : undefined);
  return {
    buildId: build.id,
    leaseKey,
    leaseExpiration,
    builder: build.builder,
    number: build.number,
    buildset: buildsetOf(build.tags),
    ...(change
      ? {
          gerrit: {
            ...change,
            ref: str('event.patchSet.ref'),
            // The patch set's commit; CQ builds say `revision: HEAD` instead, which names no commit.
            revision: /^[0-9a-f]{7,64}$/i.test(str('revision') ?? '') ? str('revision') : undefined,
            url: str('event.change.url'),
            branch: str('event.change.branch'),
          },
        }
      : {}),
    properties: p,
  };
}

export async function getTask(service: BuildService, req: GetTaskRequest): Promise<TinderboxTask | undefined> {
  if (req.buckets.length === 0) return undefined;
  const platformDim = `platform:${req.platform}`;
  const dimensions = [platformDim, ...req.capabilities.map(capabilityDimension)];
  const [byName, byDim] = await Promise.all([
    service.peek({ buckets: req.buckets, builders: [req.platform], dimensions, limit: PEEK_LIMIT }),
    service.peek({ buckets: req.buckets, dimensions, limit: PEEK_LIMIT }),
  ]);
  const seen = new Set<string>();
  const candidates = [...byName, ...byDim.filter((b) => b.dimensions.includes(platformDim))]
    .filter((b) => !seen.has(b.id) && seen.add(b.id))
    .filter((b) => req.filter?.(b) ?? true)
    // Best priority first, then oldest (IDs decrease with time).
    .sort((a, b) => a.priority - b.priority || (BigInt(b.id) > BigInt(a.id) ? 1 : -1));
  if (req.peekOnly) return candidates[0] ? toTask(candidates[0], '', '') : undefined;
  for (const c of candidates) {
    let grant;
    try {
      grant = await service.lease(c.id, { holder: req.tinderboxId, requestId: req.requestId?.(c) });
    } catch (e) {
      // Someone else got it first (storage lags the workflow a little): try the next one.
      if (e instanceof KilnError && ['BUILD_IS_LEASED', 'BUILD_IS_COMPLETED', 'BUILD_NOT_FOUND'].includes(e.code))
        continue;
      throw e;
    }
    const started = await service.start(c.id, { leaseKey: grant.leaseKey });
    return toTask(started, grant.leaseKey, grant.leaseExpiration);
  }
  return undefined;
}

/** A tinderbox's report. */
export interface ReportRequest {
  buildId: string;
  leaseKey: string;
  outcome: 'SUCCESS' | 'FAILURE';
  /** The whole log, stored as the build's log when the API has a log store. */
  log?: string;
  url?: string;
  summary?: string;
}

/**
 * Ends the build with the tinderbox's outcome. A report from a lease that expired (the task was
 * rescheduled) is refused with LEASE_EXPIRED and noted in the build's history, not applied.
 */
export async function report(service: BuildService, logs: LogStore | undefined, req: ReportRequest): Promise<Build> {
  if (req.log !== undefined && logs !== undefined) {
    // Checks the key first: a stale tinderbox cannot write the log either.
    let attempt: number | undefined;
    try {
      attempt = await service.checkLogWriter(req.buildId, req.leaseKey);
    } catch (e) {
      if (!(e instanceof KilnError && (e.code === 'LEASE_EXPIRED' || e.code === 'BUILD_IS_COMPLETED'))) throw e;
      // Fall through: succeed/fail gives the same answer and notes the late report.
    }
    // The whole log at offset 0: a retried report skips the bytes already there.
    if (attempt !== undefined)
      await logs.append({ buildId: req.buildId, attempt }, 0, Buffer.from(req.log, 'utf8'), true);
  }
  const body = { leaseKey: req.leaseKey, url: req.url, summaryMarkdown: req.summary };
  return req.outcome === 'SUCCESS'
    ? service.succeed(req.buildId, body)
    : service.fail(req.buildId, { ...body, failureReason: 'BUILD_FAILURE' });
}
