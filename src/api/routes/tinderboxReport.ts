/**
 * POST /api/v1/tinderbox/report — the tinderbox that holds the lease ends the build with SUCCESS or
 * FAILURE, optionally with its whole log. The lease key is the capability (no bearer token). A
 * report from a lease that expired (the task was rescheduled) is refused with LEASE_EXPIRED and
 * noted in the build's history.
 */
import { z } from 'zod';
import { report } from '../../builds/tinderbox.ts';
import { withAppendLimits } from '../../logs/logStore.ts';
import { leaseCall } from '../clientLimit.ts';
import { type Route } from '../context.ts';
import { buildSchema } from '../uiSchemas.ts';
import { buildIdParams, leaseKeySchema, urlSchema } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const reportBody = z
  .object({
    buildId: buildIdParams.shape.id,
    leaseKey: leaseKeySchema,
    outcome: z.enum(['SUCCESS', 'FAILURE']),
    /** The whole log as text (bounded by the body limit). */
    log: z.string().optional(),
    url: urlSchema.optional(),
    summary: z.string().max(65536).optional(),
  })
  .strict();

export type TinderboxReportRequest = z.input<typeof reportBody>;
/** The ended build. */
export const tinderboxReportResponse = buildSchema;
export type TinderboxReportResponse = z.infer<typeof tinderboxReportResponse>;

export const tinderboxReport: Route = (app, ctx) => {
  app.post('/api/v1/tinderbox/report', async (req): Promise<TinderboxReportResponse> =>
    leaseCall(app, ctx, req, async () => {
      // The log is stored as bytes: any character may appear in it.
      const body = parseInput(reportBody, req.body, 'body', { anyText: ['log'] });
      const logs = ctx.logs && withAppendLimits(ctx.logs, { maxBytes: ctx.registry.config.logs.maxBytesPerAttempt });
      return report(ctx.service, logs, body);
    }),
  );
};
