/** GET /api/v1/builds/:id — one build (READER on its bucket). */
import { type z } from 'zod';
import { authorizedBuild } from '../auth.ts';
import { type Route } from '../context.ts';
import { buildSchema } from '../uiSchemas.ts';
import { buildIdParams } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const getBuildResponse = buildSchema;
export type GetBuildResponse = z.infer<typeof getBuildResponse>;

export const getBuild: Route = (app, ctx) => {
  app.get('/api/v1/builds/:id', async (req): Promise<GetBuildResponse> => {
    const { id } = parseInput(buildIdParams, req.params, 'params');
    return authorizedBuild(ctx, req, id, 'READER');
  });
};
