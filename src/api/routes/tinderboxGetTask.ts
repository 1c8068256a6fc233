/**
 * POST /api/v1/tinderbox/get-task — peek + lease + start in one call (WRITER on the build's
 * bucket). `platform` is a builder name or the `platform:<X>` dimension; each capability maps to
 * the dimension `cap:<capability>`, and only builds whose dimensions the tinderbox covers are
 * handed out. Answers `{task: null}` when nothing is pending.
 */
import { z } from 'zod';
import { rank } from '../../config/load.ts';
import { getTask, type TinderboxTask } from '../../builds/tinderbox.ts';
import { bearerToken } from '../auth.ts';
import { type Route } from '../context.ts';
import { parseInput } from '../validate.ts';
import { KilnError } from '../../domain/errors.ts';

const word = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, ".", "_", "-"');

export const getTaskBody = z
  .object({
    platform: word,
    tinderboxId: z.string().min(1).max(200),
    capabilities: z.array(word).max(64).default([]),
  })
  .strict();

export interface GetTaskResponse {
  task: TinderboxTask | null;
}

export const tinderboxGetTask: Route = (app, ctx) => {
  app.post('/api/v1/tinderbox/get-task', async (req): Promise<GetTaskResponse> => {
    const body = parseInput(getTaskBody, req.body, 'body');
    let buckets = ctx.registry.bucketPaths();
    if (!ctx.registry.authDisabled) {
      const token = bearerToken(req);
      if (token === undefined) throw new KilnError('UNAUTHENTICATED', 'a bearer token is required');
      if (!ctx.registry.knowsToken(token)) throw new KilnError('UNAUTHENTICATED', 'unknown token');
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
