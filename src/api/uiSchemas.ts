/**
 * Response schemas routes share: builds, build summaries, verifications. The route files export
 * their own request and response schemas built from these; the client, the UI and the tests use
 * the inferred types (`z.infer`), and the route tests parse real answers with them.
 */
import { z } from 'zod';
import { type Build, BUILD_STATUSES } from '../domain/build.ts';
import { ERROR_CODES } from '../domain/errors.ts';
import { ROLES } from '../config/schema.ts';
import { buildChangeSchema } from './schemas.ts';

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

const BUILD_EVENT_KINDS = [
  'LEASED',
  'STARTED',
  'LEASE_EXPIRED',
  'STALE_REPORT_REFUSED',
  'CANCEL_REQUESTED',
  'ENDED',
  'PRIORITY_CHANGED',
  'SWARMING_TASK',
  'STORAGE_REFUSED',
] as const;

/** A whole build, as every route that answers one sends it. */
export const buildSchema = buildSummarySchema.extend({
  input: z.object({
    properties: z.record(z.string(), z.unknown()),
    changes: z.array(buildChangeSchema).optional(),
    gerritChanges: z
      .array(z.object({ host: z.string(), project: z.string(), change: z.number().int(), patchset: z.number().int() }))
      .optional(),
    gitilesCommit: z.object({ host: z.string(), project: z.string(), ref: z.string(), id: z.string() }).optional(),
  }),
  output: z
    .object({ properties: z.record(z.string(), z.unknown()).optional(), summaryMarkdown: z.string().optional() })
    .optional(),
  events: z.array(z.object({ time: z.string(), kind: z.enum(BUILD_EVENT_KINDS), message: z.string() })),
  steps: z
    .array(
      z.object({
        name: z.string(),
        status: z.enum(BUILD_STATUSES),
        startTime: z.string().optional(),
        endTime: z.string().optional(),
        summaryMarkdown: z.string().optional(),
        logs: z.array(z.object({ name: z.string(), url: z.string() })).optional(),
      }),
    )
    .optional(),
});
export type BuildOut = z.infer<typeof buildSchema>;

/** The schema and the domain's `Build` describe the same thing: this stops compiling when they drift. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
export const BUILD_SCHEMA_MATCHES_BUILD: Same<BuildOut, Build> = true;
/** Optional fields pass `Same` either way: their names must match too. */
export const BUILD_SCHEMA_HAS_BUILD_KEYS: Same<keyof BuildOut, keyof Build> = true;
export const BUILD_SCHEMA_HAS_INPUT_KEYS: Same<keyof BuildOut['input'], keyof Build['input']> = true;

/** `{code, message}`: an error answer, or one item's error in a batch answer. */
export const errorBodySchema = z.object({ code: z.enum(ERROR_CODES), message: z.string() });

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
