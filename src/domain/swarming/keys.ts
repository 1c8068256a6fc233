/**
 * The key handling Swarming config validation and the builder merge share: `key:value` pairs
 * (dimensions, tags) and the JSONPB field names of `overrideBuilderCfg`. No zod here, nor in anything
 * the workflows import: the worker evaluates every module of the workflow bundle once per workflow
 * execution, and evaluating zod and its schemas there costs CPU on every build.
 */
import type { OverrideBuilderCfg } from './config.ts';

/** Splits `key:value` at the first colon; undefined when there is no colon. */
export function splitKeyValue(s: string): { key: string; value: string } | undefined {
  const i = s.indexOf(':');
  return i < 0 ? undefined : { key: s.slice(0, i), value: s.slice(i + 1) };
}

/** JSONPB field names (lowerCamelCase) accepted in `overrideBuilderCfg` besides the proto names. */
const OVERRIDE_JSON_NAMES: Record<string, string> = {
  swarmingTags: 'swarming_tags',
  executionTimeoutSecs: 'execution_timeout_secs',
  expirationSecs: 'expiration_secs',
  serviceAccount: 'service_account',
};

/**
 * Renames the top-level JSONPB (lowerCamelCase) fields of an `overrideBuilderCfg` to their proto
 * names; anything but a plain object is returned as is. Checks nothing: `OverrideBuilderCfgSchema`
 * runs it before validating.
 */
export function overrideProtoNames(v: unknown): unknown {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(Object.entries(v).map(([k, x]) => [OVERRIDE_JSON_NAMES[k] ?? k, x]))
    : v;
}

/**
 * A build's `overrideBuilderCfg` as `mergeBuilderConfig` takes it, for one that was validated
 * before (the build service runs `parseOverrideBuilderCfg` at schedule, before the workflow starts).
 * Only its field names are normalized: the parse adds no defaults and converts no values, so merging
 * this gives what merging the parsed override gives. Absent (`undefined` or `null`) → undefined.
 */
export function validatedOverrideBuilderCfg(raw: unknown): OverrideBuilderCfg | undefined {
  return raw === undefined || raw === null ? undefined : (overrideProtoNames(raw) as OverrideBuilderCfg);
}
