/**
 * GET /api/v1/builds/:id/log — the build's log as `text/plain; charset=utf-8` (READER). The latest
 * attempt unless `attempt` is given; from byte `offset` when given (for `kiln log --follow`).
 * Headers: `X-Kiln-Log-Size` (bytes in the whole log), `X-Kiln-Log-Complete` (`true` once the
 * writer finished it), `X-Kiln-Log-Attempt` (the lease generation that wrote it). A build with no
 * log yet answers an empty body with size 0.
 */
import { z } from 'zod';
import { KilnError } from '../../domain/errors.ts';
import { authorizedBuild } from '../auth.ts';
import { type Route } from '../context.ts';
import { buildIdParams } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const getLogQuery = z
  .object({
    offset: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    attempt: z.coerce
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1)
      .optional(),
  })
  .strict();

/** Most bytes one answer carries; a reader asks again from `offset + received`. */
const MAX_READ = 8 * 1024 * 1024;

export const getLog: Route = (app, ctx) => {
  app.get('/api/v1/builds/:id/log', async (req, reply) => {
    const { id } = parseInput(buildIdParams, req.params, 'params');
    const q = parseInput(getLogQuery, req.query, 'query');
    await authorizedBuild(ctx, req, id, 'READER');
    if (!ctx.logs) throw new KilnError('UNAVAILABLE', 'this API has no log store');
    const r = await ctx.logs.read(id, { attempt: q.attempt, offset: q.offset, limit: MAX_READ });
    if (!r && q.attempt !== undefined)
      throw new KilnError('NOT_FOUND', `build ${id} has no log for attempt ${q.attempt}`);
    void reply
      .header('content-type', 'text/plain; charset=utf-8')
      .header('x-kiln-log-size', String(r?.size ?? 0))
      .header('x-kiln-log-complete', String(r?.complete ?? false));
    if (r) void reply.header('x-kiln-log-attempt', String(r.attempt));
    return reply.send(r?.data ?? '');
  });
};
