/** POST /api/v1/peek — SCHEDULED unleased builds a runner can take, best priority then oldest (WRITER). */
import { z } from 'zod';
import { requireRole } from '../auth.ts';
import { type Route } from '../context.ts';
import { buildSchema } from '../uiSchemas.ts';
import { builderNameSchema, dimensionSchema } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const peekBuildsBody = z
  .object({
    buckets: z
      .array(
        z
          .string()
          .max(201)
          .regex(/^[^/\s]+\/[^/\s]+$/, 'a "project/bucket" string'),
      )
      .min(1)
      .max(100),
    dimensions: z.array(dimensionSchema).max(128).optional(),
    builders: z.array(builderNameSchema).max(1000).optional(),
    maxBuilds: z.number().int().min(1).max(100).default(10),
  })
  .strict();

export type PeekBuildsRequest = z.input<typeof peekBuildsBody>;
/** Up to `maxBuilds` builds, in the order runners should take them. */
export const peekBuildsResponse = z.object({ builds: z.array(buildSchema) });
export type PeekBuildsResponse = z.infer<typeof peekBuildsResponse>;

export const peekBuilds: Route = (app, ctx) => {
  app.post('/api/v1/peek', async (req): Promise<PeekBuildsResponse> => {
    const body = parseInput(peekBuildsBody, req.body, 'body');
    for (const b of body.buckets) requireRole(ctx.registry, req, b, 'WRITER');
    const builds = await ctx.service.peek({
      buckets: body.buckets,
      dimensions: body.dimensions,
      builders: body.builders,
      limit: body.maxBuilds,
    });
    return { builds };
  });
};
