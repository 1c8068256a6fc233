/**
 * GET /api/v1/builders/:project/:bucket/:builder/stats[?days=30 | ?from=…&to=…] — one builder's builds
 * created in the window: counts by status (pass / failure / infra-failure rates), queue time and duration
 * p50/p95 (computed in SQL), for the whole window and per UTC day (READER on the bucket).
 */
import { z } from 'zod';
import { KilnError } from '../../domain/errors.ts';
import { requireRole } from '../auth.ts';
import { type Route } from '../context.ts';
import { builderIdSchema, lastOf } from '../schemas.ts';
import { builderExists, readModel } from '../uiAccess.ts';
import { builderIdOut } from '../uiSchemas.ts';
import { parseInput } from '../validate.ts';

export const builderStatsQuery = z
  .object({
    /** The last N days up to now. @default 30 */
    days: lastOf(z.coerce.number().int().min(1).max(366)).optional(),
    from: lastOf(z.iso.datetime({ offset: true })).optional(),
    to: lastOf(z.iso.datetime({ offset: true })).optional(),
  })
  .strict();

const figures = z.object({
  total: z.number().int(),
  success: z.number().int(),
  failure: z.number().int(),
  infraFailure: z.number().int(),
  canceled: z.number().int(),
  open: z.number().int(),
  queueP50Ms: z.number().optional(),
  queueP95Ms: z.number().optional(),
  durationP50Ms: z.number().optional(),
  durationP95Ms: z.number().optional(),
});

export const builderStatsResponse = z.object({
  builder: builderIdOut,
  from: z.string(),
  to: z.string(),
  window: figures,
  days: z.array(figures.extend({ day: z.string() })),
});
export type BuilderStatsResponse = z.infer<typeof builderStatsResponse>;

const DAY_MS = 24 * 3600 * 1000;
/** Longest window one request may ask for. */
const MAX_WINDOW_MS = 366 * DAY_MS;

export const getBuilderStats: Route = (app, ctx) => {
  app.get('/api/v1/builders/:project/:bucket/:builder/stats', async (req): Promise<BuilderStatsResponse> => {
    const id = parseInput(builderIdSchema, req.params, 'params');
    const q = parseInput(builderStatsQuery, req.query, 'query');
    requireRole(ctx.registry, req, `${id.project}/${id.bucket}`, 'READER');
    if (!builderExists(ctx.registry, id)) {
      throw new KilnError('BUILDER_NOT_FOUND', `builder ${id.project}/${id.bucket}/${id.builder} is not configured`);
    }
    if (q.days !== undefined && (q.from !== undefined || q.to !== undefined)) {
      throw new KilnError('INVALID_ARGUMENT', 'query.days: give either days or from/to, not both');
    }
    const to = q.to !== undefined ? Date.parse(q.to) : Date.now();
    const from = q.from !== undefined ? Date.parse(q.from) : to - (q.days ?? 30) * DAY_MS;
    if (from >= to) throw new KilnError('INVALID_ARGUMENT', 'query.from: must be before to');
    if (to - from > MAX_WINDOW_MS)
      throw new KilnError('INVALID_ARGUMENT', 'query.from: the window is longer than 366 days');
    const [fromIso, toIso] = [new Date(from).toISOString(), new Date(to).toISOString()];
    const stats = await readModel(ctx).builderStats(id, fromIso, toIso);
    return { builder: id, from: fromIso, to: toIso, ...stats };
  });
};
