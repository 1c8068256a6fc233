/** POST /api/v1/builds/:id/lease — lease a SCHEDULED build (WRITER); the key is then its capability. */
import { z } from 'zod';
import { authorizeBuild } from '../auth.ts';
import { type Route } from '../context.ts';
import { buildSchema } from '../uiSchemas.ts';
import { buildIdParams, leaseDurationSecs } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const leaseBuildBody = z
  .object({
    leaseDurationSecs: leaseDurationSecs.optional(),
    holder: z.string().min(1).max(200).optional(),
    requestId: z.string().min(1).max(200).optional(),
  })
  .strict();

export type LeaseBuildRequest = z.input<typeof leaseBuildBody>;

/** A granted lease: the key is the capability for every later call on this build. */
export const leaseBuildResponse = z.object({ leaseKey: z.string(), leaseExpiration: z.string(), build: buildSchema });
export type LeaseBuildResponse = z.infer<typeof leaseBuildResponse>;

export const leaseBuild: Route = (app, ctx) => {
  app.post('/api/v1/builds/:id/lease', async (req): Promise<LeaseBuildResponse> => {
    const { id } = parseInput(buildIdParams, req.params, 'params');
    const body = parseInput(leaseBuildBody, req.body ?? {}, 'body');
    await authorizeBuild(ctx, req, id, 'WRITER');
    return ctx.service.lease(id, {
      holder: body.holder,
      requestId: body.requestId,
      leaseDurationMs: body.leaseDurationSecs === undefined ? undefined : body.leaseDurationSecs * 1000,
    });
  });
};
