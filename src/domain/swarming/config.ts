/**
 * Swarming-mode configuration (Swarmbucket semantics): a bucket's `swarming` block, the builders and
 * mixins inside it, the per-build `overrideBuilderCfg`, and the service-level task templates.
 * Field names follow LUCI's `project_config.proto`. Validation runs Node side (config load, the
 * build service): workflow code imports only types from here, so zod stays out of its bundle.
 */
import { z } from 'zod';
import { BUILDER_NAME_RE, BUILDER_NAME_RULE } from '../names.ts';
import { KilnError } from '../errors.ts';
import { formatZodError } from '../zodIssues.ts';
import { overrideProtoNames, splitKeyValue } from './keys.ts';

/** Swarming's dimension key pattern (`swarming/server/validate`). */
const DIMENSION_KEY_RE = /^[a-zA-Z_.-][0-9a-zA-Z_.-]*$/;
/** Swarming's named-cache name pattern. */
const CACHE_NAME_RE = /^[a-z0-9_]{1,128}$/;
/** An email-shaped service account, as Swarming accepts besides `bot` and `none`. */
const SERVICE_ACCOUNT_RE = /^[0-9a-zA-Z_\-.+%]+@[0-9a-zA-Z_\-.]+$/;

/** The placeholders a bucket's `url_format` may use (Python `str.format` syntax; `{{`/`}}` are literal braces). */
export const URL_FORMAT_PARAMETERS = ['swarming_hostname', 'task_id', 'bucket', 'builder'] as const;

/** A builder dimension: `key:value` adds/redefines `key`; `key:` (empty value) removes `key` when merged. */
export const DimensionSchema = z.string().refine(
  (s) => {
    const kv = splitKeyValue(s);
    return kv !== undefined && DIMENSION_KEY_RE.test(kv.key);
  },
  { message: `must be "key:value" or "key:" with key matching ${DIMENSION_KEY_RE.source}` },
);

/** A Swarming task tag added by a builder: `key:value`. */
export const SwarmingTagSchema = z.string().refine((s) => (splitKeyValue(s)?.key ?? '') !== '', {
  message: 'must be "key:value"',
});

/** A named cache mounted into the task's `cache/` directory at `path`. */
export const CacheSchema = z.strictObject({
  name: z.string().regex(CACHE_NAME_RE, `must match ${CACHE_NAME_RE.source}`),
  path: z
    .string()
    .min(1)
    .refine((p) => !p.includes('\\'), 'must use forward slashes')
    .refine((p) => !p.startsWith('/'), 'must be relative')
    .refine((p) => !p.split('/').includes('..'), 'must not contain ".."'),
});
export type CacheEntry = z.infer<typeof CacheSchema>;

/**
 * What recipe a builder runs. All fields optional in a layer (defaults, mixin, builder, override);
 * after merging, `repository` and `name` are required. A property set to `null` removes it.
 */
export const RecipeSchema = z.strictObject({
  repository: z.string().min(1).optional(),
  name: z.string().min(1).optional(),
  /** Recipe revision; the template's `${revision}` is `HEAD` when unset. */
  revision: z.string().min(1).optional(),
  properties: z.record(z.string().min(1), z.unknown()).optional(),
});
export type RecipeConfig = z.infer<typeof RecipeSchema>;

const dimensionList = z.array(DimensionSchema).superRefine((dims, ctx) => {
  const seen = new Map<string, { empty: boolean; values: Set<string> }>();
  for (const d of dims) {
    const kv = splitKeyValue(d);
    if (!kv) continue; // reported by DimensionSchema
    const { key, value } = kv;
    const entry = seen.get(key) ?? { empty: false, values: new Set<string>() };
    if (value === '') entry.empty = true;
    else if (entry.values.has(value)) ctx.addIssue({ code: 'custom', message: `duplicate dimension "${d}"` });
    else entry.values.add(value);
    if (entry.empty && entry.values.size > 0) {
      ctx.addIssue({ code: 'custom', message: `dimension key "${key}" is both removed ("${key}:") and set` });
    }
    seen.set(key, entry);
  }
});

