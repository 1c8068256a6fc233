/** POST /api/v1/builds/:id/cancel — cancel from any non-ended state; idempotent (SCHEDULER). */
import { z } from 'zod';
import { authorizeBuild, callerName } from '../auth.ts';
import { type Route } from '../context.ts';
import { buildSchema } from '../uiSchemas.ts';
import { buildIdParams } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const cancelBuildBody = z.object({ reason: z.string().max(4096).optional() }).strict();
export type CancelBuildRequest = z.input<typeof cancelBuildBody>;
/** The build as it is after the request (an ended build comes back unchanged). */
export const cancelBuildResponse = buildSchema;
export type CancelBuildResponse = z.infer<typeof cancelBuildResponse>;

export const cancelBuild: Route = (app, ctx) => {
  app.post('/api/v1/builds/:id/cancel', async (req): Promise<CancelBuildResponse> => {
    const { id } = parseInput(buildIdParams, req.params, 'params');
    const body = parseInput(cancelBuildBody, req.body ?? {}, 'body');
    await authorizeBuild(ctx, req, id, 'SCHEDULER');
    return ctx.service.cancel(id, body.reason, callerName(ctx.registry, req));
  });
};
