/**
 * POST /api/v1/builds/:id/succeed and /fail — the lease holder ends the build. A retry of a report
 * that already landed gets the same answer; a late report from an expired lease is refused and
 * noted in the build's history.
 */
import { z } from 'zod';
import { leaseCall } from '../clientLimit.ts';
import { type Route } from '../context.ts';
import { buildSchema } from '../uiSchemas.ts';
import { buildIdParams, leaseKeySchema, propertiesSchema, urlSchema } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const completeBuildBody = z
  .object({
    leaseKey: leaseKeySchema,
    output: z
      .object({ properties: propertiesSchema.optional(), summaryMarkdown: z.string().max(65536).optional() })
      .strict()
      .optional(),
    summaryMarkdown: z.string().max(65536).optional(),
    url: urlSchema.optional(),
  })
  .strict();

export const failBuildBody = completeBuildBody.extend({
  failureReason: z.enum(['BUILD_FAILURE', 'INFRA_FAILURE']).default('BUILD_FAILURE'),
});
export type SucceedBuildRequest = z.input<typeof completeBuildBody>;
export type FailBuildRequest = z.input<typeof failBuildBody>;
/** The ended build. */
export const completeBuildResponse = buildSchema;
export type CompleteBuildResponse = z.infer<typeof completeBuildResponse>;

export const succeedBuild: Route = (app, ctx) => {
  app.post('/api/v1/builds/:id/succeed', async (req): Promise<CompleteBuildResponse> =>
    leaseCall(app, ctx, req, async () => {
      const { id } = parseInput(buildIdParams, req.params, 'params');
      return ctx.service.succeed(id, parseInput(completeBuildBody, req.body, 'body'));
    }),
  );
};

export const failBuild: Route = (app, ctx) => {
  app.post('/api/v1/builds/:id/fail', async (req): Promise<CompleteBuildResponse> =>
    leaseCall(app, ctx, req, async () => {
      const { id } = parseInput(buildIdParams, req.params, 'params');
      return ctx.service.fail(id, parseInput(failBuildBody, req.body, 'body'));
    }),
  );
};
