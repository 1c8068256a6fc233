/**
 * The runner `kiln dev` starts next to its API, from the config's `devRunner` section: by default
 * it serves every bucket with every builder's dimensions, so each demo build runs on this machine.
 */
import { join } from 'node:path';
import type pino from 'pino';
import { envReferences } from '../config/envReferences.ts';
import { type KilnConfig } from '../config/schema.ts';
import { defaultRunnerName, type RunnerSettings } from './config.ts';
import { Runner } from './runner.ts';
import { devRunnerSchema } from './settings.ts';

/** The dev runner's settings, or undefined when `devRunner.enabled` is false. */
export function devRunnerSettings(config: KilnConfig, apiUrl: string): RunnerSettings | undefined {
  const d = devRunnerSchema.parse(config.devRunner ?? {});
  if (!d.enabled) return undefined;
  const buckets = config.projects.flatMap((p) =>
    p.buckets.map((b) => ({ path: `${p.name}/${b.name}`, builders: b.builders })),
  );
  const serve: RunnerSettings['serve'] = d.serve ?? buckets.map((b) => ({ bucket: b.path }));
  const served = (path: string, builder: string) =>
    serve.some((s) => s.bucket === path && (!s.builders || s.builders.includes(builder)));
  const dimensions =
    d.dimensions ??
    [
      ...new Set(
        buckets.flatMap((b) => b.builders.filter((bl) => served(b.path, bl.name)).flatMap((bl) => bl.dimensions)),
      ),
    ].sort();
  if (serve.length === 0) return undefined;
  const { enabled: _e, ...rest } = d;
  return {
    ...rest,
    api: apiUrl,
    name: d.name ?? `kiln-dev-${defaultRunnerName()}`,
    serve,
    dimensions,
    workDir: d.workDir ?? join(config.dataDir, 'runner'),
    // This runner lives in Kiln's own process: every secret of Kiln's config is in its env.
    secretEnv: [...envReferences(config).map((r) => r.variable), 'DATABASE_URL'],
  };
}

/** Starts the dev runner; undefined when disabled or there is nothing to serve. */
export function startDevRunner(
  config: KilnConfig,
  apiUrl: string,
  logger: pino.Logger,
): { stop(): Promise<void> } | undefined {
  const settings = devRunnerSettings(config, apiUrl);
  if (!settings) return undefined;
  const runner = new Runner(settings, logger.child({ component: 'runner', runner: settings.name }));
  runner.start();
  return { stop: () => runner.stop() };
}
