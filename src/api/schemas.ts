/** Request pieces several routes share (response pieces are in uiSchemas.ts). */
import { z } from 'zod';
import { isBuildId } from '../domain/buildId.ts';
import { BUILDER_NAME_RE, BUILDER_NAME_RULE } from '../domain/names.ts';

/** A project, bucket, platform or capability name: letters, digits, ".", "_", "-", at most 100. */
export const namePart = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, ".", "_", "-"');

/** A query parameter given once: a repeated one (`?limit=1&limit=2`) counts by its last value. */
export const lastOf = <T extends z.ZodType>(s: T) => z.preprocess((v) => (Array.isArray(v) ? v[v.length - 1] : v), s);

/** A builder's name (LUCI's rule, shared with the config). */
export const builderNameSchema = z.string().regex(BUILDER_NAME_RE, BUILDER_NAME_RULE);

/** `{project, bucket, builder}`. */
export const builderIdSchema = z.object({ project: namePart, bucket: namePart, builder: builderNameSchema }).strict();

/** `:id` path parameter. */
export const buildIdParams = z.object({
  id: z.string().refine(isBuildId, 'not a build ID (a positive int64 in decimal)'),
});

/** A `key:value` tag. */
export const tagSchema = z
  .string()
  .max(1024)
  .regex(/^[A-Za-z0-9_.\-/]+:[\s\S]*$/, 'tags are "key:value" strings');

/** A `key:value` dimension. */
export const dimensionSchema = z
  .string()
  .max(512)
  .regex(/^[^:\s]+:\S.*$/, 'dimensions are "key:value" strings');

/** A lease key handed out by `lease`. */
export const leaseKeySchema = z.string().min(1).max(200);

/** Lease length in seconds (up to 7 days; the builder caps it further). */
export const leaseDurationSecs = z
  .number()
  .int()
  .positive()
  .max(7 * 24 * 3600);

/** JSON object of properties (bounded by the body limit). */
export const propertiesSchema = z.record(z.string().max(256), z.unknown());

/** A URL a runner gives for the build. */
export const urlSchema = z.string().url().max(2048);

/** Largest int64: build IDs and cursors are int64 in storage. */
const MAX_INT64 = 2n ** 63n - 1n;

/** A `cursor` from a previous page: a build ID (positive int64 in decimal). */
export const cursorSchema = z
  .string()
  .regex(/^[0-9]{1,19}$/, 'a cursor from a previous page')
  .refine((s) => !/^[0-9]{1,19}$/.test(s) || BigInt(s) <= MAX_INT64, 'a cursor from a previous page (an int64)');

/** An RFC 3339 time storage can compare with: offset allowed, year 0001 or later. */
export const timestampSchema = z.iso
  .datetime({ offset: true })
  .refine((s) => !s.startsWith('0000-'), 'year 0000 is out of range (0001–9999)');

// ---- chromium2: schedule inputs (Buildbot-buildbucket `changes`, Buildbucket v2 `gerritChanges`, `gitilesCommit`) ----

/** A Gerrit or git host name as in buildsets (`chromium-review.googlesource.com`, optionally `:port`). */
const hostSchema = z
  .string()
  .max(253)
  .regex(/^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?$/, 'a host name without scheme or path');

/** One entry of `changes`: seed 000's change dict (plus `repo_url`, which LUCI's CQ sends). */
export const buildChangeSchema = z
  .object({
    id: z.string().max(256).optional(),
    revision: z.string().max(256).optional(),
    author: z
      .object({ email: z.string().max(320).optional(), name: z.string().max(256).optional() })
      .strict()
      .optional(),
    create_ts: z.number().int().nonnegative().optional(),
    files: z
      .array(z.object({ path: z.string().min(1).max(4096) }).strict())
      .max(1000)
      .optional(),
    message: z.string().max(65536).optional(),
    branch: z.string().max(256).optional(),
    url: z.string().max(2048).optional(),
    project: z.string().max(256).optional(),
    repo_url: z.string().max(2048).optional(),
  })
  .strict();

/** Buildbucket v2 `GerritChange`. */
export const gerritChangeSchema = z
  .object({
    host: hostSchema,
    project: z.string().min(1).max(256),
    change: z
      .number()
      .int()
      .positive()
      .max(2 ** 31 - 1),
    patchset: z
      .number()
      .int()
      .positive()
      .max(2 ** 31 - 1),
  })
  .strict();

/** Buildbucket v2 `GitilesCommit`: `ref` a full ref, `id` a full commit SHA. */
export const gitilesCommitSchema = z
  .object({
    host: hostSchema,
    project: z.string().min(1).max(256),
    ref: z
      .string()
      .max(256)
      .regex(/^refs\//, 'a full ref (refs/…)'),
    id: z.string().regex(/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/, 'a full commit SHA (40 or 64 lower-case hex digits)'),
  })
  .strict();

/** `host/change/patchset`, as `--gerrit-change` and `?gerritChange=` take it. */
export const gerritChangeRefSchema = z
  .string()
  .max(300)
  .regex(/^[^/\s]+\/[0-9]+\/[0-9]+$/, 'host/change/patchset, e.g. chromium-review.googlesource.com/375219/1');
