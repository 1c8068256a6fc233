/**
 * POST /api/v1/builds/:id/heartbeat — extend the lease. A refusal (LEASE_EXPIRED or
 * BUILD_IS_COMPLETED) tells the runner to stop. The lease key is the credential.
 */
import { z } from 'zod';
import { leaseCall } from '../clientLimit.ts';
import { type Route } from '../context.ts';
import { buildIdParams, leaseDurationSecs, leaseKeySchema } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const heartbeatBody = z
  .object({ leaseKey: leaseKeySchema, leaseDurationSecs: leaseDurationSecs.optional() })
  .strict();

export type HeartbeatRequest = z.input<typeof heartbeatBody>;
/** When the extended lease ends. */
export const heartbeatResponse = z.object({ leaseExpiration: z.string() });
export type HeartbeatResponse = z.infer<typeof heartbeatResponse>;

export const heartbeatBuild: Route = (app, ctx) => {
  app.post('/api/v1/builds/:id/heartbeat', async (req): Promise<HeartbeatResponse> =>
    leaseCall(app, ctx, req, async () => {
      const { id } = parseInput(buildIdParams, req.params, 'params');
      const body = parseInput(heartbeatBody, req.body, 'body');
      return ctx.service.heartbeat(id, {
        leaseKey: body.leaseKey,
        leaseDurationMs: body.leaseDurationSecs === undefined ? undefined : body.leaseDurationSecs * 1000,
      });
    }),
  );
};
