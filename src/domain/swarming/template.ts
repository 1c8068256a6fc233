/**
 * From a merged builder and a build to a Swarming `NewTaskRequest`, and back from the created task to
 * the build's tags and URL (Swarmbucket semantics). Pure: hashes are computed Node-side and passed in,
 * randomness is passed in, so the build workflow can call all of it deterministically.
 */
import { type BuilderId } from '../build.ts';
import { KilnError } from '../errors.ts';
import type { CacheEntry, SwarmingServiceConfig, TaskTemplate, URL_FORMAT_PARAMETERS } from './config.ts';
import { splitKeyValue } from './keys.ts';
import { type MergedBuilder, mergeDimensions } from './merge.ts';

/** The placeholders a task template may use, as `${name}` or `$name`. */
export const TEMPLATE_PARAMETERS = [
  'bucket',
  'builder',
  'builder_hash',
  'cache_dir',
  'repository',
  'revision',
  'recipe',
  'properties_json',
  'project',
  'swarming_hostname',
] as const;
export type TemplateParameter = (typeof TEMPLATE_PARAMETERS)[number];
export type TemplateParameters = Record<TemplateParameter, string>;

/** Task-rundir-relative directory holding named caches; builder cache paths are placed under it. */
export const CACHE_DIR = 'cache';

/** Python `string.Template` syntax: `$$`, `$name`, `${name}`; anything else after `$` is left as it is. */
const PLACEHOLDER_RE = /\$(?:(\$)|([_a-z][_a-z0-9]*)|\{([_a-z][_a-z0-9]*)\})/gi;

/**
 * Substitutes placeholders in one string the way Buildbucket renders task templates (Python's
 * `string.Template.safe_substitute`): `$$` is a literal `$`, a known `$name` or `${name}` is replaced,
 * and every other placeholder (`${EXECUTABLE_SUFFIX}`, `${ISOLATED_OUTDIR}`, … meant for Swarming's
 * bots) and any stray `$` stay as they are.
 */
export function substituteTemplateString(text: string, params: Readonly<Record<string, string>>): string {
  return text.replace(PLACEHOLDER_RE, (m, escaped?: string, named?: string, braced?: string) => {
    if (escaped) return '$';
    const name = (named ?? braced)!;
    return Object.hasOwn(params, name) ? params[name]! : m;
  });
}

/** Renders every string value (not key) of a JSON template; see `substituteTemplateString`. */
export function renderTaskTemplate(template: unknown, params: Readonly<Record<string, string>>): unknown {
  if (typeof template === 'string') return substituteTemplateString(template, params);
  if (Array.isArray(template)) return template.map((v) => renderTaskTemplate(v, params));
  if (template !== null && typeof template === 'object') {
    return Object.fromEntries(Object.entries(template).map(([k, v]) => [k, renderTaskTemplate(v, params)]));
  }
  return template;
}

/** A placeholder of a task template that Kiln does not fill in, and where it is. */
export interface PassedThroughPlaceholder {
  name: string;
  /** JSON path of the string holding it, e.g. `task_slices[0].properties.command[0]`. */
  at: string;
  /** The known parameter it looks like a typo of (differs only in case, or by one or two edits). */
  looksLike?: TemplateParameter;
}

/** Edit distance (insertions, deletions, substitutions) of two short strings. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** The known parameter `name` is probably a typo of, if any. */
export function closeTemplateParameter(name: string): TemplateParameter | undefined {
  const lower = name.toLowerCase();
  // Swarming's own placeholders are upper case (EXECUTABLE_SUFFIX, ISOLATED_OUTDIR): never typos of ours.
  if (name === name.toUpperCase() && name !== lower) return undefined;
  let best: { p: TemplateParameter; d: number } | undefined;
  for (const p of TEMPLATE_PARAMETERS) {
    const d = lower === p ? 0 : editDistance(lower, p);
    if (d <= (p.length > 5 ? 2 : 1) && (best === undefined || d < best.d)) best = { p, d };
  }
  return best?.p;
}

