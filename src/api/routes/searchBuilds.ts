/**
 * GET /api/v1/builds — search, newest first, paged by `cursor`. Filters: project, bucket, builder,
 * status, tag (repeatable; all must match), buildset, createdAfter/createdBefore (RFC 3339), createdBy,
 * gerritChange (`host/change/patchset`, repeatable).
 * Only buckets the caller may read are searched.
 */
import { z } from 'zod';
import { BUILD_STATUSES } from '../../domain/build.ts';
import { KilnError } from '../../domain/errors.ts';
import { readableBuckets } from '../auth.ts';
import { type Route } from '../context.ts';
import { buildSchema } from '../uiSchemas.ts';
import {
  builderNameSchema,
  cursorSchema,
  gerritChangeRefSchema,
  lastOf,
  tagSchema,
  timestampSchema,
} from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const searchBuildsQuery = z
  .object({
    project: lastOf(z.string().max(100)).optional(),
    bucket: lastOf(z.string().max(100)).optional(),
    builder: lastOf(builderNameSchema).optional(),
    status: lastOf(z.enum(BUILD_STATUSES)).optional(),
    tag: z
      .preprocess((v) => (v === undefined ? undefined : Array.isArray(v) ? v : [v]), z.array(tagSchema).max(64))
      .optional(),
    buildset: lastOf(z.string().max(1024)).optional(),
    createdAfter: lastOf(timestampSchema).optional(),
    createdBefore: lastOf(timestampSchema).optional(),
    createdBy: lastOf(z.string().min(1).max(200)).optional(),
    /** `host/change/patchset`: builds of that Gerrit patch set (its `buildset` tag; repeatable, all must match). */
    gerritChange: z
      .preprocess(
        (v) => (v === undefined ? undefined : Array.isArray(v) ? v : [v]),
        z.array(gerritChangeRefSchema).max(16),
      )
      .optional(),
    limit: lastOf(z.coerce.number().int().min(1).max(1000)).optional(),
    cursor: lastOf(cursorSchema).optional(),
  })
  .strict();

/** One page, newest first; `nextCursor` asks for the next. */
export const searchBuildsResponse = z.object({ builds: z.array(buildSchema), nextCursor: z.string().optional() });
export type SearchBuildsResponse = z.infer<typeof searchBuildsResponse>;

export const searchBuilds: Route = (app, ctx) => {
  app.get('/api/v1/builds', async (req): Promise<SearchBuildsResponse> => {
    const q = parseInput(searchBuildsQuery, req.query, 'query');
    let buckets = readableBuckets(ctx.registry, req);
    if (q.project) buckets = buckets.filter((b) => b.startsWith(`${q.project}/`));
    if (q.bucket) buckets = buckets.filter((b) => b.endsWith(`/${q.bucket}`));
    if (buckets.length === 0 && (q.project || q.bucket)) {
      throw new KilnError('PERMISSION_DENIED', 'no readable bucket matches project/bucket');
    }
    return ctx.service.search({
      buckets,
      builder: q.builder ? { builder: q.builder } : undefined,
      status: q.status,
      tags: [...(q.tag ?? []), ...(q.gerritChange ?? []).map((c) => `buildset:patch/gerrit/${c}`)],
      buildset: q.buildset,
      createdAfter: q.createdAfter,
      createdBefore: q.createdBefore,
      createdBy: q.createdBy,
      limit: q.limit,
      cursor: q.cursor,
    });
  });
};
