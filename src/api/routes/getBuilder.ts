/**
 * GET /api/v1/builders/:project/:bucket/:builder — a builder's config as runners need it: its
 * command, dimensions and lease settings (READER on the bucket).
 */
import { z } from 'zod';
import { requireRole } from '../auth.ts';
import { type Route } from '../context.ts';
import { builderIdOut } from '../uiSchemas.ts';
import { builderIdSchema } from '../schemas.ts';
import { parseInput } from '../validate.ts';

/** What the route answers. */
export const getBuilderResponse = z.object({
  builder: builderIdOut,
  /** argv `kiln runner` runs; absent when the builder has none (runners fail such builds). */
  command: z.array(z.string()).optional(),
  /** The repository the runner checks out first; absent → the command runs in an empty folder. */
  checkout: z.object({ repo: z.string(), ref: z.string().optional() }).optional(),
  dimensions: z.array(z.string()),
  leaseDurationSecs: z.number().int(),
  maxLeaseDurationSecs: z.number().int(),
  executionTimeoutSecs: z.number().int(),
});
export type BuilderResponse = z.infer<typeof getBuilderResponse>;

export const getBuilder: Route = (app, ctx) => {
  app.get('/api/v1/builders/:project/:bucket/:builder', async (req): Promise<BuilderResponse> => {
    const id = parseInput(builderIdSchema, req.params, 'params');
    requireRole(ctx.registry, req, `${id.project}/${id.bucket}`, 'READER');
    const cfg = ctx.registry.builder(id);
    if (!cfg) throw ctx.registry.builderNotFound(id);
    return {
      builder: id,
      command: cfg.command,
      checkout: cfg.checkout,
      dimensions: cfg.dimensions,
      leaseDurationSecs: cfg.leaseDurationSecs,
      maxLeaseDurationSecs: cfg.maxLeaseDurationSecs,
      executionTimeoutSecs: cfg.executionTimeoutSecs,
    };
  });
};
