/**
 * POST /api/v1/builds/:id/update — the lease holder reports the build's steps and output properties while it runs
 * (Buildbucket v2 UpdateBuild): each field given replaces the stored one as a whole. The lease key is the
 * capability, as for log uploads: the current lease, or the one current when the build ended. Over the size limits
 * the answer is PAYLOAD_TOO_LARGE naming the field, and nothing is stored.
 */
import { z } from 'zod';
import { BUILD_STATUSES } from '../../domain/build.ts';
import { KilnError } from '../../domain/errors.ts';
import { STEP_LIMITS, stepsProblem } from '../../domain/steps.ts';
import { leaseCall } from '../clientLimit.ts';
import { type Route } from '../context.ts';
import { buildSchema } from '../uiSchemas.ts';
import { buildIdParams, leaseKeySchema, propertiesSchema, timestampSchema, urlSchema } from '../schemas.ts';
import { parseInput } from '../validate.ts';

/** One step (Buildbucket v2 `Step`); `a|b` is step `b` nested in step `a`. */
export const buildStepSchema = z
  .object({
    name: z.string().min(1).max(1024),
    status: z.enum(BUILD_STATUSES),
    startTime: timestampSchema.optional(),
    endTime: timestampSchema.optional(),
    summaryMarkdown: z.string().max(4096).optional(),
    logs: z
      .array(z.object({ name: z.string().min(1).max(256), url: urlSchema }).strict())
      .max(32)
      .optional(),
  })
  .strict();

export const updateBuildBody = z
  .object({
    leaseKey: leaseKeySchema,
    steps: z.array(buildStepSchema).max(STEP_LIMITS.maxSteps).optional(),
    output: z.object({ properties: propertiesSchema.optional() }).strict().optional(),
  })
  .strict();
export type UpdateBuildBody = z.infer<typeof updateBuildBody>;
export type UpdateBuildRequest = z.input<typeof updateBuildBody>;
export const updateBuildResponse = buildSchema;
export type UpdateBuildResponse = z.infer<typeof updateBuildResponse>;

/** Throws PAYLOAD_TOO_LARGE when `value` as JSON is over `max` bytes. */
function checkSize(field: string, value: unknown, max: number): void {
  if (value === undefined) return;
  const bytes = Buffer.byteLength(JSON.stringify(value), 'utf8');
  if (bytes > max) {
    throw new KilnError('PAYLOAD_TOO_LARGE', `${field}: ${bytes} bytes of JSON, over the limit of ${max} bytes`);
  }
}

export const updateBuild: Route = (app, ctx) => {
  app.post('/api/v1/builds/:id/update', async (req): Promise<UpdateBuildResponse> =>
    leaseCall(app, ctx, req, async () => {
      const { id } = parseInput(buildIdParams, req.params, 'params');
      const body = parseInput(updateBuildBody, req.body, 'body');
      if (body.steps) {
        const problem = stepsProblem(body.steps);
        if (problem) throw new KilnError('INVALID_ARGUMENT', `body.steps[${problem[0]}].name: ${problem[1]}`);
      }
      checkSize('body.steps', body.steps, STEP_LIMITS.maxStepsBytes);
      checkSize('body.output.properties', body.output?.properties, STEP_LIMITS.maxOutputPropertiesBytes);
      return ctx.service.updateProgress(id, {
        leaseKey: body.leaseKey,
        ...(body.steps !== undefined ? { steps: body.steps } : {}),
        ...(body.output?.properties !== undefined ? { outputProperties: body.output.properties } : {}),
      });
    }),
  );
};
