/**
 * GET /api/v1/verifications/:host/:change/:patchset — one patch set's verification as the change page
 * shows it: every attempt (newest first) with its phase, reason, platforms, messages and vote, plus the
 * current state of each platform's build (status, tinderbox, times); the patch sets of the change that
 * have verifications; the Gerrit link. READER on every bucket its builds are in.
 * GET /api/v1/verifications/recent[?active=true][&limit=N] — the newest verifications the caller may read.
 */
import { z } from 'zod';
import { KilnError } from '../../domain/errors.ts';
import { readableBuckets } from '../auth.ts';
import { type Route } from '../context.ts';
import { lastOf } from '../schemas.ts';
import { canReadAll, readModel } from '../uiAccess.ts';
import { buildSummarySchema, verificationSchema } from '../uiSchemas.ts';
import { parseInput } from '../validate.ts';
import { summarize } from './getPipeline.ts';

const positiveInt = z.coerce
  .number()
  .int()
  .positive()
  .max(2 ** 31 - 1);

export const getVerificationParams = z
  .object({
    host: z
      .string()
      .min(1)
      .max(255)
      .regex(/^[A-Za-z0-9.:-]+$/, 'a Gerrit host name'),
    change: positiveInt,
    patchset: positiveInt,
  })
  .strict();

export const verificationResponse = z.object({
  host: z.string(),
  change: z.number().int(),
  patchset: z.number().int(),
  /** The change on Gerrit, when the host is configured. */
  gerritUrl: z.string().optional(),
  /** Patch sets of this change that have verifications, newest first. */
  patchsets: z.array(z.number().int()),
  attempts: z.array(z.object({ verification: verificationSchema, builds: z.array(buildSummarySchema) })),
});
export type VerificationResponse = z.infer<typeof verificationResponse>;

export const recentVerificationsQuery = z
  .object({
    active: lastOf(z.enum(['true', 'false'])).optional(),
    limit: lastOf(z.coerce.number().int().min(1).max(500)).optional(),
  })
  .strict();

export const recentVerificationsResponse = z.object({ verifications: z.array(verificationSchema) });
export type RecentVerificationsResponse = z.infer<typeof recentVerificationsResponse>;

export const getVerification: Route = (app, ctx) => {
  app.get('/api/v1/verifications/recent', async (req): Promise<RecentVerificationsResponse> => {
    const q = parseInput(recentVerificationsQuery, req.query, 'query');
    const readable = new Set(readableBuckets(ctx.registry, req));
    const found = await readModel(ctx).recentVerifications({ active: q.active === 'true', limit: q.limit ?? 50 });
    return {
      verifications: found.filter((v) =>
        canReadAll(
          readable,
          v.platforms.map((p) => p.builder),
        ),
      ),
    };
  });

  app.get('/api/v1/verifications/:host/:change/:patchset', async (req): Promise<VerificationResponse> => {
    const p = parseInput(getVerificationParams, req.params, 'params');
    const readable = new Set(readableBuckets(ctx.registry, req));
    const storage = readModel(ctx);
    const all = await storage.findVerifications({ host: p.host, change: p.change, limit: 1000 });
    const attempts = all.filter((v) => v.patchset === p.patchset);
    if (attempts.length === 0) {
      throw new KilnError('NOT_FOUND', `no verification of change ${p.change} patch set ${p.patchset} on ${p.host}`);
    }
    if (
      !attempts.every((v) =>
        canReadAll(
          readable,
          v.platforms.map((x) => x.builder),
        ),
      )
    ) {
      throw new KilnError('PERMISSION_DENIED', 'READER role on the buckets of this verification is required');
    }
    const builds = await storage.getBuilds(attempts.flatMap((v) => v.platforms.map((x) => x.buildId)));
    const byId = new Map(builds.map((b) => [b.id, summarize(b)]));
    const host = ctx.registry.config.gerrit?.hosts.find((h) => h.host === p.host);
    const project = attempts[0]?.project ?? '';
    return {
      ...p,
      ...(host
        ? {
            gerritUrl: `${(host.baseUrl ?? `https://${host.host}`).replace(/\/$/, '')}/c/${project}/+/${p.change}/${p.patchset}`,
          }
        : {}),
      patchsets: [...new Set(all.map((v) => v.patchset))].sort((a, b) => b - a),
      attempts: attempts.map((v) => ({
        verification: v,
        builds: v.platforms.flatMap((x) => byId.get(x.buildId) ?? []),
      })),
    };
  });
};
