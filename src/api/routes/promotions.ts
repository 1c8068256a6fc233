/**
 * GET /api/v1/promotions?repo&name&build&limit — promotion and periodic-merge attempts from
 * storage, newest first, each with its state, commit, the builds that fed it and the reason it
 * failed (READER on one of its buckets). `build=<id>` lists the attempts a build fed.
 * POST /api/v1/promotions/dry-run `{repo?}` — what every promotion and merge would push now, and
 * where, pushing nothing (run on a worker; READER on the buckets).
 */
import { z } from 'zod';
import { KilnError } from '../../domain/errors.ts';
import { PROMOTION_STATES } from '../../domain/launchpad/promotion.ts';
import { readableBuckets } from '../auth.ts';
import { type ApiContext, type Route } from '../context.ts';
import { lastOf } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const listPromotionsQuery = z
  .object({
    repo: lastOf(z.string().min(1).max(200)).optional(),
    name: lastOf(z.string().min(1).max(200)).optional(),
    build: lastOf(z.string().regex(/^[0-9]{1,20}$/, 'a build id')).optional(),
    limit: lastOf(z.coerce.number().int().min(1).max(1000)).optional(),
  })
  .strict();
export const dryRunBody = z.object({ repo: z.string().min(1).max(200).optional() }).strict();

export type DryRunRequest = z.input<typeof dryRunBody>;

/** One promotion or periodic-merge attempt (see src/domain/launchpad/promotion.ts). */
export const promotionAttemptSchema = z.object({
  id: z.string(),
  name: z.string(),
  kind: z.enum(['promotion', 'merge']),
  repo: z.string(),
  from: z.string(),
  to: z.string(),
  mode: z.enum(['fast-forward', 'merge']),
  state: z.enum(PROMOTION_STATES),
  commit: z.string().optional(),
  before: z.string().optional(),
  after: z.string().optional(),
  builds: z.array(z.string()),
  superseded: z.array(z.string()),
  supersededBuilds: z.array(z.string()),
  reason: z.string().optional(),
  message: z.string().optional(),
  dryRun: z.boolean(),
  createTime: z.string(),
  updateTime: z.string(),
  version: z.number().int(),
});

/** What `GET /api/v1/promotions` answers. */
export const promotionsResponse = z.object({ promotions: z.array(promotionAttemptSchema) });
export type PromotionsResponse = z.infer<typeof promotionsResponse>;

/** What `POST /api/v1/promotions/dry-run` answers: each attempt as it would go, nothing stored. */
export const dryRunResponse = z.object({
  results: z.array(
    promotionAttemptSchema.omit({ id: true, createTime: true, updateTime: true, version: true, kind: true }).extend({
      kind: z.string(),
    }),
  ),
});
export type DryRunResponse = z.infer<typeof dryRunResponse>;

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
  app.post('/api/v1/promotions/dry-run', async (req): Promise<DryRunResponse> => {
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