/**
 * Every placeholder of `template` that rendering leaves untouched (not one of `TEMPLATE_PARAMETERS`),
 * in document order, each with the known parameter it may be a typo of. Kiln reports these at start.
 */
export function passedThroughPlaceholders(template: unknown, path = ''): PassedThroughPlaceholder[] {
  if (typeof template === 'string') {
    const out: PassedThroughPlaceholder[] = [];
    for (const m of template.matchAll(PLACEHOLDER_RE)) {
      const name = m[2] ?? m[3];
      if (name === undefined || (TEMPLATE_PARAMETERS as readonly string[]).includes(name)) continue;
      const looksLike = closeTemplateParameter(name);
      out.push({ name, at: path || '(root)', ...(looksLike ? { looksLike } : {}) });
    }
    return out;
  }
  if (Array.isArray(template)) return template.flatMap((v, i) => passedThroughPlaceholders(v, `${path}[${i}]`));
  if (template !== null && typeof template === 'object') {
    return Object.entries(template).flatMap(([k, v]) => passedThroughPlaceholders(v, path ? `${path}.${k}` : k));
  }
  return [];
}

/** The template a build uses, with whether it is the canary and the revision to tag the task with. */
export interface ChosenTaskTemplate {
  revision: string;
  template: TaskTemplate['template'];
  canary: boolean;
}

/**
 * Picks the stable or canary task template. `canaryTemplate` is the build's `swarming.canaryTemplate`:
 * true forces the canary (`INVALID_ARGUMENT` if none is configured), false forbids it, undefined uses
 * it when `random100` (a number in [0, 100), deterministic in workflows) is below `canaryPercentage`
 * and a canary exists.
 */
export function chooseTaskTemplate(
  service: SwarmingServiceConfig,
  opts: { canaryTemplate?: boolean; canaryPercentage: number; random100: number },
): ChosenTaskTemplate {
  const canary = service.task_template_canary;
  const want = opts.canaryTemplate ?? opts.random100 < opts.canaryPercentage;
  if (opts.canaryTemplate === true && !canary) {
    throw new KilnError(
      'INVALID_ARGUMENT',
      'swarming.canaryTemplate is true but no canary task template is configured',
    );
  }
  const chosen = want && canary ? canary : service.task_template;
  return { revision: chosen.revision, template: chosen.template, canary: want && canary !== undefined };
}

/** JSON with object keys sorted at every level (Python's `json.dumps(sort_keys=True)`), for stable output. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

/**
 * The recipe properties of a build: the builder's `recipe.properties`, then `buildername`, `category`
 * and `blamelist` (change authors, when any), then the build's input properties, which win. An input
 * `buildername` naming another builder is refused with `INVALID_ARGUMENT`.
 */
export function recipeProperties(input: {
  builderCfg: MergedBuilder;
  inputProperties: Readonly<Record<string, unknown>>;
  blamelist?: readonly string[];
}): Record<string, unknown> {
  const { builderCfg, inputProperties } = input;
  const given = inputProperties['buildername'];
  if (given !== undefined && given !== builderCfg.name) {
    throw new KilnError(
      'INVALID_ARGUMENT',
      `property buildername ${JSON.stringify(given)} does not match builder "${builderCfg.name}"`,
    );
  }
  const derived: Record<string, unknown> = { buildername: builderCfg.name };
  if (builderCfg.category !== undefined) derived['category'] = builderCfg.category;
  if (input.blamelist) derived['blamelist'] = input.blamelist.filter((a) => a !== '');
  return { ...builderCfg.recipe.properties, ...derived, ...inputProperties };
}

/** A Swarming `{key, value}` pair (dimensions, env). */
export interface StringPair {
  key: string;
  value: string;
}

/** `swarming.v2.TaskProperties` as Kiln sends it (proto field names; template extras pass through). */
export interface SwarmingTaskProperties {
  dimensions: StringPair[];
  caches: CacheEntry[];
  execution_timeout_secs: number;
  [field: string]: unknown;
}

