/**
 * Start-time resolution of Kiln's Swarming config: reads the task template files the service-level
 * `swarming` block names (relative to the config file), resolves its token env variables, and checks
 * every Swarming builder can be turned into a task — so a bad template or builder fails at start with
 * a message naming the file and the key, not on the first build.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { KilnError } from '../domain/errors.ts';
import { prepareSwarmingTask } from '../domain/swarming/build.ts';
import { type SwarmingServiceConfig, type TaskTemplate, TaskTemplateSchema } from '../domain/swarming/config.ts';
import { formatZodError } from '../domain/zodIssues.ts';
import { passedThroughPlaceholders } from '../domain/swarming/template.ts';
import { builderHash } from '../swarming/client.ts';
import { type ConfigNotice, type KilnConfig } from './schema.ts';

/** A Swarming config problem; the message names the file and the key. `parseConfig` rethrows it as a ConfigError. */
export class SwarmingConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SwarmingConfigError';
  }
}

/** Reads one task template file; `key` is the config key that named it, for messages. */
export function loadTaskTemplate(path: string, configFile: string, key: string): TaskTemplate {
  const full = resolve(dirname(configFile), path);
  const where = `${full} (${configFile}: ${key})`;
  let text: string;
  try {
    text = readFileSync(full, 'utf8');
  } catch (e) {
    throw new SwarmingConfigError(
      `${where}: cannot read task template: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SwarmingConfigError(`${where}: not valid JSON: ${(e as Error).message}`);
  }
  const r = TaskTemplateSchema.safeParse(json);
  if (!r.success) throw new SwarmingConfigError(`${where}: ${formatZodError(r.error, { all: true, separator: '; ' })}`);
  return r.data;
}

/** The Kiln hostname tasks are tagged with: `swarming.kilnHostname`, else the host of `api.publicUrl`, else `localhost`. */
export function kilnHostnameOf(cfg: KilnConfig): string {
  if (cfg.swarming?.kilnHostname) return cfg.swarming.kilnHostname;
  return cfg.api.publicUrl ? new URL(cfg.api.publicUrl).host : 'localhost';
}

/**
 * Checks and completes the Swarming parts of a parsed config (called by `parseConfig`): Swarming
 * buckets list no lease-mode builders; the service block exists when any bucket uses Swarming; task
 * templates load and validate; every Swarming builder merges (with a recipe) and renders with every
 * template. Returns the config with `swarmingTemplates` set.
 */
export function resolveSwarmingConfig(cfg: KilnConfig, file: string, env: NodeJS.ProcessEnv = process.env): KilnConfig {
  const buckets = cfg.projects.flatMap((p, pi) =>
    p.buckets.map((b, bi) => ({ project: p.name, bucket: b, key: `projects[${pi}].buckets[${bi}]` })),
  );
  const swarmingBuckets = buckets.filter((b) => b.bucket.swarming !== undefined);
  for (const b of swarmingBuckets) {
    if (b.bucket.builders.length > 0) {
      throw new SwarmingConfigError(
        `${file}: ${b.key}.builders: bucket ${b.project}/${b.bucket.name} has a swarming block, so its builders belong in swarming.builders (Swarming builders are never leased)`,
      );
    }
  }
  const service = cfg.swarming;
  if (!service) {
    const first = swarmingBuckets[0];
    if (first) {
      throw new SwarmingConfigError(
        `${file}: swarming.taskTemplate: required because bucket ${first.project}/${first.bucket.name} (${first.key}.swarming) uses Swarming`,
      );
    }
    return cfg;
  }
  if (service.notifyTokenEnv !== undefined) {
    const v = env[service.notifyTokenEnv];
    if (!v)
      throw new SwarmingConfigError(
        `${file}: swarming.notifyTokenEnv: environment variable ${service.notifyTokenEnv} is not set`,
      );
    service.notifyToken = v;
  }
  if (service.tokenEnv !== undefined && !env[service.tokenEnv]) {
    throw new SwarmingConfigError(`${file}: swarming.tokenEnv: environment variable ${service.tokenEnv} is not set`);
  }
  const templates: SwarmingServiceConfig = {
    task_template: loadTaskTemplate(service.taskTemplate, file, 'swarming.taskTemplate'),
    ...(service.taskTemplateCanary !== undefined
      ? { task_template_canary: loadTaskTemplate(service.taskTemplateCanary, file, 'swarming.taskTemplateCanary') }
      : {}),
  };
  const notices = templateNotices(templates, service, file);
  const kilnHostname = kilnHostnameOf(cfg);
  for (const b of swarmingBuckets) {
    const bucket = b.bucket.swarming!;
    bucket.builders.forEach((builder, i) => {
      const forced = templates.task_template_canary ? [false, true] : [false];
      for (const canaryTemplate of forced) {
        try {
          prepareSwarmingTask(
            {
              hostname: bucket.hostname,
              bucket,
              templates,
              canaryTemplate,
              builderHash: builderHash(b.bucket.name, builder.name),
              kilnHostname,
              syncIntervalMs: service.syncIntervalSecs * 1000,
              ...(service.pubsubTopic !== undefined ? { pubsubTopic: service.pubsubTopic } : {}),
            },
            {
              id: '1',
              builder: { project: b.project, bucket: b.bucket.name, builder: builder.name },
              tags: [],
              input: { properties: {} },
            },
            0,
          );
        } catch (e) {
          if (!(e instanceof KilnError)) throw e;
          const with_ = canaryTemplate ? ' with the canary task template' : '';
          throw new SwarmingConfigError(
            `${file}: ${b.key}.swarming.builders[${i}] (${builder.name})${with_}: ${e.message}`,
          );
        }
      }
    });
  }
  return { ...cfg, swarmingTemplates: templates, notices: [...(cfg.notices ?? []), ...notices] };
}

/**
 * What a start log says about the task templates: the placeholders Kiln leaves for Swarming's bots
 * (listed once), and a warning for each one that looks like a typo of a parameter Kiln fills in.
 */
function templateNotices(
  templates: SwarmingServiceConfig,
  service: NonNullable<KilnConfig['swarming']>,
  file: string,
): ConfigNotice[] {
  const notices: ConfigNotice[] = [];
  const files = [
    { t: templates.task_template, key: 'swarming.taskTemplate', path: service.taskTemplate },
    ...(templates.task_template_canary && service.taskTemplateCanary !== undefined
      ? [{ t: templates.task_template_canary, key: 'swarming.taskTemplateCanary', path: service.taskTemplateCanary }]
      : []),
  ];
  for (const f of files) {
    const where = `${resolve(dirname(file), f.path)} (${file}: ${f.key})`;
    const found = passedThroughPlaceholders(f.t.template);
    const names = [...new Set(found.map((p) => p.name))];
    if (names.length > 0) {
      notices.push({
        level: 'info',
        message: `${where}: placeholders left for Swarming to fill in: ${names.map((n) => `\${${n}}`).join(', ')}`,
      });
    }
    for (const p of found.filter((p) => p.looksLike !== undefined)) {
      notices.push({
        level: 'warn',
        message: `${where}: placeholder "${p.name}" at ${p.at} is not one Kiln fills in; did you mean "${p.looksLike}"?`,
      });
    }
  }
  return notices;
}
