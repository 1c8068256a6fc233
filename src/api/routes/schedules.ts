/**
 * GET /api/v1/schedules — every scheduler (periodic, on-commit) and periodic merge with its state:
 * paused, next and last run, and for a git poller its last commit, last success and last error
 * (READER on one of its buckets). POST /api/v1/schedules/:name/{pause,unpause,trigger} `{note?}`
 * pauses, resumes or runs it now (SCHEDULER on each of its buckets).
 */
import { z } from 'zod';
import { KilnError } from '../../domain/errors.ts';
import { readableBuckets, requireRole } from '../auth.ts';
import { type ApiContext, type Route } from '../context.ts';
import { parseInput } from '../validate.ts';

export const scheduleActionParams = z
  .object({ name: z.string().min(1).max(200), action: z.enum(['pause', 'unpause', 'trigger']) })
  .strict();
export const scheduleActionBody = z.object({ note: z.string().max(500).optional() }).strict();

export type ScheduleActionRequest = z.input<typeof scheduleActionBody>;

/** A scheduler or periodic merge and its state (see src/launchpad/api.ts). */
export const scheduleViewSchema = z.object({
  name: z.string(),
  kind: z.enum(['periodic', 'on-commit', 'merge']),
  when: z.string(),
  what: z.string(),
  buckets: z.array(z.string()),
  paused: z.boolean(),
  note: z.string().optional(),
  nextRunTime: z.string().optional(),
  lastRunTime: z.string().optional(),
  lastCommit: z.string().optional(),
  lastSuccessTime: z.string().optional(),
  lastError: z.string().optional(),
  lastErrorTime: z.string().optional(),
});

/** What `GET /api/v1/schedules` answers. */
export const schedulesResponse = z.object({ schedules: z.array(scheduleViewSchema) });
export type SchedulesResponse = z.infer<typeof schedulesResponse>;

/** What `POST /api/v1/schedules/:name/:action` answers once the action is done. */
export const scheduleActionResponse = z.object({
  ok: z.literal(true),
  name: z.string(),
  action: scheduleActionParams.shape.action,
});
export type ScheduleActionResponse = z.infer<typeof scheduleActionResponse>;

function launchpadOf(ctx: ApiContext) {
  if (!ctx.launchpad) throw new KilnError('NOT_FOUND', 'no schedulers are configured');
  return ctx.launchpad;
}

export const listSchedules: Route = (app, ctx) => {
  app.get('/api/v1/schedules', async (req): Promise<SchedulesResponse> => {
    const lp = launchpadOf(ctx);
    const readable = new Set(readableBuckets(ctx.registry, req));
    const all = await lp.listSchedules();
    return {
      schedules: all.filter((s) => ctx.registry.authDisabled || s.buckets.some((b) => readable.has(b))),
    };
  });
};

export const scheduleAction: Route = (app, ctx) => {
  app.post('/api/v1/schedules/:name/:action', async (req): Promise<ScheduleActionResponse> => {
    const lp = launchpadOf(ctx);
    const p = parseInput(scheduleActionParams, req.params, 'params');
    const body = parseInput(scheduleActionBody, req.body ?? {}, 'body');
    const buckets = lp.bucketsOf(p.name);
    if (buckets === undefined) throw new KilnError('NOT_FOUND', `no scheduler or periodic merge named ${p.name}`);
    if (!ctx.registry.authDisabled && buckets.length === 0)
      throw new KilnError('PERMISSION_DENIED', `${p.name} has no bucket whose roles govern it`);
    for (const b of buckets) requireRole(ctx.registry, req, b, 'SCHEDULER');
    await lp.act(p.name, p.action, body.note);
    return { ok: true, name: p.name, action: p.action };
  });
};
