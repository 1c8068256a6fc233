/**
 * GET /api/v1/verifications?change=N[&host=H][&patchset=P][&limit=L] — a change's verifications from
 * storage, newest patch set first: phase, platforms with their builds, messages posted, the vote.
 * A verification is listed when the caller may read every bucket its builds are in.
 */
import { z } from 'zod';
import { bucketPath } from '../../domain/build.ts';
import { readableBuckets } from '../auth.ts';
import { type Route } from '../context.ts';
import { verificationSchema } from '../uiSchemas.ts';
import { lastOf } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const searchVerificationsQuery = z
  .object({
    change: lastOf(
      z.coerce
        .number()
        .int()
        .positive()
        .max(2 ** 31 - 1),
    ),
    host: lastOf(z.string().min(1).max(255)).optional(),
    patchset: lastOf(
      z.coerce
        .number()
        .int()
        .positive()
        .max(2 ** 31 - 1),
    ).optional(),
    limit: lastOf(z.coerce.number().int().min(1).max(1000)).optional(),
  })
  .strict();

/** The change's verifications the caller may read, newest patch set first. */
export const searchVerificationsResponse = z.object({ verifications: z.array(verificationSchema) });
export type SearchVerificationsResponse = z.infer<typeof searchVerificationsResponse>;

export const searchVerifications: Route = (app, ctx) => {
  app.get('/api/v1/verifications', async (req): Promise<SearchVerificationsResponse> => {
    const q = parseInput(searchVerificationsQuery, req.query, 'query');
    const readable = new Set(readableBuckets(ctx.registry, req));
    const found = await ctx.service.findVerifications(q);
    return {
      verifications: found.filter((v) => v.platforms.every((p) => readable.has(bucketPath(p.builder)))),
    };
  });
};
