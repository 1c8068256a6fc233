/**
 * Kiln's config file (YAML or JSON): projects → buckets → builders, bucket ACLs, and where the
 * Temporal server, storage and API live. Validated with zod at start; every field has a default
 * where one makes sense, so the demo config stays short.
 */
import { z } from 'zod';
import { checkoutSchema, devRunnerSchema } from '../runner/settings.ts';
import { gerritConfigSchema } from './gerrit.ts';
import { tinderboxSshConfigSchema } from './tinderboxSsh.ts';
import { SwarmingBucketConfigSchema, type SwarmingServiceConfig } from '../domain/swarming/config.ts';
import { swarmingServiceSchema } from './swarmingSchema.ts';
import { UI_DEFAULTS, uiConfigSchema } from './ui.ts';
import { BUILDER_NAME_RE, BUILDER_NAME_RULE } from '../domain/names.ts';
// ---- launchpad (schedulers, git pollers, promotions, notifications) ----
import { checkLaunchpadConfig, launchpadConfigShape } from './launchpad.ts';

/** Access levels on a bucket; each includes the ones before it. */
export const ROLES = ['READER', 'SCHEDULER', 'WRITER'] as const;
export type Role = (typeof ROLES)[number];

const name = z.string().regex(/^[a-z0-9][a-z0-9._-]*$/i, 'letters, digits, ".", "_", "-"');
const builderName = z.string().regex(BUILDER_NAME_RE, BUILDER_NAME_RULE);
const dimension = z.string().regex(/^[^:\s]+:\S.*$/, 'a "key:value" dimension');

/** One builder in a bucket. */
export const builderSchema = z
  .object({
    name: builderName,
    /** Dimensions a runner must cover to lease this builder's builds. */
    dimensions: z.array(dimension).default([]),
    /** Lower runs first (0–255, as Buildbucket and Swarming). @default 30 */
    priority: z.number().int().min(0).max(255).default(30),
    /** Lease length when a runner asks for none. @default 60 */
    leaseDurationSecs: z.number().int().positive().default(60),
    /** Longest lease a runner may ask for. @default 14400 (4 h, the Buildbot Gerrit Plugin's) */
    maxLeaseDurationSecs: z
      .number()
      .int()
      .positive()
      .default(4 * 3600),
    /** Expired leases that reschedule the build before it ends INFRA_FAILURE. @default 1 */
    maxLeaseResets: z.number().int().min(0).max(100).default(1),
    /** @default 21600 (6 h) */
    schedulingTimeoutSecs: z
      .number()
      .int()
      .positive()
      .default(6 * 3600),
    /** @default 10800 (3 h) */
    executionTimeoutSecs: z
      .number()
      .int()
      .positive()
      .default(3 * 3600),
    /** Properties every build of this builder gets; the schedule request's own win. */
    properties: z.record(z.string(), z.unknown()).default({}),
    /** What `kiln runner` runs for this builder: argv, with build properties in env and a JSON file. */
    command: z.array(z.string()).min(1).optional(),
    /** What `kiln runner` checks out before running `command` (which then runs in the checkout). */
    checkout: checkoutSchema.optional(),
  })
  .strict();

/** Who may do what on a bucket: a bearer token (inline, or read from an env variable) and a role. */
export const aclSchema = z
  .object({
    role: z.enum(ROLES),
    /** Who holds the token, recorded as createdBy/canceledBy. */
    name: z.string().optional(),
    token: z.string().min(16, 'tokens must be at least 16 characters').optional(),
    tokenEnv: z.string().optional(),
  })
  .strict()
  .refine((a) => (a.token === undefined) !== (a.tokenEnv === undefined), 'give exactly one of token or tokenEnv');

export const bucketSchema = z
  .object({
    name,
    acls: z.array(aclSchema).default([]),
    builders: z.array(builderSchema).default([]),
    /** Makes this a Swarming bucket: its builders are listed here and pushed to Swarming, never leased. */
    swarming: SwarmingBucketConfigSchema.optional(),
  })
  .strict();

export const projectSchema = z.object({ name, buckets: z.array(bucketSchema).default([]) }).strict();

