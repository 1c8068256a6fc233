/**
 * Scheduling a build of a Swarming bucket: snapshot the bucket's config and the task templates into
 * the build's `SwarmingBuildSpec`, and dry-run the task request so a bad override, a forced canary
 * with no canary template, or a template the builder cannot fill is refused at schedule time
 * (INVALID_ARGUMENT) instead of failing the build later.
 */
import { type Registry } from '../config/load.ts';
import { type BuilderConfig } from '../config/schema.ts';
import { kilnHostnameOf } from '../config/swarming.ts';
import { bucketPath, builderPath, type BuilderId } from '../domain/build.ts';
import { KilnError } from '../domain/errors.ts';
import { prepareSwarmingTask, type SwarmingBuildSpec } from '../domain/swarming/build.ts';
import { parseOverrideBuilderCfg } from '../domain/swarming/config.ts';
import { builderHash } from '../swarming/client.ts';

/** The per-build Swarming options of a schedule request. */
export interface SwarmingScheduleOptions {
  /** JSONPB of a builder applied last, e.g. `{"dimensions": ["cores:64"]}`. */
  overrideBuilderCfg?: Record<string, unknown>;
  /** true → canary task template (must exist); false → never; absent → the bucket's percentage. */
  canaryTemplate?: boolean;
}

/** What the service needs to schedule a Swarming build. */
export interface SwarmingPlan {
  spec: SwarmingBuildSpec;
  /** The build's priority, dimensions and Kiln-side timeouts, in lease-mode builder terms. */
  builderConfig: BuilderConfig;
}

/**
 * The plan for scheduling `req` when its bucket is a Swarming bucket; undefined for lease-mode
 * buckets (where `swarming` options are refused). Throws BUILDER_NOT_FOUND or INVALID_ARGUMENT.
 */
export function planSwarmingBuild(
  registry: Registry,
  req: {
    builder: BuilderId;
    swarming?: SwarmingScheduleOptions;
    dimensions?: string[];
    tags?: string[];
    properties?: Record<string, unknown>;
    priority?: number;
  },
): SwarmingPlan | undefined {
  const bucket = registry.bucket(bucketPath(req.builder))?.swarming;
  if (!bucket) {
    if (req.swarming !== undefined) {
      throw new KilnError('INVALID_ARGUMENT', `swarming: ${bucketPath(req.builder)} is not a Swarming bucket`);
    }
    return undefined;
  }
  const builder = bucket.builders.find((b) => b.name === req.builder.builder);
  if (!builder) throw new KilnError('BUILDER_NOT_FOUND', `builder ${builderPath(req.builder)} is not configured`);
  if (req.dimensions !== undefined && req.dimensions.length > 0) {
    throw new KilnError(
      'INVALID_ARGUMENT',
      'dimensions: a Swarming build takes its dimensions from the builder; use swarming.overrideBuilderCfg.dimensions',
    );
  }
  if (req.priority === 0) {
    throw new KilnError('INVALID_ARGUMENT', 'priority: a Swarming task takes 1 (most important) to 255');
  }
  const service = registry.config.swarming;
  const templates = registry.config.swarmingTemplates;
  if (!service || !templates) throw new KilnError('INTERNAL', 'Swarming bucket without loaded task templates');
  const spec: SwarmingBuildSpec = {
    hostname: bucket.hostname,
    bucket: { ...bucket, builders: [builder] },
    templates,
    builderHash: builderHash(req.builder.bucket, builder.name),
    kilnHostname: kilnHostnameOf(registry.config),
    syncIntervalMs: service.syncIntervalSecs * 1000,
    ...(service.pubsubTopic !== undefined ? { pubsubTopic: service.pubsubTopic } : {}),
    ...(req.swarming?.overrideBuilderCfg !== undefined ? { overrideBuilderCfg: req.swarming.overrideBuilderCfg } : {}),
    ...(req.swarming?.canaryTemplate !== undefined ? { canaryTemplate: req.swarming.canaryTemplate } : {}),
    ...(req.priority !== undefined ? { priority: req.priority } : {}),
  };
  // The workflow trusts the override (no zod in workflow code), so it is checked here, once.
  parseOverrideBuilderCfg(spec.overrideBuilderCfg);
  // Dry run with the template this build may use; the workflow renders the real one.
  const { request } = prepareSwarmingTask(
    spec,
    {
      id: '1',
      builder: req.builder,
      tags: [...(req.tags ?? []), `builder:${req.builder.builder}`],
      input: { properties: req.properties ?? {} },
    },
    spec.canaryTemplate === true ? 0 : 100,
  );
  const slice = request.task_slices[0]!;
  return {
    spec,
    builderConfig: {
      name: builder.name,
      dimensions: slice.properties.dimensions.map((d) => `${d.key}:${d.value}`),
      priority: request.priority ?? 30,
      leaseDurationSecs: 60,
      maxLeaseDurationSecs: 60,
      maxLeaseResets: 0,
      schedulingTimeoutSecs: slice.expiration_secs,
      executionTimeoutSecs: slice.properties.execution_timeout_secs,
      properties: {},
    },
  };
}