/** `swarming.v2.NewTaskRequest` as Kiln sends it (proto field names; template extras pass through). */
export interface SwarmingNewTaskRequest {
  name: string;
  priority?: number;
  service_account?: string;
  tags: string[];
  task_slices: { expiration_secs: number; properties: SwarmingTaskProperties; [field: string]: unknown }[];
  pubsub_topic?: string;
  pubsub_auth_token?: string;
  pubsub_userdata?: string;
  request_uuid: string;
  [field: string]: unknown;
}

/** Everything `newTaskRequest` needs; all of it is known once the build is scheduled. */
export interface NewTaskInput {
  buildId: string;
  builder: BuilderId;
  /** From `mergeBuilderConfig`. */
  builderCfg: MergedBuilder;
  /** sha256 hex of bucket and builder, from `builderHash` in `src/swarming/client.ts`. */
  builderHash: string;
  swarmingHostname: string;
  /** Kiln's own hostname, tagged as `buildbucket_hostname`. */
  kilnHostname: string;
  template: ChosenTaskTemplate;
  /** The build's own tags (`key:value`). */
  buildTags: readonly string[];
  inputProperties: Readonly<Record<string, unknown>>;
  /** Emails of the authors of the changes under test. */
  blamelist?: readonly string[];
  /** The priority the schedule request asked for; it wins over the builder's and the template's. */
  priority?: number;
  /** Where Swarming publishes task updates; omitted → no notifications, Kiln relies on polling. */
  pubsub?: { topic: string; authToken?: string };
}

/**
 * A Swarming request id derived from the build id alone, so every retry of NewTask for a build sends
 * the same `request_uuid` and Swarming returns the task it already created. UUID-shaped (version 8).
 */
