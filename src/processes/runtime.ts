/**
 * What every Kiln process does first: read env and config (failing with the file and key), make
 * the logger, open storage, connect to Temporal.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Client } from '@temporalio/client';
import type pino from 'pino';
import { isLoopback, noAuthBeyondLoopback } from '../api/auth.ts';
import { ConfigError, loadConfigFile, loadEnv, Registry } from '../config/load.ts';
import { type KilnConfig } from '../config/schema.ts';
import { KilnError } from '../domain/errors.ts';
import { openStorage } from '../storage/open.ts';
import { type Storage } from '../storage/storage.ts';
import { connectClient } from '../temporal/connection.ts';
import { PACKAGE_ROOT } from '../packageRoot.ts';
import { makeLogger } from './logger.ts';

/**
 * Kiln cannot start. The message names the file, folder or address in the way, what is wrong,
 * and the fix; the command stops what it had started and exits non-zero.
 */
export class StartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartError';
  }
}
import { kilnMetrics } from '../metrics/registry.ts';
import { temporalClientMetricsInterceptor } from '../metrics/temporal.ts';

/** The config shipped with Kiln, used when none is given and ./kiln.yaml does not exist. */
export const DEMO_CONFIG = join(PACKAGE_ROOT, 'config/demo.yaml');

/** Picks the config file: --config, then KILN_CONFIG, then ./kiln.yaml, then the demo config. */
export function configPath(flag: string | undefined): string {
  const env = loadEnv();
  if (flag) return flag;
  if (env.KILN_CONFIG) return env.KILN_CONFIG;
  if (existsSync('kiln.yaml')) return 'kiln.yaml';
  return DEMO_CONFIG;
}

/** Loaded config, registry and logger. */
export interface Loaded {
  config: KilnConfig;
  registry: Registry;
  logger: pino.Logger;
  file: string;
}

/** Loads config and makes the process logger. Throws ConfigError naming file and key. */
export function load(flag: string | undefined, component: string): Loaded {
  const env = loadEnv();
  const file = configPath(flag);
  const config = loadConfigFile(file, env);
  const logger = makeLogger({ level: env.LOG_LEVEL, format: env.LOG_FORMAT, base: { component } });
  for (const n of config.notices ?? []) logger[n.level](n.message);
  return { config, registry: new Registry(config), logger, file };
}

/**
 * Refuses, before anything starts, an API host beyond loopback when no bucket has a token (the
 * API would refuse to listen after Temporal and the worker were already up).
 */
export async function checkApiHost(config: KilnConfig, registry: Registry, file: string): Promise<void> {
  if (registry.authDisabled && !(await isLoopback(config.api.host))) {
    throw new ConfigError(`${file}: api.host (or KILN_API_HOST): ${noAuthBeyondLoopback(config.api.host)}`);
  }
}

/** A database URL without its password, for messages. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(storage.url)';
  }
}

/**
 * Opens the configured storage. A store that cannot be opened is a StartError naming its folder
 * or URL and the fix; a lock held by a live process stays UNAVAILABLE with the holder's pid.
 */
export async function openConfiguredStorage(config: KilnConfig): Promise<Storage> {
  if (config.storage.kind === 'postgres') {
    try {
      return await openStorage({
        kind: 'postgres',
        url: config.storage.url,
        maxConnections: config.storage.maxConnections,
      });
    } catch (e) {
      if (e instanceof KilnError) throw e;
      throw new StartError(
        `PostgreSQL storage at ${redactUrl(config.storage.url)} cannot be opened: ${(e as Error).message}; check that the server runs and storage.url (or DATABASE_URL)`,
      );
    }
  }
  const dir = join(config.dataDir, 'storage');
  try {
    return await openStorage({ kind: 'embedded', dataDir: config.dataDir });
  } catch (e) {
    if (e instanceof KilnError) throw e;
    throw new StartError(
      `embedded storage ${resolve(dir)} cannot be opened (${(e as Error).message}): its files are damaged or were not written by this version of Kiln. Move the folder aside to start with empty storage (mv ${dir} ${dir}.broken), or restore it from a backup`,
    );
  }
}

/** The error for a Temporal server that does not answer at `address`. */
export function temporalUnreachable(address: string, e: unknown): KilnError {
  const why = e instanceof Error ? e.message : String(e);
  return new KilnError(
    'UNAVAILABLE',
    `Temporal is unreachable at ${address} (${why}): start it, or set temporal.address / TEMPORAL_ADDRESS to a running server`,
  );
}

/** A Temporal client for the configured server; `address` overrides (dev server). */
export async function temporalClient(config: KilnConfig, address?: string): Promise<Client> {
  const a = address ?? config.temporal.address;
  if (!a)
    throw new StartError(
      'no Temporal server: set temporal.address in the config or TEMPORAL_ADDRESS (kiln dev starts one itself)',
    );
  try {
    // Metrics (issue 17): the API's Temporal calls, by method and status.
    return await connectClient(
      { ...config.temporal, address: a },
      config.metrics.enabled ? [temporalClientMetricsInterceptor(kilnMetrics())] : [],
    );
  } catch (e) {
    throw temporalUnreachable(a, e);
  }
}
