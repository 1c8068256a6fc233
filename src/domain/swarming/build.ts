/**
 * What a Swarming-mode build carries for its whole life (`SwarmingBuildSpec`, fixed at schedule time)
 * and how it becomes a Swarming `NewTaskRequest`. Pure, so the build workflow renders the request
 * itself (deterministically) and the build service can dry-run it to refuse a bad build at schedule.
 */
import { type Build } from '../build.ts';
import type { SwarmingBucketConfig, SwarmingServiceConfig } from './config.ts';
import { validatedOverrideBuilderCfg } from './keys.ts';
import { mergeBuilderConfig } from './merge.ts';
import {
  type ChosenTaskTemplate,
  chooseTaskTemplate,
  newTaskRequest,
  type SwarmingNewTaskRequest,
} from './template.ts';

/** A Swarming build's fixed inputs: a snapshot of its bucket's config and of the service settings. */
export interface SwarmingBuildSpec {
  /** The bucket's Swarming server (`swarming.hostname`). */
  hostname: string;
  /** The bucket's `swarming` block, trimmed to this build's builder (defaults and mixins kept). */
  bucket: SwarmingBucketConfig;
  /** The service's task templates as loaded at schedule time. */
  templates: SwarmingServiceConfig;
  /**
   * The build's `swarming.overrideBuilderCfg` as the request gave it (JSONPB names), applied last.
   * The service validates it (`parseOverrideBuilderCfg`) before the build exists.
   */
  overrideBuilderCfg?: unknown;
  /** The build's `swarming.canaryTemplate`: true forces the canary, false forbids it, absent → percentage. */
  canaryTemplate?: boolean;
  /** `builder_hash` template parameter, computed Node-side (sha256) by the service. */
  builderHash: string;
  /** Kiln's hostname, tagged on the task as `buildbucket_hostname`. */
  kilnHostname: string;
  /** Pub/Sub topic for task notifications; absent → the build relies on polling. */
  pubsubTopic?: string;
  /** How long the build waits for a notification before it polls the task anyway. */
  syncIntervalMs: number;
  /** The priority the schedule request asked for (1–255); the task gets it instead of the builder's or template's. */
  priority?: number;
}

/** A rendered request and the template it came from. */
export interface PreparedTask {
  request: SwarmingNewTaskRequest;
  template: Pick<ChosenTaskTemplate, 'canary' | 'revision'>;
}

/**
 * Merges the builder config, picks the task template (`random100` in [0, 100) decides the canary when
 * the build does not force it) and renders the build's `NewTaskRequest`. Throws `KilnError`
 * (`INVALID_ARGUMENT`, `BUILDER_NOT_FOUND`) when the config or the template is bad. The spec's
 * override is trusted: validate it with `parseOverrideBuilderCfg` first.
 */
export function prepareSwarmingTask(
  spec: SwarmingBuildSpec,
  build: Pick<Build, 'id' | 'builder' | 'tags' | 'input'>,
  random100: number,
): PreparedTask {
  const builderCfg = mergeBuilderConfig(
    spec.bucket,
    build.builder.builder,
    validatedOverrideBuilderCfg(spec.overrideBuilderCfg),
  );
  const template = chooseTaskTemplate(spec.templates, {
    canaryPercentage: spec.bucket.task_template_canary_percentage,
    random100,
    ...(spec.canaryTemplate !== undefined ? { canaryTemplate: spec.canaryTemplate } : {}),
  });
  const request = newTaskRequest({
    buildId: build.id,
    builder: build.builder,
    builderCfg,
    builderHash: spec.builderHash,
    swarmingHostname: spec.hostname,
    kilnHostname: spec.kilnHostname,
    template,
    buildTags: build.tags,
    inputProperties: build.input.properties,
    ...(spec.pubsubTopic !== undefined ? { pubsub: { topic: spec.pubsubTopic } } : {}),
    ...(spec.priority !== undefined ? { priority: spec.priority } : {}),
  });
  return { request, template: { canary: template.canary, revision: template.revision } };
}
