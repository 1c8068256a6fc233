/** POST /api/v1/builds/:id/priority — change a pending build's priority (WRITER). */
import { z } from 'zod';
import { authorizeBuild } from '../auth.ts';
import { type Route } from '../context.ts';
import { buildSchema } from '../uiSchemas.ts';
import { buildIdParams } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const setPriorityBody = z.object({ priority: z.number().int().min(0).max(255) }).strict();

export type SetPriorityRequest = z.input<typeof setPriorityBody>;
export const setPriorityResponse = buildSchema;
export type SetPriorityResponse = z.infer<typeof setPriorityResponse>;

export const setPriority: Route = (app, ctx) => {
  app.post('/api/v1/builds/:id/priority', async (req): Promise<SetPriorityResponse> => {
    const { id } = parseInput(buildIdParams, req.params, 'params');
    const body = parseInput(setPriorityBody, req.body, 'body');
    await authorizeBuild(ctx, req, id, 'WRITER');
    return ctx.service.setPriority(id, body.priority);
  });
};
