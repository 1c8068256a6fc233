/**
 * POST /api/v1/watch — long-poll for the end of the leases a runner holds (see src/builds/watch.ts).
 * Answers as soon as one of the builds has ended (canceled, timed out) or its lease generation is
 * over, with one result per such build in the heartbeat batch's shape, or `{results: []}` after
 * `timeoutSecs`. WRITER on each build's bucket (what the runner's peek and lease already need).
 */
import { z } from 'zod';
import { BUILD_STATUSES } from '../../domain/build.ts';
import { isBuildId } from '../../domain/buildId.ts';
import { KilnError } from '../../domain/errors.ts';
import { requireRole } from '../auth.ts';
import { type Route } from '../context.ts';
import { errorBodySchema } from '../uiSchemas.ts';
import { leaseKeySchema } from '../schemas.ts';
import { parseInput } from '../validate.ts';

/** Longest wait one call may ask for; well under the server's 60 s request timeout. */
export const MAX_WATCH_SECS = 50;

export const watchLeasesBody = z
  .object({
    builds: z
      .array(
        z
          .object({
            buildId: z.string().refine(isBuildId, 'not a build ID'),
            leaseKey: leaseKeySchema.regex(/^\d+\./, 'not a lease key (expected "<generation>.<id>")'),
          })
          .strict(),
      )
      .min(1)
      .max(100),
    /** @default 25 */
    timeoutSecs: z.number().min(0).max(MAX_WATCH_SECS).default(25),
  })
  .strict();

export type WatchLeasesRequest = z.input<typeof watchLeasesBody>;

/** What the route answers: the leases that are over (possibly none). */
export const watchLeasesResponse = z.object({
  results: z.array(
    z.object({ buildId: z.string(), status: z.enum(BUILD_STATUSES).optional(), error: errorBodySchema }),
  ),
});
export type WatchLeasesResponse = z.infer<typeof watchLeasesResponse>;

export const watchLeases: Route = (app, ctx) => {
  app.post('/api/v1/watch', async (req, reply): Promise<WatchLeasesResponse> => {
    const body = parseInput(watchLeasesBody, req.body, 'body');
    const watcher = ctx.watcher;
    if (!watcher) throw new KilnError('NOT_FOUND', 'this API does not watch leases; rely on heartbeats');
    const leases = body.builds.map((b) => ({
      buildId: b.buildId,
      leaseGeneration: Number.parseInt(b.leaseKey, 10),
    }));
    // One storage read for the permission check; unknown builds are answered below as BUILD_NOT_FOUND.
    if (!ctx.registry.authDisabled) {
      const states = await watcher.statesOf(leases.map((l) => l.buildId));
      for (const s of states) requireRole(ctx.registry, req, s.bucket, 'WRITER');
    }
    const gone = new AbortController();
    // A runner that gave up (or died) stops its wait: the response closes before it was sent.
    reply.raw.once('close', () => gone.abort());
    const ends = await watcher.wait(leases, body.timeoutSecs * 1000, gone.signal);
    return {
      results: ends.map((e) => ({
        buildId: e.buildId,
        ...(e.status ? { status: e.status } : {}),
        error: { code: e.code, message: e.message },
      })),
    };
  });
};
