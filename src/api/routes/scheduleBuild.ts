/** POST /api/v1/builds — schedule a build (SCHEDULER). `requestId` makes retries return the same build. */
import { z } from 'zod';
import { bucketPath } from '../../domain/build.ts';
import { callerName, requireRole } from '../auth.ts';
import { type Route } from '../context.ts';
import { buildSchema } from '../uiSchemas.ts';
import {
  buildChangeSchema,
  builderIdSchema,
  dimensionSchema,
  gerritChangeSchema,
  gitilesCommitSchema,
  propertiesSchema,
  tagSchema,
} from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const scheduleBuildBody = z
  .object({
    builder: builderIdSchema,
    properties: propertiesSchema.optional(),
    tags: z.array(tagSchema).max(256).optional(),
    priority: z.number().int().min(0).max(255).optional(),
    dimensions: z.array(dimensionSchema).max(64).optional(),
    requestId: z.string().min(1).max(200).optional(),
    schedulingTimeoutSecs: z
      .number()
      .int()
      .positive()
      .max(7 * 24 * 3600)
      .optional(),
    executionTimeoutSecs: z
      .number()
      .int()
      .positive()
      .max(7 * 24 * 3600)
      .optional(),
    /** The changes the build is for (Buildbot-buildbucket); their author emails become `blamelist`. */
    changes: z.array(buildChangeSchema).max(100).optional(),
    /** Buildbucket v2 inputs; each becomes a `buildset` tag. */
    gerritChanges: z.array(gerritChangeSchema).max(100).optional(),
    gitilesCommit: gitilesCommitSchema.optional(),
    /** Swarming buckets only: a JSONPB builder override applied last, and the canary template choice. */
    swarming: z
      .object({
        overrideBuilderCfg: z.record(z.string(), z.unknown()).optional(),
        canaryTemplate: z.boolean().optional(),
      })
      .strict()
      .optional(),
  })
  .strict();
export type ScheduleBuildRequest = z.input<typeof scheduleBuildBody>;
/** The new build, or the one an earlier request with the same `requestId` made. */
export const scheduleBuildResponse = buildSchema;
export type ScheduleBuildResponse = z.infer<typeof scheduleBuildResponse>;

export const scheduleBuild: Route = (app, ctx) => {
  app.post('/api/v1/builds', async (req): Promise<ScheduleBuildResponse> => {
    const body = parseInput(scheduleBuildBody, req.body, 'body');
    requireRole(ctx.registry, req, bucketPath(body.builder), 'SCHEDULER');
    return ctx.service.schedule({ ...body, createdBy: callerName(ctx.registry, req) });
  });
};
