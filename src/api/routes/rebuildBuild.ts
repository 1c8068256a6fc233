/**
 * POST /api/v1/builds/:id/rebuild `{requestId?}` — schedules a new build of the same builder with the
 * same inputs: input properties, Gerrit changes, tags (less the ones Kiln adds itself), priority and
 * the dimensions added at schedule time. The new build is tagged `rebuild_of:<id>` (SCHEDULER).
 */
import { z } from 'zod';
import { bucketPath } from '../../domain/build.ts';
import { RESERVED_PROPERTIES } from '../../builds/service.ts';
import { callerName, requireRole } from '../auth.ts';
import { type Route } from '../context.ts';
import { buildSchema } from '../uiSchemas.ts';
import { buildIdParams } from '../schemas.ts';
import { parseInput } from '../validate.ts';

export const rebuildBuildBody = z.object({ requestId: z.string().min(1).max(200).optional() }).strict();

export type RebuildBuildRequest = z.input<typeof rebuildBuildBody>;
/** The new build. */
export const rebuildBuildResponse = buildSchema;
export type RebuildBuildResponse = z.infer<typeof rebuildBuildResponse>;

/** Tags Kiln puts on a build itself (schedule, Swarming, rebuild): a rebuild gets fresh ones. */
const KILN_TAG = /^(builder|rebuild_of|swarming_hostname|swarming_task_id|swarming_tag|swarming_dimension):/;

export const rebuildBuild: Route = (app, ctx) => {
  app.post('/api/v1/builds/:id/rebuild', async (req): Promise<RebuildBuildResponse> => {
    const { id } = parseInput(buildIdParams, req.params, 'params');
    const body = parseInput(rebuildBuildBody, req.body ?? {}, 'body');
    const old = await ctx.service.get(id);
    requireRole(ctx.registry, req, bucketPath(old.builder), 'SCHEDULER');
    const cfgDimensions = new Set(ctx.registry.builder(old.builder)?.dimensions ?? []);
    const properties = { ...old.input.properties };
    for (const k of RESERVED_PROPERTIES) delete properties[k];
    return ctx.service.schedule({
      builder: old.builder,
      properties,
      tags: [...old.tags.filter((t) => !KILN_TAG.test(t)), `rebuild_of:${old.id}`],
      priority: old.priority,
      dimensions: old.dimensions.filter((d) => !cfgDimensions.has(d)),
      ...(old.input.gerritChanges ? { gerritChanges: old.input.gerritChanges } : {}),
      ...(old.input.changes ? { changes: old.input.changes } : {}), // chromium2: schedule inputs
      ...(old.input.gitilesCommit ? { gitilesCommit: old.input.gitilesCommit } : {}),
      ...(body.requestId !== undefined ? { requestId: `rebuild/${old.id}/${body.requestId}` } : {}),
      createdBy: callerName(ctx.registry, req),
    });
  });
};
