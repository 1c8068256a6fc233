/**
 * GET /api/v1/promotions?repo&name&build&limit — promotion and periodic-merge attempts from
 * storage, newest first, each with its state, commit, the builds that fed it and the reason it
 * failed (READER on one of its buckets). `build=<id>` lists the attempts a build fed.
 * POST /api/v1/promotions/dry-run `{repo?}` — what every promotion and merge would push now, and
 * where, pushing nothing (run on a worker; READER on the buckets).
 */
import { z } from 'zod';
import { KilnError } from '../../domain/errors.ts';
import { type PromotionAttempt } from '../../domain/launchpad/promotion.ts';
import { readableBuckets } from '../auth.ts';
import { type ApiContext, type Route } from '../context.ts';
import { parseInput } from '../validate.ts';

const one = <T extends z.ZodType>(s: T) => z.preprocess((v) => (Array.isArray(v) ? v[v.length - 1] : v), s);

export const listPromotionsQuery = z
  .object({
    repo: one(z.string().min(1).max(200)).optional(),
    name: one(z.string().min(1).max(200)).optional(),
    build: one(z.string().regex(/^[0-9]{1,20}$/, 'a build id')).optional(),
    limit: one(z.coerce.number().int().min(1).max(1000)).optional(),
  })
  .strict();
export const dryRunBody = z.object({ repo: z.string().min(1).max(200).optional() }).strict();

/** What `GET /api/v1/promotions` answers. */
export interface PromotionsResponse {
  promotions: PromotionAttempt[];
}

function launchpadOf(ctx: ApiContext) {
  if (!ctx.launchpad) throw new KilnError('NOT_FOUND', 'no promotions are configured');
  return ctx.launchpad;
}

export const listPromotions: Route = (app, ctx) => {
  app.get('/api/v1/promotions', async (req): Promise<PromotionsResponse> => {
    const lp = launchpadOf(ctx);
    const q = parseInput(listPromotionsQuery, req.query, 'query');
    const readable = new Set(readableBuckets(ctx.registry, req));
    const found = await lp.listPromotions(q);
    return {
      promotions: found.filter(
        (a) => ctx.registry.authDisabled || (lp.bucketsOf(a.name) ?? []).some((b) => readable.has(b)),
      ),
    };
  });
};

export const dryRunPromotions: Route = (app, ctx) => {
  app.post('/api/v1/promotions/dry-run', async (req) => {
    const lp = launchpadOf(ctx);
    const body = parseInput(dryRunBody, req.body ?? {}, 'body');
    const readable = new Set(readableBuckets(ctx.registry, req));
    const results = await lp.dryRun(body.repo);
    return {
      results: results.filter(
        (r) => ctx.registry.authDisabled || (lp.bucketsOf(r.name) ?? []).some((b) => readable.has(b)),
      ),
    };
  });
};
