/**
 * Loads Kiln's config file and environment at start. A bad file fails here with a message that
 * names the file and the key path, never later on a request.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { distance } from 'fastest-levenshtein';
import { z } from 'zod';
import YAML from 'yaml';
import { type BuilderId, builderPath } from '../domain/build.ts';
import { KilnError } from '../domain/errors.ts';
import { formatZodError } from '../domain/zodIssues.ts';
import { envReferences, missingVariables } from './envReferences.ts';
import { type BucketConfig, type BuilderConfig, configSchema, type KilnConfig, type Role } from './schema.ts';
import { resolveSwarmingConfig, SwarmingConfigError } from './swarming.ts';
import { LaunchpadConfigError, resolveLaunchpadSecrets } from './launchpad.ts';

/** A config file that cannot be used; the message names the file and key. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Environment variables Kiln reads; they override the file. */
export const envSchema = z.object({
  KILN_CONFIG: z.string().optional(),
  KILN_DATA_DIR: z.string().optional(),
  KILN_API_HOST: z.string().optional(),
  KILN_API_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  TEMPORAL_ADDRESS: z.string().optional(),
  TEMPORAL_NAMESPACE: z.string().optional(),
  TEMPORAL_TASK_QUEUE: z.string().optional(),
  DATABASE_URL: z.string().optional(),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  /** `json`, `pretty`, or `auto` (pretty on a terminal). */
  LOG_FORMAT: z.enum(['auto', 'json', 'pretty']).optional(),
});
export type KilnEnv = z.infer<typeof envSchema>;

/** Parses env, or throws a ConfigError naming the variable. */
export function loadEnv(env: NodeJS.ProcessEnv = process.env): KilnEnv {
  const r = envSchema.safeParse(env);
  if (!r.success) throw new ConfigError(formatZodError(r.error, { source: 'environment', all: true }));
  return r.data;
}

/** Parses config text (YAML is a superset of JSON) named `file` in messages. */
export function parseConfig(text: string, file: string, env: KilnEnv = loadEnv()): KilnConfig {
  let raw: unknown;
  try {
    raw = YAML.parse(text);
  } catch (e) {
    throw new ConfigError(`${file}: not valid YAML/JSON: ${(e as Error).message}`);
  }
  const r = configSchema.safeParse(raw ?? {});
  if (!r.success) throw new ConfigError(formatZodError(r.error, { source: file, all: true }));
  const cfg = r.data;
  if (env.KILN_DATA_DIR) cfg.dataDir = env.KILN_DATA_DIR;
  if (env.KILN_API_HOST) cfg.api.host = env.KILN_API_HOST;
  if (env.KILN_API_PORT !== undefined) cfg.api.port = env.KILN_API_PORT;
  if (env.TEMPORAL_ADDRESS) cfg.temporal.address = env.TEMPORAL_ADDRESS;
  if (env.TEMPORAL_NAMESPACE) cfg.temporal.namespace = env.TEMPORAL_NAMESPACE;
  if (env.TEMPORAL_TASK_QUEUE) cfg.temporal.taskQueue = env.TEMPORAL_TASK_QUEUE;
  if (env.DATABASE_URL) cfg.storage = { kind: 'postgres', url: env.DATABASE_URL };
  // Secrets named by `…Env` keys resolve now, so a missing variable fails at start, all of them at once.
  const missing = missingVariables(file, envReferences(cfg), process.env);
  if (missing.length > 0) throw new ConfigError(missing.join('\n'));
  for (const b of cfg.projects.flatMap((p) => p.buckets)) {
    for (const a of b.acls) if (a.tokenEnv !== undefined) a.token = process.env[a.tokenEnv];
  }
  // ---- launchpad: secrets of repositories and notification targets, and where the config came from ----
  try {
    resolveLaunchpadSecrets(cfg, file);
  } catch (e) {
    throw e instanceof LaunchpadConfigError ? new ConfigError(e.message) : e;
  }
  (cfg as KilnConfig).configFile = file;
  try {
    return resolveSwarmingConfig(cfg, file);
  } catch (e) {
    throw e instanceof SwarmingConfigError ? new ConfigError(e.message) : e;
  }
}

