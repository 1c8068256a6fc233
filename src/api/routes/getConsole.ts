/**
 * GET /api/v1/console[?bucket=p/b][&builds=N] — Buildbot's console/grid view as data: for each builder of
 * the readable buckets (or of one bucket), its newest N builds (newest first), and the newest buildsets
 * across them, so the UI can also line the builders up by change or commit.
 */
import { z } from 'zod';
import { buildsetOf } from '../../domain/tags.ts';
import { type Route } from '../context.ts';
import { lastOf } from '../schemas.ts';
import { buildersOf, bucketsToShow, readModel } from '../uiAccess.ts';
import { bucketParam, builderIdOut, buildSummarySchema } from '../uiSchemas.ts';
import { parseInput } from '../validate.ts';

export const getConsoleQuery = z
  .object({
    bucket: lastOf(bucketParam).optional(),
    /** Builds per builder. @default 20 */
    builds: lastOf(z.coerce.number().int().min(1).max(100)).optional(),
  })
  .strict();

export const consoleResponse = z.object({
  rows: z.array(z.object({ builder: builderIdOut, builds: z.array(buildSummarySchema) })),
  /** Buildsets of those builds, newest first (by their newest build). */
  buildsets: z.array(z.string()),
});
export type ConsoleResponse = z.infer<typeof consoleResponse>;

export const getConsole: Route = (app, ctx) => {
  app.get('/api/v1/console', async (req): Promise<ConsoleResponse> => {
    const q = parseInput(getConsoleQuery, req.query, 'query');
    const buckets = bucketsToShow(ctx.registry, req, q.bucket);
    const rows = await readModel(ctx).recentBuildsByBuilder(buildersOf(ctx.registry, buckets), q.builds ?? 20);
    const newest = new Map<string, string>();
    for (const r of rows) {
      for (const b of r.builds) {
        const bs = buildsetOf(b.tags);
        if (bs !== undefined && (!newest.has(bs) || BigInt(b.id) < BigInt(newest.get(bs) ?? '0'))) newest.set(bs, b.id);
      }
    }
    const buildsets = [...newest.entries()].sort((a, b) => (BigInt(a[1]) < BigInt(b[1]) ? -1 : 1)).map(([bs]) => bs);
    return { rows, buildsets };
  });
};
