/**
 * GET /api/v1/pipeline[?bucket=p/b][&limit=N] — what is pending and running now: per builder the counts
 * and the oldest pending build's creation time, the open builds themselves (best priority first, then
 * oldest; up to `limit`), and the change verifications in flight with their platforms' builds. From
 * storage; the stuck categories come from GET /api/v1/stuck.
 */
import { z } from 'zod';
import { type Build } from '../../domain/build.ts';
import { type BuildSummary } from '../../storage/storage.ts';
import { readableBuckets } from '../auth.ts';
import { type Route } from '../context.ts';
import { lastOf } from '../schemas.ts';
import { buildersOf, bucketsToShow, canReadAll, readModel } from '../uiAccess.ts';
import { bucketParam, builderIdOut, buildSummarySchema, verificationSchema } from '../uiSchemas.ts';
import { parseInput } from '../validate.ts';

export const getPipelineQuery = z
  .object({
    bucket: lastOf(bucketParam).optional(),
    /** Open builds listed. @default 200 */
    limit: lastOf(z.coerce.number().int().min(1).max(1000)).optional(),
  })
  .strict();

export const pipelineResponse = z.object({
  /** Server time, which ages are relative to. */
  now: z.string(),
  builders: z.array(
    z.object({
      builder: builderIdOut,
      pending: z.number().int(),
      running: z.number().int(),
      oldestPendingTime: z.string().optional(),
    }),
  ),
  builds: z.array(buildSummarySchema),
  /** More open builds exist than `builds` lists. */
  truncated: z.boolean(),
  verifications: z.array(z.object({ verification: verificationSchema, builds: z.array(buildSummarySchema) })),
});
export type PipelineResponse = z.infer<typeof pipelineResponse>;

/** A full build as a summary (the parts lists leave out, removed). */
export function summarize(b: Build): BuildSummary {
  const { input: _i, output: _o, events: _e, ...rest } = b;
  return rest;
}

export const getPipeline: Route = (app, ctx) => {
  app.get('/api/v1/pipeline', async (req): Promise<PipelineResponse> => {
    const q = parseInput(getPipelineQuery, req.query, 'query');
    const buckets = bucketsToShow(ctx.registry, req, q.bucket);
    const storage = readModel(ctx);
    const limit = q.limit ?? 200;
    const [summaries, open, active] = await Promise.all([
      storage.builderSummaries(buildersOf(ctx.registry, buckets), { queueLimit: 0 }),
      storage.openBuilds(buckets, limit + 1),
      storage.recentVerifications({ active: true, limit: 100 }),
    ]);
    const shown = new Set(buckets);
    const readable = new Set(readableBuckets(ctx.registry, req));
    const verifications = active.filter(
      (v) =>
        canReadAll(
          readable,
          v.platforms.map((p) => p.builder),
        ) && v.platforms.some((p) => shown.has(`${p.builder.project}/${p.builder.bucket}`)),
    );
    const platformBuilds = await storage.getBuilds(verifications.flatMap((v) => v.platforms.map((p) => p.buildId)));
    const byId = new Map(platformBuilds.map((b) => [b.id, summarize(b)]));
    return {
      now: new Date().toISOString(),
      builders: summaries.map(({ builder, pending, running, oldestPendingTime }) => ({
        builder,
        pending,
        running,
        ...(oldestPendingTime !== undefined ? { oldestPendingTime } : {}),
      })),
      builds: open.slice(0, limit),
      truncated: open.length > limit,
      verifications: verifications.map((v) => ({
        verification: v,
        builds: v.platforms.flatMap((p) => byId.get(p.buildId) ?? []),
      })),
    };
  });
};
