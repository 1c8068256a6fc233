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