const cacheList = z.array(CacheSchema).superRefine((caches, ctx) => {
  const names = new Set<string>();
  for (const c of caches) {
    if (names.has(c.name)) ctx.addIssue({ code: 'custom', message: `duplicate cache name "${c.name}"` });
    names.add(c.name);
  }
});

/** Fields every builder layer may set (LUCI `Builder` minus the ones Kiln does not use). */
const layerShape = {
  /** Visual grouping (e.g. in code review); also the `category` recipe property. */
  category: z.string().min(1).optional(),
  dimensions: dimensionList.optional(),
  recipe: RecipeSchema.optional(),
  swarming_tags: z.array(SwarmingTagSchema).optional(),
  /** Longest a started task may run (Swarming `execution_timeout_secs`). */
  execution_timeout_secs: z.number().int().positive().optional(),
  /** Longest a task may stay pending (Swarming slice `expiration_secs`). */
  expiration_secs: z.number().int().positive().optional(),
  /** Swarming task priority, 1 (most important) to 255. */
  priority: z.number().int().min(1).max(255).optional(),
  caches: cacheList.optional(),
  /** `bot`, `none`, or an email. */
  service_account: z
    .string()
    .refine((s) => s === 'bot' || s === 'none' || SERVICE_ACCOUNT_RE.test(s), 'must be "bot", "none" or an email')
    .optional(),
};

/** `builder_defaults`: any builder field except `name`; may use mixins. */
export const BuilderDefaultsSchema = z.strictObject({ ...layerShape, mixins: z.array(z.string().min(1)).optional() });

/** A named, reusable set of builder fields, applied in the order a builder lists them. */
export const BuilderMixinSchema = z.strictObject({
  name: z.string().min(1),
  ...layerShape,
  mixins: z.array(z.string().min(1)).optional(),
});

/** One builder of a swarming bucket, before defaults and mixins are applied. */
export const BuilderConfigSchema = z.strictObject({
  name: z.string().regex(BUILDER_NAME_RE, BUILDER_NAME_RULE),
  ...layerShape,
  mixins: z.array(z.string().min(1)).optional(),
});

export type BuilderDefaults = z.infer<typeof BuilderDefaultsSchema>;
export type BuilderMixin = z.infer<typeof BuilderMixinSchema>;
export type BuilderConfig = z.infer<typeof BuilderConfigSchema>;
/** The mergeable part of any builder layer (no name, no mixins). */
export type BuilderLayer = Omit<BuilderConfig, 'name' | 'mixins'>;

/**
 * A bucket's `swarming` block. Parse config with this at start: a bad value fails with a message
 * naming its field, including unknown mixin references and duplicate builder names.
 */
export const SwarmingBucketConfigSchema = z
  .strictObject({
    /** Swarming server, e.g. `chromium-swarm.appspot.com` (no scheme). */
    hostname: z
      .string()
      .min(1)
      .refine((h) => !h.includes('://'), 'must not contain "://"'),
    /** Build URL format; placeholders `{swarming_hostname}`, `{task_id}`, `{bucket}`, `{builder}`. */
    url_format: z
      .string()
      .min(1)
      .refine(
        (f) =>
          [...f.replace(/\{\{|\}\}/g, '').matchAll(/\{([^{}]*)\}/g)].every((m) =>
            URL_FORMAT_PARAMETERS.includes(m[1] as never),
          ),
        `may only use the placeholders ${URL_FORMAT_PARAMETERS.map((p) => `{${p}}`).join(', ')}`,
      )
      .optional(),
    builder_defaults: BuilderDefaultsSchema.optional(),
    builders: z.array(BuilderConfigSchema).default([]),
    mixins: z.array(BuilderMixinSchema).default([]),
    /** Share of builds (0–100) that use the canary task template when the build does not force it. */
    task_template_canary_percentage: z.number().int().min(0).max(100).default(10),
  })
  .superRefine((cfg, ctx) => {
    const mixinNames = new Set<string>();
    cfg.mixins.forEach((m, i) => {
      if (mixinNames.has(m.name))
        ctx.addIssue({ code: 'custom', path: ['mixins', i, 'name'], message: `duplicate mixin "${m.name}"` });
      mixinNames.add(m.name);
    });
    const builderNames = new Set<string>();
    cfg.builders.forEach((b, i) => {
      if (builderNames.has(b.name))
        ctx.addIssue({ code: 'custom', path: ['builders', i, 'name'], message: `duplicate builder "${b.name}"` });
      builderNames.add(b.name);
    });
    const checkRefs = (refs: string[] | undefined, path: (string | number)[]) =>
      refs?.forEach((r, j) => {
        if (!mixinNames.has(r))
          ctx.addIssue({ code: 'custom', path: [...path, 'mixins', j], message: `mixin "${r}" is not defined` });
      });
    checkRefs(cfg.builder_defaults?.mixins, ['builder_defaults']);
    cfg.mixins.forEach((m, i) => checkRefs(m.mixins, ['mixins', i]));
    cfg.builders.forEach((b, i) => checkRefs(b.mixins, ['builders', i]));
  });