export function requestUuidForBuild(buildId: string): string {
  if (!/^[0-9]{1,19}$/.test(buildId)) throw new KilnError('INVALID_ARGUMENT', `build id "${buildId}" is not an int64`);
  const h = BigInt(buildId).toString(16).padStart(16, '0');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(12, 15)}-8${h.slice(15)}00-6b696c6e0000`;
}

/** The `pubsub_userdata` Kiln attaches to a task: which build and Swarming server the task belongs to. */
export function pubsubUserdata(buildId: string, swarmingHostname: string): string {
  return canonicalJson({ build_id: buildId, swarming_hostname: swarmingHostname });
}

/** Reads back `pubsubUserdata`; `INVALID_ARGUMENT` when it is not Kiln's. */
export function parsePubsubUserdata(userdata: string): { buildId: string; swarmingHostname: string } {
  let v: unknown;
  try {
    v = JSON.parse(userdata);
  } catch {
    throw new KilnError('INVALID_ARGUMENT', 'userdata is not JSON');
  }
  const o = (v ?? {}) as Record<string, unknown>;
  if (typeof o['build_id'] !== 'string' || o['build_id'] === '')
    throw new KilnError('INVALID_ARGUMENT', 'userdata.build_id is missing');
  if (typeof o['swarming_hostname'] !== 'string' || o['swarming_hostname'] === '')
    throw new KilnError('INVALID_ARGUMENT', 'userdata.swarming_hostname is missing');
  return { buildId: o['build_id'], swarmingHostname: o['swarming_hostname'] };
}

function intField(v: unknown, what: string): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0) {
    throw new KilnError(
      'INVALID_ARGUMENT',
      `task template: ${what} must be a positive integer, got ${JSON.stringify(v)}`,
    );
  }
  return n;
}

function asObject(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function templatePairs(v: unknown, what: string): StringPair[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new KilnError('INVALID_ARGUMENT', `task template: ${what} must be a list`);
  return v.map((p: unknown) => {
    const o = asObject(p);
    if (typeof o['key'] !== 'string' || (o['value'] !== undefined && typeof o['value'] !== 'string')) {
      throw new KilnError('INVALID_ARGUMENT', `task template: ${what} entries must be {key, value} strings`);
    }
    return { key: o['key'], value: (o['value'] as string | undefined) ?? '' };
  });
}

/**
 * Renders the chosen template for a build and completes it into a `NewTaskRequest`: builder
 * dimensions (the template's win per key), caches under `cache/` (plus template caches that do not
 * clash), priority, expiration, execution timeout and service account (builder first, then template),
 * the tags the README's "Swarming buckets" section lists, Pub/Sub settings and `request_uuid`. `INVALID_ARGUMENT` on a bad template,
 * a missing `pool` dimension, or no expiration / execution timeout in builder or template.
 */
export function newTaskRequest(input: NewTaskInput): SwarmingNewTaskRequest {
  const { builderCfg: cfg, builder, template } = input;
  // `$revision` is the recipe revision as configured, empty when none is (the recipe runs at FETCH_HEAD);
  // the `recipe_revision` tag says HEAD then.
  const revision = cfg.recipe.revision ?? '';
  const params: TemplateParameters = {
    bucket: builder.bucket,
    builder: cfg.name,
    builder_hash: input.builderHash,
    cache_dir: CACHE_DIR,
    repository: cfg.recipe.repository,
    revision,
    recipe: cfg.recipe.name,
    properties_json: canonicalJson(recipeProperties(input)),
    project: builder.project,
    swarming_hostname: input.swarmingHostname,
  };
  const rendered = asObject(renderTaskTemplate(template.template, params));
  const slices = rendered['task_slices'];
  if (!Array.isArray(slices) || slices.length !== 1) {
    throw new KilnError('INVALID_ARGUMENT', 'task template: task_slices must hold exactly one slice');
  }
  const slice = asObject(slices[0]);
  const props = asObject(slice['properties']);
  const who = `builder "${builder.project}/${builder.bucket}/${cfg.name}"`;

  const templateDims = templatePairs(props['dimensions'], 'task_slices[0].properties.dimensions');
  const dimensions = mergeDimensions(
    cfg.dimensions,
    templateDims.map((d) => `${d.key}:${d.value}`),
  ).map((d) => {
    const kv = splitKeyValue(d)!;
    return { key: kv.key, value: kv.value };
  });
  const pools = dimensions.filter((d) => d.key === 'pool');
  if (pools.length !== 1) {
    throw new KilnError('INVALID_ARGUMENT', `${who}: needs exactly one "pool" dimension, has ${pools.length}`);
  }

  const caches: CacheEntry[] = cfg.caches.map((c) => ({ name: c.name, path: `${CACHE_DIR}/${c.path}` }));
  const names = new Set(caches.map((c) => c.name));
  const paths = new Set(caches.map((c) => c.path));
  const templateCaches = props['caches'] ?? [];
  if (!Array.isArray(templateCaches)) {
    throw new KilnError('INVALID_ARGUMENT', 'task template: task_slices[0].properties.caches must be a list');
  }
  for (const c of templateCaches as unknown[]) {
    const o = asObject(c);
    if (typeof o['name'] !== 'string' || typeof o['path'] !== 'string') {
      throw new KilnError(
        'INVALID_ARGUMENT',
        'task template: task_slices[0].properties.caches entries must be {name, path}',
      );
    }
    if (!names.has(o['name']) && !paths.has(o['path'])) caches.push({ name: o['name'], path: o['path'] });
  }
  caches.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

  const executionTimeout =
    cfg.execution_timeout_secs ?? intField(props['execution_timeout_secs'], 'execution_timeout_secs');
  if (executionTimeout === undefined) {
    throw new KilnError(
      'INVALID_ARGUMENT',
      `${who}: execution_timeout_secs is set neither by the builder nor the task template`,
    );
  }
  const expiration = cfg.expiration_secs ?? intField(slice['expiration_secs'], 'expiration_secs');
  if (expiration === undefined) {
    throw new KilnError(
      'INVALID_ARGUMENT',
      `${who}: expiration_secs is set neither by the builder nor the task template`,
    );
  }
  const priority = input.priority ?? cfg.priority ?? intField(rendered['priority'], 'priority');
  const serviceAccount = cfg.service_account ?? (rendered['service_account'] as string | undefined);

  const recipeTags = [
    `recipe_repository:${cfg.recipe.repository}`,
    `recipe_revision:${revision || 'HEAD'}`,
    `recipe_name:${cfg.recipe.name}`,
  ];
  const kilnTags = [
    `buildbucket_hostname:${input.kilnHostname}`,
    `buildbucket_bucket:${builder.project}/${builder.bucket}`,
    `buildbucket_build_id:${input.buildId}`,
    `buildbucket_template_canary:${template.canary ? 'true' : 'false'}`,
    `buildbucket_template_revision:${template.revision}`,
  ];
  const templateTags = Array.isArray(rendered['tags'])
    ? (rendered['tags'] as unknown[]).filter((t): t is string => typeof t === 'string')
    : [];
  const tags = [
    ...new Set([...templateTags, ...kilnTags, ...recipeTags, ...cfg.swarming_tags, ...input.buildTags]),
  ].sort();

  const request: SwarmingNewTaskRequest = {
    ...rendered,
    name:
      typeof rendered['name'] === 'string' && rendered['name'] !== ''
        ? rendered['name']
        : `kiln-${input.buildId}-${builder.project}-${builder.bucket}-${cfg.name}`,
    tags,
    task_slices: [
      {
        ...slice,
        expiration_secs: expiration,
        properties: { ...props, dimensions, caches, execution_timeout_secs: executionTimeout },
      },
    ],
    request_uuid: requestUuidForBuild(input.buildId),
  };
  if (priority !== undefined) request.priority = priority;
  else delete request.priority;
  if (serviceAccount !== undefined) request.service_account = serviceAccount;
  if (input.pubsub) {
    request.pubsub_topic = input.pubsub.topic;
    request.pubsub_userdata = pubsubUserdata(input.buildId, input.swarmingHostname);
    if (input.pubsub.authToken !== undefined) request.pubsub_auth_token = input.pubsub.authToken;
  }
  return request;
}

/** The part of Swarming's NewTask response (pRPC JSON, lowerCamelCase) the build's tags come from. */
export interface CreatedTaskView {
  taskId: string;
  request?: {
    tags?: readonly string[];
    taskSlices?: readonly { properties?: { dimensions?: readonly { key: string; value?: string }[] } }[];
  };
}

/**
 * The tags Kiln adds to a build once its task exists: `swarming_hostname`, `swarming_task_id`,
 * `swarming_tag:<tag>` for every tag of the task as Swarming registered it (Swarming adds some, e.g.
 * `pool:`), and `swarming_dimension:<key>:<value>` for every dimension of its first slice.
 */
export function swarmingBuildTags(swarmingHostname: string, created: CreatedTaskView): string[] {
  const dims = created.request?.taskSlices?.[0]?.properties?.dimensions ?? [];
  return [
    `swarming_hostname:${swarmingHostname}`,
    `swarming_task_id:${created.taskId}`,
    ...(created.request?.tags ?? []).map((t) => `swarming_tag:${t}`),
    ...dims.map((d) => `swarming_dimension:${d.key}:${d.value ?? ''}`),
  ];
}

/** LUCI's default build URL format for swarming builds. */
export const DEFAULT_URL_FORMAT = 'https://{swarming_hostname}/task?id={task_id}';

/**
 * The build's URL: the bucket's `url_format` (default `https://{swarming_hostname}/task?id={task_id}`)
 * filled in. An unknown `{name}` throws `INVALID_ARGUMENT` naming it.
 */
export function swarmingTaskUrl(
  urlFormat: string | undefined,
  v: { swarmingHostname: string; taskId: string; bucket: string; builder: string },
): string {
  const values: Record<(typeof URL_FORMAT_PARAMETERS)[number], string> = {
    swarming_hostname: v.swarmingHostname,
    task_id: v.taskId,
    bucket: v.bucket,
    builder: v.builder,
  };
  return (urlFormat ?? DEFAULT_URL_FORMAT).replace(/\{\{|\}\}|\{([^{}]*)\}/g, (m, name?: string) => {
    if (m === '{{') return '{';
    if (m === '}}') return '}';
    if (name === undefined || !Object.hasOwn(values, name)) {
      throw new KilnError('INVALID_ARGUMENT', `url_format: unknown placeholder "${m}"`);
    }
    return values[name as keyof typeof values];
  });
}