/** The `metrics` block: where `kiln worker` serves /metrics and the token Prometheus must send. */
export const metricsConfigSchema = z
  .object({
    /** Off: no /metrics anywhere and no Temporal SDK exporter. @default true */
    enabled: z.boolean().default(true),
    /** `kiln worker`'s own endpoint (`kiln dev` and `kiln api` serve /metrics on the API's port). */
    worker: z
      .object({
        host: z.string().default('127.0.0.1'),
        /** @default 9464 */
        port: z.number().int().min(0).max(65535).default(9464),
      })
      .strict()
      .default({ host: '127.0.0.1', port: 9464 }),
    /** Bearer token scrapes must send; needed once the API has ACLs (or a worker listens beyond loopback). */
    token: z.string().min(16, 'tokens must be at least 16 characters').optional(),
    tokenEnv: z.string().optional(),
  })
  .strict()
  .refine((m) => m.token === undefined || m.tokenEnv === undefined, 'give at most one of token or tokenEnv');

// ---- worker (issue 18) ----
/** Default of `worker.maxCachedWorkflows`. */
export const DEFAULT_MAX_CACHED_WORKFLOWS = 2000;

/**
 * The `worker` block. A worker keeps the workflows it ran lately in memory (the SDK's sticky cache),
 * so their next message costs no replay; a build not in the cache is replayed from its history
 * first (a few ms of CPU and one extra round trip to the server). Each cached build costs roughly
 * 0.1–0.15 MB of the worker's memory, so the cache is sized here rather than from the heap limit
 * (the SDK's default grows with the machine's memory, e.g. ~2,300 on 24 GiB).
 */
export const workerConfigSchema = z
  .object({
    /**
     * Builds (and other workflows) each worker process keeps in memory; 0 turns the cache off.
     * Raise it towards the number of builds open at once when memory allows. @default 2000
     */
    maxCachedWorkflows: z.number().int().min(0).max(1_000_000).default(DEFAULT_MAX_CACHED_WORKFLOWS),
  })
  .strict()
  .refine((w) => w.maxCachedWorkflows !== 1, {
    message: 'maxCachedWorkflows must be 0 (no cache) or at least 2',
    path: ['maxCachedWorkflows'],
  });
// ---- end worker ----

