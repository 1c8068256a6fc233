/**
 * Resolves the final config of one swarming builder, the way LUCI's swarmbucket flattened it:
 * `builder_defaults` ← its mixins ← the builder's mixins (in order, each after its own mixins) ←
 * the builder ← the build's `overrideBuilderCfg`, applied left to right. Pure.
 */
import { KilnError } from '../errors.ts';
import type { BuilderLayer, CacheEntry, OverrideBuilderCfg, SwarmingBucketConfig } from './config.ts';
import { splitKeyValue } from './keys.ts';

/** A builder after merging: what the task template and the NewTask request are built from. */
export interface MergedBuilder {
  name: string;
  category?: string;
  /** `key:value`, sorted; a key may repeat (Swarming ANDs them). */
  dimensions: string[];
  recipe: { repository: string; name: string; revision?: string; properties: Record<string, unknown> };
  /** Sorted, deduplicated. */
  swarming_tags: string[];
  execution_timeout_secs?: number;
  expiration_secs?: number;
  priority?: number;
  /** One per name, sorted by name. */
  caches: CacheEntry[];
  service_account?: string;
}

/** Accumulated state while layers are applied. */
interface Acc {
  scalars: Pick<
    MergedBuilder,
    'category' | 'execution_timeout_secs' | 'expiration_secs' | 'priority' | 'service_account'
  >;
  dimensions: Map<string, string[]>;
  recipe: { repository?: string; name?: string; revision?: string; properties: Map<string, unknown> };
  swarmingTags: Set<string>;
  caches: Map<string, CacheEntry>;
}

/**
 * Merges dimension lists: a key set by a later list replaces every value the earlier one had for it;
 * `key:` removes the key. Returns sorted `key:value` strings. Use it wherever dimensions are layered.
 */
export function mergeDimensions(...layers: readonly (readonly string[])[]): string[] {
  const acc = new Map<string, string[]>();
  for (const layer of layers) applyDimensions(acc, layer);
  return flattenDimensions(acc);
}

function applyDimensions(acc: Map<string, string[]>, dims: readonly string[]): void {
  const byKey = new Map<string, string[]>();
  for (const d of dims) {
    const kv = splitKeyValue(d);
    if (!kv) throw new KilnError('INVALID_ARGUMENT', `dimension "${d}" is not "key:value"`);
    const values = byKey.get(kv.key) ?? [];
    if (kv.value !== '') values.push(kv.value);
    byKey.set(kv.key, values);
  }
  for (const [key, values] of byKey) {
    if (values.length === 0) acc.delete(key);
    else acc.set(key, [...new Set(values)]);
  }
}