/** Reads and parses the config file at `path`. */
export function loadConfigFile(path: string, env: KilnEnv = loadEnv()): KilnConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`${path}: cannot read config: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseConfig(text, path, env);
}

/** A loaded config with lookups the API and workers need. */
export class Registry {
  private readonly builders = new Map<string, BuilderConfig>();
  private readonly buckets = new Map<string, BucketConfig>();
  /** `project/bucket/builder` of every Swarming builder, for suggestions (`nearestBuilders`). */
  private readonly swarmingBuilderPaths: string[] = [];

  constructor(readonly config: KilnConfig) {
    for (const p of config.projects) {
      for (const b of p.buckets) {
        this.buckets.set(`${p.name}/${b.name}`, b);
        for (const bl of b.builders) this.builders.set(`${p.name}/${b.name}/${bl.name}`, bl);
        for (const bl of b.swarming?.builders ?? []) this.swarmingBuilderPaths.push(`${p.name}/${b.name}/${bl.name}`);
      }
    }
  }

  /** The builder's config, or undefined when no such builder is configured. */
  builder(id: BuilderId): BuilderConfig | undefined {
    return this.builders.get(`${id.project}/${id.bucket}/${id.builder}`);
  }

  /**
   * Configured builders whose `project/bucket/builder` is nearest to `id`'s (a typo, a wrong
   * bucket), best first; none when nothing is close.
   */
  nearestBuilders(id: BuilderId, max = 3): string[] {
    const wanted = builderPath(id);
    const limit = Math.max(3, Math.floor(wanted.length / 3));
    const close = [...this.builders.keys(), ...this.swarmingBuilderPaths]
      .map((path) => ({ path, d: distance(wanted, path) }))
      .filter((c) => c.d <= limit)
      .sort((a, b) => a.d - b.d || a.path.localeCompare(b.path));
    const best = close[0]?.d ?? 0;
    return close
      .filter((c) => c.d <= best + 1)
      .slice(0, max)
      .map((c) => c.path);
  }

  /** BUILDER_NOT_FOUND for `id`, suggesting the nearest configured names. */
  builderNotFound(id: BuilderId): KilnError {
    const near = this.nearestBuilders(id);
    const hint = near.length ? `; did you mean ${near.join(' or ')}?` : '';
    return new KilnError('BUILDER_NOT_FOUND', `builder ${builderPath(id)} is not configured${hint}`);
  }

  /** The bucket's config (`project/bucket`). */
  bucket(path: string): BucketConfig | undefined {
    return this.buckets.get(path);
  }

  /** Every `project/bucket`. */
  bucketPaths(): string[] {
    return [...this.buckets.keys()];
  }

  /** True when no bucket has any token: the API then runs without auth (loopback only). */
  get authDisabled(): boolean {
    return [...this.buckets.values()].every((b) => b.acls.length === 0);
  }

  /** True when `token` appears in any bucket's ACL. */
  knowsToken(token: string): boolean {
    return this.nameOf(token) !== undefined;
  }

  /** The ACL entry name of `token` (its `name`, else its role), or undefined for an unknown token. */
  nameOf(token: string): string | undefined {
    for (const b of this.buckets.values()) {
      for (const a of b.acls)
        if (a.token !== undefined && sameSecret(a.token, token)) return a.name ?? a.role.toLowerCase();
    }
    return undefined;
  }

  /** The role `token` has on bucket `path`, or undefined. */
  roleOf(path: string, token: string | undefined): Role | undefined {
    const b = this.buckets.get(path);
    if (!b || token === undefined) return undefined;
    let best: Role | undefined;
    for (const a of b.acls) {
      if (a.token !== undefined && sameSecret(a.token, token)) {
        if (best === undefined || rank(a.role) > rank(best)) best = a.role;
      }
    }
    return best;
  }
}

/** Orders roles: READER < SCHEDULER < WRITER. */
export function rank(r: Role): number {
  return r === 'READER' ? 0 : r === 'SCHEDULER' ? 1 : 2;
}

/** Compares tokens and shared secrets in constant time (digests make the lengths equal). */
export function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}
