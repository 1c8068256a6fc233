/** Request pieces several routes share. */
import { z } from 'zod';
import { isBuildId } from '../domain/buildId.ts';
import { BUILDER_NAME_RE, BUILDER_NAME_RULE } from '../domain/names.ts';

const part = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, ".", "_", "-"');

/** A builder's name (LUCI's rule, shared with the config). */
export const builderNameSchema = z.string().regex(BUILDER_NAME_RE, BUILDER_NAME_RULE);

/** `{project, bucket, builder}`. */
export const builderIdSchema = z.object({ project: part, bucket: part, builder: builderNameSchema }).strict();

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
