/**
 * GET /api/v1/builders/:project/:bucket/:builder/builds/:number — one build by its builder and
 * per-builder number, like Buildbucket v2's GetBuild with `builder` and `build_number` (READER on the
 * bucket). An unreadable bucket answers like an unknown build.
 */
import { z } from 'zod';
import { builderPath, bucketPath } from '../../domain/build.ts';
import { KilnError } from '../../domain/errors.ts';
import { authenticate, requireRole } from '../auth.ts';
import { type Route } from '../context.ts';
import { buildSchema } from '../uiSchemas.ts';
import { builderIdSchema } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const getBuildByNumberParams = builderIdSchema.extend({
  number: z.coerce
    .number()
    .int()
    .positive()
    .max(2 ** 31 - 1),
});

export const getBuildByNumberResponse = buildSchema;
export type GetBuildByNumberResponse = z.infer<typeof getBuildByNumberResponse>;

export const getBuildByNumber: Route = (app, ctx) => {
  app.get(
    '/api/v1/builders/:project/:bucket/:builder/builds/:number',
    async (req): Promise<GetBuildByNumberResponse> => {
      const { number, ...builder } = parseInput(getBuildByNumberParams, req.params, 'params');
      const token = authenticate(ctx.registry, req);
      const notFound = new KilnError('BUILD_NOT_FOUND', `build ${builderPath(builder)} #${number} not found`);
      if (token !== undefined && ctx.registry.roleOf(bucketPath(builder), token) === undefined) throw notFound;
      requireRole(ctx.registry, req, bucketPath(builder), 'READER');
      const build = await ctx.service.getByNumber(builder, number);
      if (!build) throw notFound;
      return build;
    },
  );
};
