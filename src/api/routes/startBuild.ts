/** POST /api/v1/builds/:id/start — the lease holder starts the build; the lease key is the credential. */
import { z } from 'zod';
import { leaseCall } from '../clientLimit.ts';
import { type Route } from '../context.ts';
import { buildIdParams, leaseKeySchema, urlSchema } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const startBuildBody = z.object({ leaseKey: leaseKeySchema, url: urlSchema.optional() }).strict();

export const startBuild: Route = (app, ctx) => {
  app.post('/api/v1/builds/:id/start', async (req) =>
    leaseCall(app, ctx, req, async () => {
      const { id } = parseInput(buildIdParams, req.params, 'params');
      const body = parseInput(startBuildBody, req.body, 'body');
      return ctx.service.start(id, body);
    }),
  );
};
