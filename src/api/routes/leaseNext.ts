/**
 * POST /api/v1/lease-next — peek + lease (+ start) in one round trip (WRITER on every bucket named):
 * leases the best build a runner covers (best priority, then oldest), trying the next one when
 * another runner took it first. Answers `{lease: null}` when nothing is pending. With `start: true`
 * the build is started too, and the grant carries the started build.
 */
import { z } from 'zod';
import { requireRole } from '../auth.ts';
import { type Route } from '../context.ts';
import { leaseDurationSecs, urlSchema } from '../schemas.ts';
import { parseInput } from '../validate.ts';
import { leaseBuildResponse } from './leaseBuild.ts';
import { peekBuildsBody } from './peekBuilds.ts';

export const leaseNextBody = peekBuildsBody
  .omit({ maxBuilds: true })
  .extend({
    leaseDurationSecs: leaseDurationSecs.optional(),
    holder: z.string().min(1).max(200).optional(),
    /** Also start the leased build (one call instead of lease + start). @default false */
    start: z.boolean().default(false),
    /** The build's page on the runner's side, when `start` is set. */
    url: urlSchema.optional(),
  })
  .strict();
export type LeaseNextRequest = z.input<typeof leaseNextBody>;
export const leaseNextResponse = z.object({ lease: leaseBuildResponse.nullable() });
export type LeaseNextResponse = z.infer<typeof leaseNextResponse>;

export const leaseNext: Route = (app, ctx) => {
  app.post('/api/v1/lease-next', async (req): Promise<LeaseNextResponse> => {
    const body = parseInput(leaseNextBody, req.body, 'body');
    for (const b of body.buckets) requireRole(ctx.registry, req, b, 'WRITER');
    const grant = await ctx.service.leaseNext(
      { buckets: body.buckets, dimensions: body.dimensions, builders: body.builders },
      {
        holder: body.holder,
        leaseDurationMs: body.leaseDurationSecs === undefined ? undefined : body.leaseDurationSecs * 1000,
        ...(body.start ? { start: { url: body.url } } : {}),
      },
    );
    return { lease: grant ?? null };
  });
};
