/** POST /api/v1/builds/:id/start — the lease holder starts the build; the lease key is the credential. */
import { z } from 'zod';
import { leaseCall } from '../clientLimit.ts';
import { type Route } from '../context.ts';
import { buildSchema } from '../uiSchemas.ts';
import { buildIdParams, leaseKeySchema, urlSchema } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const startBuildBody = z.object({ leaseKey: leaseKeySchema, url: urlSchema.optional() }).strict();

export type StartBuildRequest = z.input<typeof startBuildBody>;
/** The started build. */
export const startBuildResponse = buildSchema;
export type StartBuildResponse = z.infer<typeof startBuildResponse>;

export const startBuild: Route = (app, ctx) => {
  app.post('/api/v1/builds/:id/start', async (req): Promise<StartBuildResponse> =>
    leaseCall(app, ctx, req, async () => {
      const { id } = parseInput(buildIdParams, req.params, 'params');
      const body = parseInput(startBuildBody, req.body, 'body');
      return ctx.service.start(id, body);
    }),
  );
};
