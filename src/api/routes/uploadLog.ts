/**
 * POST /api/v1/builds/:id/log — the lease holder appends to the build's log. The lease key is the
 * capability (no bearer token needed); chunks carry their byte offset, so a retried chunk changes
 * nothing (different bytes at an offset already written are refused with CONFLICT), and `complete: true`
 * finishes the log. One attempt's log holds at most `logs.maxBytesPerAttempt` bytes (PAYLOAD_TOO_LARGE). A tinderbox that uploads only at the end sends
 * the whole log at offset 0 with `complete: true`.
 */
import { z } from 'zod';
import { KilnError } from '../../domain/errors.ts';
import { leaseCall } from '../clientLimit.ts';
import { type Route } from '../context.ts';
import { buildIdParams, leaseKeySchema } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const uploadLogBody = z
  .object({
    leaseKey: leaseKeySchema,
    /** Byte offset (UTF-8) of `data` in the log. */
    offset: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    /** Text to append; its UTF-8 bytes are what `offset` counts. */
    data: z.string().max(512 * 1024),
    complete: z.boolean().default(false),
  })
  .strict();

export type UploadLogRequest = z.input<typeof uploadLogBody>;

/** The answer: where the log stands now; the next chunk goes at `size`. */
export const uploadLogResponse = z.object({
  /** The lease generation whose log this is. */
  attempt: z.number().int(),
  size: z.number().int(),
  complete: z.boolean(),
});
export type UploadLogResponse = z.infer<typeof uploadLogResponse>;

export const uploadLog: Route = (app, ctx) => {
  app.post('/api/v1/builds/:id/log', async (req): Promise<UploadLogResponse> =>
    leaseCall(app, ctx, req, async () => {
      const { id } = parseInput(buildIdParams, req.params, 'params');
      // Log text is stored as bytes: any character may appear in it.
      const body = parseInput(uploadLogBody, req.body, 'body', { anyText: ['data'] });
      if (!ctx.logs) throw new KilnError('UNAVAILABLE', 'this API has no log store');
      const attempt = await ctx.service.checkLogWriter(id, body.leaseKey);
      const state = await ctx.logs.append(
        { buildId: id, attempt },
        body.offset,
        Buffer.from(body.data, 'utf8'),
        body.complete,
        { maxBytes: ctx.registry.config.logs.maxBytesPerAttempt },
      );
      return { attempt, ...state };
    }),
  );
};
