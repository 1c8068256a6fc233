/**
 * Finds stuck builds through Temporal visibility, one list filter per category (see filters.ts),
 * and the change verifications waiting on them.
 */
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import {
  KilnBuilder,
  KilnBuildId,
  KilnBucket,
  KilnBuildset,
  KilnLastHeartbeatAt,
  KilnLeaseExpiresAt,
  KilnLeaseHolder,
  KilnProject,
  KilnStatus,
} from '../domain/searchAttributes.ts';
import {
  STUCK_CATEGORIES,
  type StuckCategory,
  stuckFilters,
  type StuckThresholds,
  verificationFilter,
  verificationIdOf,
} from './filters.ts';

/** One stuck build as visibility shows it. */
export interface StuckBuild {
  buildId: string;
  workflowId: string;
  builder: string;
  status?: string;
  scheduledAt: string;
  leaseHolder?: string;
  leaseExpiresAt?: string;
  lastHeartbeatAt?: string;
  buildset?: string;
}

/** A verification run that waits on stuck builds. */
export interface WaitingVerification {
  workflowId: string;
  waitsOn: string[];
}

/** What `findStuck` answers. */
export interface StuckReport {
  at: string;
  categories: { category: StuckCategory; filter: string; builds: StuckBuild[] }[];
  verifications: { filter?: string; runs: WaitingVerification[] };
}

/** Lists each category's workflows (up to `limit` each) and the verification runs waiting on them. */
export async function findStuck(
  client: Client,
  thresholds: StuckThresholds,
  opts: { nowMs?: number; limit?: number } = {},
): Promise<StuckReport> {
  const now = opts.nowMs ?? Date.now();
  const filters = stuckFilters(now, thresholds);
  const limit = opts.limit ?? 100;
  const categories: StuckReport['categories'] = [];
  for (const category of STUCK_CATEGORIES) {
    const builds: StuckBuild[] = [];
    for await (const w of client.workflow.list({ query: filters[category], pageSize: limit })) {
      const sa = w.typedSearchAttributes;
      const iso = (d: Date | undefined) => (d ? d.toISOString() : undefined);
      builds.push({
        buildId: sa.get(KilnBuildId) ?? w.workflowId.replace(/^build\//, ''),
        workflowId: w.workflowId,
        builder: `${sa.get(KilnProject) ?? '?'}/${sa.get(KilnBucket) ?? '?'}/${sa.get(KilnBuilder) ?? '?'}`,
        status: sa.get(KilnStatus),
        scheduledAt: w.startTime.toISOString(),
        leaseHolder: sa.get(KilnLeaseHolder),
        leaseExpiresAt: iso(sa.get(KilnLeaseExpiresAt)),
        lastHeartbeatAt: iso(sa.get(KilnLastHeartbeatAt)),
        buildset: sa.get(KilnBuildset),
      });
      if (builds.length >= limit) break;
    }
    categories.push({ category, filter: filters[category], builds });
  }
  // Verifications: by ID convention from each stuck build's buildset; only running ones count.
  const waits = new Map<string, Set<string>>();
  for (const c of categories) {
    for (const b of c.builds) {
      const v = verificationIdOf(b.buildset);
      if (v) waits.set(v, (waits.get(v) ?? new Set()).add(b.buildId));
    }
  }
  const runs: WaitingVerification[] = [];
  for (const [workflowId, builds] of waits) {
    try {
      const d = await client.workflow.getHandle(workflowId).describe();
      if (d.status.name === 'RUNNING') runs.push({ workflowId, waitsOn: [...builds] });
    } catch (e) {
      if (!(e instanceof WorkflowNotFoundError)) throw e;
    }
  }
  return {
    at: new Date(now).toISOString(),
    categories,
    verifications: { filter: runs.length ? verificationFilter(runs.map((r) => r.workflowId)) : undefined, runs },
  };
}