export type SwarmingBucketConfig = z.infer<typeof SwarmingBucketConfigSchema>;
/** The bucket block as written in config, before defaults are filled in. */
export type SwarmingBucketConfigInput = z.input<typeof SwarmingBucketConfigSchema>;

/**
 * A build's `swarming.overrideBuilderCfg`: JSONPB of a builder (proto or lowerCamelCase names), applied
 * last, e.g. `{"dimensions": ["cores:64"]}`. It cannot rename the builder or use mixins.
 */
export const OverrideBuilderCfgSchema = z.preprocess(overrideProtoNames, z.strictObject(layerShape));
export type OverrideBuilderCfg = z.infer<typeof OverrideBuilderCfgSchema>;

/**
 * Validates a build's `swarming.overrideBuilderCfg` (absent: `undefined` or `null`). Call it Node side
 * before the build exists (the build service does, at schedule): the build workflow only normalizes
 * the field names (`validatedOverrideBuilderCfg`) and trusts the rest. Throws `INVALID_ARGUMENT`
 * naming the bad field, e.g. `swarming.overrideBuilderCfg.dimensions[0]: ...`.
 */
export function parseOverrideBuilderCfg(raw: unknown): OverrideBuilderCfg | undefined {
  if (raw === undefined || raw === null) return undefined;
  const parsed = OverrideBuilderCfgSchema.safeParse(raw);
  if (!parsed.success) {
    throw new KilnError(
      'INVALID_ARGUMENT',
      formatZodError(parsed.error, { at: 'swarming.overrideBuilderCfg', all: true, separator: '; ' }),
    );
  }
  return parsed.data;
}

/**
 * One service-level task template: a Swarming `NewTaskRequest` (proto field names) whose string
 * values may hold `${param}` placeholders, and the config revision it came from (tagged on tasks).
 */
export const TaskTemplateSchema = z.strictObject({
  revision: z.string().min(1),
  template: z
    .looseObject({
      name: z.string().optional(),
      tags: z.array(z.string()).optional(),
      task_slices: z
        .array(z.looseObject({ properties: z.looseObject({}).optional() }))
        .length(1, 'must hold exactly one slice'),
    })
    .refine((t) => !('properties' in t) && !('expiration_secs' in t), {
      message: 'top-level "properties"/"expiration_secs" are deprecated in swarming.v2; put them in task_slices[0]',
    }),
});
export type TaskTemplate = z.infer<typeof TaskTemplateSchema>;

/** Service-wide Swarming settings: the task template and an optional canary template. */
export const SwarmingServiceConfigSchema = z.strictObject({
  task_template: TaskTemplateSchema,
  task_template_canary: TaskTemplateSchema.optional(),
});
export type SwarmingServiceConfig = z.infer<typeof SwarmingServiceConfigSchema>;
