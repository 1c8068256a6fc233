/**
 * `kiln runner`'s config file (YAML or JSON), validated with zod at start: which Kiln API, which
 * builders, what this machine offers (dimensions, capacity) and how often it peeks and heartbeats.
 * `kiln dev` builds the same settings from the `devRunner` section of Kiln's own config.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import YAML from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../config/load.ts';
import { formatZodError } from '../domain/zodIssues.ts';
import { runnerSettingsShape, serveSchema } from './settings.ts';

/** A `kiln runner` config file. */
export const runnerConfigSchema = z
  .object({
    /** Kiln API base URL. */
    api: z.string().url().default('http://127.0.0.1:8080'),
    /** Bearer token with WRITER on the served buckets (or read from `tokenEnv`). */
    token: z.string().optional(),
    tokenEnv: z.string().optional(),
    ...runnerSettingsShape,
    serve: z.array(serveSchema).min(1),
  })
  .strict();

export type RunnerConfigFile = z.infer<typeof runnerConfigSchema>;

/** Everything a `Runner` needs, resolved. */
export interface RunnerSettings {
  api: string;
  token?: string;
  name: string;
  serve: { bucket: string; builders?: string[] }[];
  dimensions: string[];
  capacity: number;
  peekIntervalSecs: number;
  heartbeatIntervalSecs: number;
  leaseDurationSecs?: number;
  logFlushIntervalSecs: number;
  gracePeriodSecs: number;
  killTimeoutSecs: number;
  workDir: string;
  /**
   * Variables holding Kiln's credentials (the runner's `tokenEnv`; in `kiln dev`, every `…Env` of
   * Kiln's config): never passed to build commands. See `commandEnv`.
   */
  secretEnv?: string[];
  /** @default "<workDir>/git-cache" */
  gitCacheDir?: string;
  keepBuildDirs: boolean;
}

/** The default runner name: this host and process. */
export function defaultRunnerName(): string {
  return `${hostname()}-${process.pid}`;
}

/** Parses a runner config file's text; throws ConfigError naming the file and key. */
export function parseRunnerConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): RunnerSettings {
  let raw: unknown;
  try {
    raw = YAML.parse(text);
  } catch (e) {
    throw new ConfigError(`${file}: not valid YAML/JSON: ${(e as Error).message}`);
  }
  const r = runnerConfigSchema.safeParse(raw ?? {});
  if (!r.success) throw new ConfigError(formatZodError(r.error, { source: file, all: true }));
  const c = r.data;
  let token = c.token;
  if (c.tokenEnv !== undefined) {
    token = env[c.tokenEnv];
    if (!token) throw new ConfigError(`${file}: tokenEnv: environment variable ${c.tokenEnv} is not set`);
  }
  const { tokenEnv: _t, ...rest } = c;
  return {
    ...rest,
    token,
    name: c.name ?? defaultRunnerName(),
    ...(c.tokenEnv !== undefined ? { secretEnv: [c.tokenEnv] } : {}),
  };
}

/** Reads and parses a runner config file. */
export function loadRunnerConfig(path: string): RunnerSettings {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(
      `${path}: cannot read runner config: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  return parseRunnerConfig(text, path);
}
