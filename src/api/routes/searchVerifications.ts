/**
 * GET /api/v1/verifications?change=N[&host=H][&patchset=P][&limit=L] — a change's verifications from
 * storage, newest patch set first: phase, platforms with their builds, messages posted, the vote.
 * A verification is listed when the caller may read every bucket its builds are in.
 */
import { z } from 'zod';
import { bucketPath } from '../../domain/build.ts';
import { readableBuckets } from '../auth.ts';
import { type Route } from '../context.ts';
import { parseInput } from '../validate.ts';

const one = <T extends z.ZodType>(s: T) => z.preprocess((v) => (Array.isArray(v) ? v[v.length - 1] : v), s);

export const searchVerificationsQuery = z
  .object({
    change: one(
      z.coerce
        .number()
        .int()
        .positive()
        .max(2 ** 31 - 1),
    ),
    host: one(z.string().min(1).max(255)).optional(),
    patchset: one(
      z.coerce
        .number()
        .int()
        .positive()
        .max(2 ** 31 - 1),
    ).optional(),
    limit: one(z.coerce.number().int().min(1).max(1000)).optional(),
  })
  .strict();

export const searchVerifications: Route = (app, ctx) => {
  app.get('/api/v1/verifications', async (req) => {
    const q = parseInput(searchVerificationsQuery, req.query, 'query');
    const readable = new Set(readableBuckets(ctx.registry, req));
    const found = await ctx.service.findVerifications(q);
    return {
      verifications: found.filter((v) => v.platforms.every((p) => readable.has(bucketPath(p.builder)))),
    };
  });
};