function flattenDimensions(acc: Map<string, string[]>): string[] {
  return [...acc.entries()]
    .flatMap(([k, vs]) => vs.map((v) => `${k}:${v}`))
    .sort((a, b) => {
      const ka = splitKeyValue(a)!;
      const kb = splitKeyValue(b)!;
      return ka.key === kb.key ? cmp(ka.value, kb.value) : cmp(ka.key, kb.key);
    });
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function applyLayer(acc: Acc, layer: BuilderLayer): void {
  for (const k of ['category', 'execution_timeout_secs', 'expiration_secs', 'priority', 'service_account'] as const) {
    if (layer[k] !== undefined) (acc.scalars as Record<string, unknown>)[k] = layer[k];
  }
  if (layer.dimensions) applyDimensions(acc.dimensions, layer.dimensions);
  if (layer.recipe) {
    const r = layer.recipe;
    if (r.repository !== undefined) acc.recipe.repository = r.repository;
    if (r.name !== undefined) acc.recipe.name = r.name;
    if (r.revision !== undefined) acc.recipe.revision = r.revision;
    for (const [k, v] of Object.entries(r.properties ?? {})) {
      if (v === null) acc.recipe.properties.delete(k);
      else acc.recipe.properties.set(k, v);
    }
  }
  for (const t of layer.swarming_tags ?? []) acc.swarmingTags.add(t);
  for (const c of layer.caches ?? []) acc.caches.set(c.name, { name: c.name, path: c.path });
}

/** The builder-ish things that may list mixins. */
interface WithMixins extends BuilderLayer {
  name?: string;
  mixins?: string[];
}

/** Expands `layer` into the ordered list of layers to apply: its mixins (recursively), then itself. */
function expand(
  layer: WithMixins,
  mixins: ReadonlyMap<string, WithMixins>,
  owner: string,
  chain: readonly string[],
  out: BuilderLayer[],
): void {
  for (const name of layer.mixins ?? []) {
    const mixin = mixins.get(name);
    if (!mixin) throw new KilnError('INVALID_ARGUMENT', `${owner}: mixin "${name}" is not defined`);
    if (chain.includes(name)) {
      throw new KilnError('INVALID_ARGUMENT', `${owner}: circular mixin chain ${[...chain, name].join(' -> ')}`);
    }
    expand(mixin, mixins, owner, [...chain, name], out);
  }
  const { name: _name, mixins: _mixins, ...own } = layer;
  out.push(own);
}

/**
 * The final config of `builderName` in `bucket`, with the build's `overrideBuilderCfg` applied last.
 * The override must be validated already (`parseOverrideBuilderCfg`, or `validatedOverrideBuilderCfg`
 * for one validated at schedule); it is not checked here. Throws `BUILDER_NOT_FOUND` for an unknown
 * builder and `INVALID_ARGUMENT` for an undefined mixin, a mixin cycle, a final builder without
 * `recipe.repository`/`recipe.name`, or two caches sharing a path.
 */
export function mergeBuilderConfig(
  bucket: SwarmingBucketConfig,
  builderName: string,
  override?: OverrideBuilderCfg,
): MergedBuilder {
  const builder = bucket.builders.find((b) => b.name === builderName);
  if (!builder) throw new KilnError('BUILDER_NOT_FOUND', `builder "${builderName}" is not defined in this bucket`);
  const owner = `builder "${builderName}"`;

  const mixins = new Map<string, WithMixins>(bucket.mixins.map((m) => [m.name, m]));
  const layers: BuilderLayer[] = [];
  if (bucket.builder_defaults) expand(bucket.builder_defaults, mixins, owner, [], layers);
  expand(builder, mixins, owner, [], layers);
  if (override) layers.push(override);

  const acc: Acc = {
    scalars: {},
    dimensions: new Map(),
    recipe: { properties: new Map() },
    swarmingTags: new Set(),
    caches: new Map(),
  };
  for (const layer of layers) applyLayer(acc, layer);

  const { repository, name, revision } = acc.recipe;
  for (const [key, value] of [
    ['recipe.repository', repository],
    ['recipe.name', name],
  ] as const) {
    if (value === undefined) {
      throw new KilnError(
        'INVALID_ARGUMENT',
        `${owner} has no ${key} after applying builder_defaults, mixins and overrides`,
      );
    }
  }
  const caches = [...acc.caches.values()].sort((a, b) => cmp(a.name, b.name));
  const paths = new Map<string, string>();
  for (const c of caches) {
    const other = paths.get(c.path);
    if (other)
      throw new KilnError('INVALID_ARGUMENT', `${owner}: caches "${other}" and "${c.name}" share path "${c.path}"`);
    paths.set(c.path, c.name);
  }

  return {
    name: builderName,
    ...dropUndefined(acc.scalars),
    dimensions: flattenDimensions(acc.dimensions),
    recipe: {
      repository: repository!,
      name: name!,
      ...(revision !== undefined ? { revision } : {}),
      properties: Object.fromEntries([...acc.recipe.properties.entries()].sort(([a], [b]) => cmp(a, b))),
    },
    swarming_tags: [...acc.swarmingTags].sort(cmp),
    caches,
  };
}

function dropUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
