/** POST /api/v1/heartbeat — heartbeats for many builds in one call; each item answers on its own. */
import { z } from 'zod';
import { isBuildId } from '../../domain/buildId.ts';
import { leaseCall } from '../clientLimit.ts';
import { type Route } from '../context.ts';
import { errorBodySchema } from '../uiSchemas.ts';
import { leaseDurationSecs, leaseKeySchema } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const heartbeatBatchBody = z
  .object({
    heartbeats: z
      .array(
        z
          .object({
            buildId: z.string().refine(isBuildId, 'not a build ID'),
            leaseKey: leaseKeySchema,
            leaseDurationSecs: leaseDurationSecs.optional(),
          })
          .strict(),
      )
      .min(1)
      .max(100),
  })
  .strict();

export type HeartbeatBatchRequest = z.input<typeof heartbeatBatchBody>;

/** One result per heartbeat, in the request's order: the new lease end, or why the lease is over. */
export const heartbeatBatchResponse = z.object({
  results: z.array(
    z.object({ buildId: z.string(), leaseExpiration: z.string().optional(), error: errorBodySchema.optional() }),
  ),
});
export type HeartbeatBatchResponse = z.infer<typeof heartbeatBatchResponse>;

export const heartbeatBatch: Route = (app, ctx) => {
  app.post('/api/v1/heartbeat', async (req): Promise<HeartbeatBatchResponse> =>
    leaseCall(app, ctx, req, async () => {
      const body = parseInput(heartbeatBatchBody, req.body, 'body');
      const results = await ctx.service.heartbeatBatch(
        body.heartbeats.map((h) => ({
          buildId: h.buildId,
          leaseKey: h.leaseKey,
          leaseDurationMs: h.leaseDurationSecs === undefined ? undefined : h.leaseDurationSecs * 1000,
        })),
      );
      return { results };
    }),
  );
};
