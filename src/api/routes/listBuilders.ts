/**
 * GET /api/v1/builders[?bucket=p/b][&queue=N] — every builder of the buckets the caller may read (or of
 * one bucket), each with its queue (pending builds in the order runners get them, with priority and
 * age), how many run now, its last build and its last green build. From storage; no Temporal call.
 */
import { z } from 'zod';
import { type Route } from '../context.ts';
import { lastOf } from '../schemas.ts';
import { buildersOf, bucketsToShow, readModel } from '../uiAccess.ts';
import { bucketParam, builderIdOut, buildSummarySchema } from '../uiSchemas.ts';
import { parseInput } from '../validate.ts';

export const listBuildersQuery = z
  .object({
    bucket: lastOf(bucketParam).optional(),
    /** Pending builds listed per builder. @default 10 */
    queue: lastOf(z.coerce.number().int().min(0).max(100)).optional(),
  })
  .strict();

export const builderSummarySchema = z.object({
  builder: builderIdOut,
  pending: z.number().int(),
  running: z.number().int(),
  oldestPendingTime: z.string().optional(),
  lastBuild: buildSummarySchema.optional(),
  lastGreen: buildSummarySchema.optional(),
  queue: z.array(buildSummarySchema),
});

export const listBuildersResponse = z.object({ builders: z.array(builderSummarySchema) });
export type ListBuildersResponse = z.infer<typeof listBuildersResponse>;

export const listBuilders: Route = (app, ctx) => {
  app.get('/api/v1/builders', async (req): Promise<ListBuildersResponse> => {
    const q = parseInput(listBuildersQuery, req.query, 'query');
    const buckets = bucketsToShow(ctx.registry, req, q.bucket);
    const builders = await readModel(ctx).builderSummaries(buildersOf(ctx.registry, buckets), {
      queueLimit: q.queue ?? 10,
    });
    return { builders };
  });
};