/** The whole config file. */
export const configSchema = z
  .object({
    /** Where embedded storage, logs and the dev server's database live. @default ".kiln" */
    dataDir: z.string().default('.kiln'),
    api: z
      .object({
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8080),
        /** Largest JSON request body. @default 1048576 (1 MiB) */
        bodyLimitBytes: z
          .number()
          .int()
          .positive()
          .default(1024 * 1024),
        /** Public base URL, used in links (build pages, logs). */
        publicUrl: z.string().url().optional(),
        /**
         * Lease-key calls (start, heartbeat, succeed, fail, log, tinderbox report) one client address
         * may have in flight; more answer UNAVAILABLE. @default 64
         */
        maxLeaseCallsInFlightPerClient: z.number().int().positive().default(64),
        /**
         * How often the API looks for builds stopped on a nondeterminism error and restarts them from
         * storage (src/builds/repair.ts); 0 turns it off. @default 30
         */
        repairIntervalSecs: z.number().int().min(0).default(30),
      })
      .strict()
      .default({
        host: '127.0.0.1',
        port: 8080,
        bodyLimitBytes: 1024 * 1024,
        maxLeaseCallsInFlightPerClient: 64,
        repairIntervalSecs: 30,
      }),
    temporal: z
      .object({
        /** host:port; absent → `kiln dev` starts its own dev server. */
        address: z.string().optional(),
        namespace: z.string().default('default'),
        taskQueue: z.string().default('kiln'),
        tls: z
          .object({
            serverName: z.string().optional(),
            caPath: z.string().optional(),
            certPath: z.string().optional(),
            keyPath: z.string().optional(),
          })
          .strict()
          .optional(),
        apiKeyEnv: z.string().optional(),
        /** Dev server ports when Kiln starts its own. */
        devServer: z
          .object({ port: z.number().int().default(7233), uiPort: z.number().int().default(8233) })
          .strict()
          .default({ port: 7233, uiPort: 8233 }),
      })
      .strict()
      .default({ namespace: 'default', taskQueue: 'kiln', devServer: { port: 7233, uiPort: 8233 } }),
    storage: z
      .discriminatedUnion('kind', [
        z.object({ kind: z.literal('embedded') }).strict(),
        z
          .object({
            kind: z.literal('postgres'),
            url: z.string().min(1),
            maxConnections: z.number().int().positive().optional(),
          })
          .strict(),
      ])
      .default({ kind: 'embedded' }),
    projects: z.array(projectSchema).default([]),
    /** The runner `kiln dev` starts next to the API (see src/runner/settings.ts); absent → on, with defaults. */
    devRunner: devRunnerSchema.optional(),
    /** Service-wide Swarming settings (task templates, notifications); needed by Swarming buckets. */
    swarming: swarmingServiceSchema.optional(),
    /** Gerrit change verification (hosts, event secret, per-project triggers); absent → off. */
    gerrit: gerritConfigSchema.optional(),
    /** The web UI served under `/` (src/config/ui.ts). */
    ui: uiConfigSchema.default(UI_DEFAULTS),
    /** Tinderboxes over SSH (the Buildbot Gerrit Plugin's commands); see src/config/tinderboxSsh.ts. */
    tinderboxSsh: tinderboxSshConfigSchema.optional(),
    /** Prometheus metrics: `/metrics` on the API, and on each `kiln worker` (see src/metrics/). */
    metrics: metricsConfigSchema.default({ enabled: true, worker: { host: '127.0.0.1', port: 9464 } }),
    // ---- launchpad: repositories, schedulers, promotions, merges, notifications, git (src/config/launchpad.ts) ----
    ...launchpadConfigShape,
    // ---- worker (issue 18): the workflow cache of each `kiln worker` / `kiln dev` ----
    worker: workerConfigSchema.default({ maxCachedWorkflows: DEFAULT_MAX_CACHED_WORKFLOWS }),
    // ---- end worker ----
    /** Build logs. */
    logs: z
      .object({
        /** Most bytes one attempt's log may hold; uploads past it get PAYLOAD_TOO_LARGE. @default 16777216 (16 MiB) */
        maxBytesPerAttempt: z
          .number()
          .int()
          .positive()
          .default(16 * 1024 * 1024),
      })
      .strict()
      .default({ maxBytesPerAttempt: 16 * 1024 * 1024 }),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    checkLaunchpadConfig(cfg, ctx); // ---- launchpad ----
    const seen = new Set<string>();
    cfg.projects.forEach((p, pi) =>
      p.buckets.forEach((b, bi) =>
        b.builders.forEach((bl, bli) => {
          const id = `${p.name}/${b.name}/${bl.name}`;
          if (seen.has(id)) {
            ctx.addIssue({
              code: 'custom',
              message: `duplicate builder ${id}`,
              path: ['projects', pi, 'buckets', bi, 'builders', bli, 'name'],
            });
          }
          seen.add(id);
          if (bl.leaseDurationSecs > bl.maxLeaseDurationSecs) {
            ctx.addIssue({
              code: 'custom',
              message: 'leaseDurationSecs must not exceed maxLeaseDurationSecs',
              path: ['projects', pi, 'buckets', bi, 'builders', bli, 'leaseDurationSecs'],
            });
          }
        }),
      ),
    );
  });

/** Something a process logs once at start about its config: not an error, but worth a look. */
export interface ConfigNotice {
  level: 'info' | 'warn';
  message: string;
}

/**
 * The loaded config; `swarmingTemplates` holds the task templates read from `swarming.taskTemplate*`,
 * `notices` what the process logs about the config at start.
 */
export type KilnConfig = z.infer<typeof configSchema> & {
  swarmingTemplates?: SwarmingServiceConfig;
  notices?: ConfigNotice[];
  /** ---- launchpad ----: the file the config came from, for errors found after parsing (missing branches). */
  configFile?: string;
};
export type BuilderConfig = z.infer<typeof builderSchema>;
export type BucketConfig = z.infer<typeof bucketSchema>;
