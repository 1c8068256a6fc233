/**
 * GET /api/v1/stuck[?scheduledFor=600][&leaseWithin=60][&heartbeatOlder=60] — the stuck builds as
 * `kiln stuck` finds them (one Temporal visibility query per category, never one call per build), with
 * each category's list filter and the change verifications waiting on them; only builds of readable
 * buckets. Answers are shared for a few seconds, so many open pipeline pages cost Temporal nothing more.
 */
import { z } from 'zod';
import { KilnError } from '../../domain/errors.ts';
import { DEFAULT_STUCK_THRESHOLDS, STUCK_CATEGORIES, type StuckThresholds } from '../../stuck/filters.ts';
import { findStuck, type StuckReport } from '../../stuck/find.ts';
import { readableBuckets } from '../auth.ts';
import { type Route } from '../context.ts';
import { lastOf } from '../schemas.ts';
import { parseInput } from '../validate.ts';

const secs = lastOf(
  z.coerce
    .number()
    .int()
    .min(0)
    .max(7 * 24 * 3600),
);

export const getStuckQuery = z
  .object({ scheduledFor: secs.optional(), leaseWithin: secs.optional(), heartbeatOlder: secs.optional() })
  .strict();

const stuckBuild = z.object({
  buildId: z.string(),
  workflowId: z.string(),
  builder: z.string(),
  status: z.string().optional(),
  scheduledAt: z.string(),
  leaseHolder: z.string().optional(),
  leaseExpiresAt: z.string().optional(),
  lastHeartbeatAt: z.string().optional(),
  buildset: z.string().optional(),
});

export const stuckResponse = z.object({
  at: z.string(),
  thresholds: z.object({
    scheduledForSecs: z.number(),
    leaseExpiresWithinSecs: z.number(),
    heartbeatOlderThanSecs: z.number(),
  }),
  categories: z.array(
    z.object({ category: z.enum(STUCK_CATEGORIES), filter: z.string(), builds: z.array(stuckBuild) }),
  ),
  verifications: z.object({
    filter: z.string().optional(),
    runs: z.array(z.object({ workflowId: z.string(), waitsOn: z.array(z.string()) })),
  }),
});
export type StuckResponse = z.infer<typeof stuckResponse>;

/** How long one visibility answer serves every caller with the same thresholds. */
const SHARE_MS = 5000;

export const getStuck: Route = (app, ctx) => {
  const cache = new Map<string, { at: number; report: Promise<StuckReport> }>();
  app.get('/api/v1/stuck', async (req): Promise<StuckResponse> => {
    const q = parseInput(getStuckQuery, req.query, 'query');
    const readable = new Set(readableBuckets(ctx.registry, req));
    if (!ctx.client) throw new KilnError('UNAVAILABLE', 'this API has no Temporal client for stuck-build queries');
    const thresholds: StuckThresholds = {
      scheduledForSecs: q.scheduledFor ?? DEFAULT_STUCK_THRESHOLDS.scheduledForSecs,
      leaseExpiresWithinSecs: q.leaseWithin ?? DEFAULT_STUCK_THRESHOLDS.leaseExpiresWithinSecs,
      heartbeatOlderThanSecs: q.heartbeatOlder ?? DEFAULT_STUCK_THRESHOLDS.heartbeatOlderThanSecs,
    };
    const key = JSON.stringify(thresholds);
    const now = Date.now();
    for (const [k, v] of cache) if (now - v.at > SHARE_MS) cache.delete(k);
    let hit = cache.get(key);
    if (!hit) {
      hit = { at: now, report: findStuck(ctx.client, thresholds, { limit: 100 }) };
      hit.report.catch(() => cache.delete(key));
      cache.set(key, hit);
    }
    let report: StuckReport;
    try {
      report = await hit.report;
    } catch (e) {
      throw new KilnError('UNAVAILABLE', 'Temporal visibility did not answer; retry', { cause: e });
    }
    const visible = (builder: string) => readable.has(builder.split('/').slice(0, 2).join('/'));
    const categories = report.categories.map((c) => ({ ...c, builds: c.builds.filter((b) => visible(b.builder)) }));
    const shownIds = new Set(categories.flatMap((c) => c.builds.map((b) => b.buildId)));
    const runs = report.verifications.runs
      .map((r) => ({ ...r, waitsOn: r.waitsOn.filter((id) => shownIds.has(id)) }))
      .filter((r) => r.waitsOn.length > 0);
    return {
      at: report.at,
      thresholds,
      categories,
      verifications: { ...(runs.length > 0 ? { filter: report.verifications.filter } : {}), runs },
    };
  });
};
