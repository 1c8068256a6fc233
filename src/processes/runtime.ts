/**
 * What every Kiln process does first: read env and config (failing with the file and key), make
 * the logger, open storage, connect to Temporal.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Client } from '@temporalio/client';
import pino from 'pino';
import { loadConfigFile, loadEnv, Registry } from '../config/load.ts';
import { type KilnConfig } from '../config/schema.ts';
import { openStorage } from '../storage/open.ts';
import { type Storage } from '../storage/storage.ts';
import { connectClient } from '../temporal/connection.ts';
import { kilnMetrics } from '../metrics/registry.ts';
import { temporalClientMetricsInterceptor } from '../metrics/temporal.ts';

/** The config shipped with Kiln, used when none is given and ./kiln.yaml does not exist. */
export const DEMO_CONFIG = resolve(import.meta.dirname, '../../config/demo.yaml');

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
  const logger = pino({ level: env.LOG_LEVEL, base: { component } });
  return { config, registry: new Registry(config), logger, file };
}

/** Opens the configured storage. */
export function openConfiguredStorage(config: KilnConfig): Promise<Storage> {
  return config.storage.kind === 'postgres'
    ? openStorage({ kind: 'postgres', url: config.storage.url, maxConnections: config.storage.maxConnections })
    : openStorage({ kind: 'embedded', dataDir: config.dataDir });
}

/** A Temporal client for the configured server; `address` overrides (dev server). */
export function temporalClient(config: KilnConfig, address?: string): Promise<Client> {
  const a = address ?? config.temporal.address;
  if (!a)
    throw new Error(
      'no Temporal server: set temporal.address in the config or TEMPORAL_ADDRESS (kiln dev starts one itself)',
    );
  // Metrics (issue 17): the API's Temporal calls, by method and status.
  return connectClient(
    { ...config.temporal, address: a },
    config.metrics.enabled ? [temporalClientMetricsInterceptor(kilnMetrics())] : [],
  );
}
