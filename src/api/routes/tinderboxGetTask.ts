/**
 * POST /api/v1/tinderbox/get-task — peek + lease + start in one call (WRITER on the build's
 * bucket). `platform` is a builder name or the `platform:<X>` dimension; each capability maps to
 * the dimension `cap:<capability>`, and only builds whose dimensions the tinderbox covers are
 * handed out. Answers `{task: null}` when nothing is pending.
 */
import { z } from 'zod';
import { rank } from '../../config/load.ts';
import { getTask } from '../../builds/tinderbox.ts';
import { authenticate } from '../auth.ts';
import { type Route } from '../context.ts';
import { namePart } from '../schemas.ts';
import { builderIdOut } from '../uiSchemas.ts';
import { parseInput } from '../validate.ts';
import { KilnError } from '../../domain/errors.ts';

export const getTaskBody = z
  .object({
    platform: namePart,
    tinderboxId: z.string().min(1).max(200),
    capabilities: z.array(namePart).max(64).default([]),
  })
  .strict();
export type GetTaskRequest = z.input<typeof getTaskBody>;

/** A leased, started build for the tinderbox, or `null` when nothing it can run is pending. */
export const getTaskResponse = z.object({
  task: z
    .object({
      buildId: z.string(),
      leaseKey: z.string(),
      leaseExpiration: z.string(),
      builder: builderIdOut,
      number: z.number().int(),
      buildset: z.string().optional(),
      gerrit: z
        .object({
          host: z.string(),
          project: z.string(),
          change: z.number().int(),
          patchset: z.number().int(),
          ref: z.string().optional(),
          revision: z.string().optional(),
          url: z.string().optional(),
          branch: z.string().optional(),
        })
        .optional(),
      properties: z.record(z.string(), z.unknown()),
    })
    .nullable(),
});
export type GetTaskResponse = z.infer<typeof getTaskResponse>;

export const tinderboxGetTask: Route = (app, ctx) => {
  app.post('/api/v1/tinderbox/get-task', async (req): Promise<GetTaskResponse> => {
    const body = parseInput(getTaskBody, req.body, 'body');
    let buckets = ctx.registry.bucketPaths();
    if (!ctx.registry.authDisabled) {
      const token = authenticate(ctx.registry, req);
      buckets = buckets.filter((p) => {
        const r = ctx.registry.roleOf(p, token);
        return r !== undefined && rank(r) >= rank('WRITER');
      });
      if (buckets.length === 0) throw new KilnError('PERMISSION_DENIED', 'WRITER role on some bucket is required');
    }
    const task = await getTask(ctx.service, { ...body, buckets });
    return { task: task ?? null };
  });
};
