/**
 * Response schemas the web UI's read endpoints share (issue 14). The route files export their own
 * request and response schemas built from these; the UI and the tests import the inferred types.
 */
import { z } from 'zod';
import { BUILD_STATUSES } from '../domain/build.ts';
import { ROLES } from '../config/schema.ts';

/** `{project, bucket, builder}` as answers carry it. */
export const builderIdOut = z.object({ project: z.string(), bucket: z.string(), builder: z.string() });

/** A build without input, output and events: what lists, grids and live updates carry. */
export const buildSummarySchema = z.object({
  id: z.string(),
  builder: builderIdOut,
  number: z.number().int(),
  status: z.enum(BUILD_STATUSES),
  statusDetails: z.object({
    timeout: z.boolean().optional(),
    resourceExhaustion: z.boolean().optional(),
    leaseExpired: z.boolean().optional(),
  }),
  tags: z.array(z.string()),
  priority: z.number().int(),
  dimensions: z.array(z.string()),
  createTime: z.string(),
  startTime: z.string().optional(),
  endTime: z.string().optional(),
  updateTime: z.string(),
  summaryMarkdown: z.string().optional(),
  url: z.string().optional(),
  canceledBy: z.string().optional(),
  createdBy: z.string().optional(),
  leaseHolder: z.string().optional(),
  leaseExpiration: z.string().optional(),
  leaseGeneration: z.number().int(),
  leaseResets: z.number().int(),
  version: z.number().int(),
});
export type BuildSummaryOut = z.infer<typeof buildSummarySchema>;

/** A stored change verification (see src/domain/verification.ts). */
export const verificationSchema = z.object({
  id: z.string(),
  workflowId: z.string(),
  runId: z.string(),
  host: z.string(),
  project: z.string(),
  branch: z.string(),
  change: z.number().int(),
  patchset: z.number().int(),
  phase: z.enum(['EVALUATING', 'NOT_TRIGGERED', 'BUILDING', 'ENDED']),
  reason: z.string(),
  mode: z.string().optional(),
  platforms: z.array(
    z.object({
      name: z.string(),
      builder: builderIdOut,
      buildId: z.string(),
      number: z.number().int(),
      status: z.enum(BUILD_STATUSES),
      holder: z.string().optional(),
    }),
  ),
  merged: z.boolean(),
  canceled: z.string().optional(),
  vote: z.number().int().optional(),
  messages: z.array(z.string()),
  createTime: z.string(),
  updateTime: z.string(),
  version: z.number().int(),
});
export type VerificationOut = z.infer<typeof verificationSchema>;

/** A role on a bucket. */
export const roleSchema = z.enum(ROLES);

/** `project/bucket` query parameter. */
export const bucketParam = z
  .string()
  .max(201)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/, 'a "project/bucket"');

/** Takes the last value of a repeated query parameter. */
export const lastOf = <T extends z.ZodType>(s: T) => z.preprocess((v) => (Array.isArray(v) ? v[v.length - 1] : v), s);
