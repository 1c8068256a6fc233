/**
 * The long-running parts of Kiln as functions, so `kiln dev`, `kiln api`, `kiln worker` and the
 * end-to-end tests start them the same way. Each returns a `stop()` for a clean shutdown.
 */
import { join } from 'node:path';
import { type Client } from '@temporalio/client';
import { type FastifyInstance } from 'fastify';
import type pino from 'pino';
import { buildApi, listenApi } from '../api/server.ts';
import { BuildService } from '../builds/service.ts';
import { Registry } from '../config/load.ts';
import { type KilnConfig } from '../config/schema.ts';
import { FileLogStore } from '../logs/logStore.ts';
import { GerritIntake } from '../gerrit/intake.ts';
import { GerritHosts, resolveGerritSettings } from '../gerrit/settings.ts';
import { type Storage } from '../storage/storage.ts';
import { swarmingDepsFromConfig } from '../swarming/deps.ts';
import { connectWorker } from '../temporal/connection.ts';
import { createKilnWorker, installRuntimeLogger } from '../../workers/worker.ts';
import { launchpadForApi, launchpadForWorker, refUpdatedHook } from '../launchpad/runtime.ts'; // ---- launchpad ----

/** A started part of Kiln. */
export interface Running {
  stop(): Promise<void>;
}

/** Starts a worker on the configured task queue; resolves once it polls. */
export async function startWorker(opts: {
  config: KilnConfig;
  address: string;
  storage: Storage;
  logger: pino.Logger;
}): Promise<Running> {
  installRuntimeLogger(opts.logger);
  const connection = await connectWorker({ ...opts.config.temporal, address: opts.address });
  // ---- launchpad: branches checked before taking work; schedules and pollers reconciled once running ----
  const launchpad = await launchpadForWorker({ ...opts, connection });
  const worker = await createKilnWorker({
    connection,
    namespace: opts.config.temporal.namespace,
    taskQueue: opts.config.temporal.taskQueue,
    deps: {
      storage: opts.storage,
      logger: opts.logger.child({ component: 'activities' }),
      gerrit: gerritWorkerDeps(opts.config),
      swarming: swarmingDepsFromConfig(opts.config),
      launchpad: launchpad.context,
    },
  });
  const run = worker.run();
  await launchpad.reconcile();
  opts.logger.info({ taskQueue: opts.config.temporal.taskQueue }, 'worker running');
  return {
    stop: async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await run.catch((e: unknown) => opts.logger.error({ err: e }, 'worker stopped with an error'));
      await connection.close();
    },
  };
}

/** Starts the HTTP API; resolves with its URL once it listens. */
export async function startApi(opts: {
  config: KilnConfig;
  registry: Registry;
  client: Client;
  storage: Storage;
  logger: pino.Logger;
}): Promise<Running & { url: string; app: FastifyInstance; service: BuildService }> {
  const service = new BuildService({
    client: opts.client,
    storage: opts.storage,
    registry: opts.registry,
    taskQueue: opts.config.temporal.taskQueue,
    logger: opts.logger,
  });
  const gerrit = resolveGerritSettings(opts.config.gerrit, opts.registry);
  const ctx = {
    service,
    registry: opts.registry,
    logger: opts.logger,
    // PostgreSQL: every API process serves every log. Embedded: one process, files are cheaper.
    logs: opts.storage.kind === 'postgres' ? opts.storage.logs : new FileLogStore(join(opts.config.dataDir, 'logs')),
    gerrit: gerrit
      ? new GerritIntake({
          client: opts.client,
          registry: opts.registry,
          settings: gerrit,
          taskQueue: opts.config.temporal.taskQueue,
          logger: opts.logger.child({ component: 'gerrit' }),
          publicUrl: opts.config.api.publicUrl,
          onRefUpdated: refUpdatedHook(opts.config, opts.client, opts.logger.child({ component: 'launchpad' })),
        })
      : undefined,
    launchpad: await launchpadForApi(opts), // ---- launchpad ----
  };
  const app = buildApi(ctx, { bodyLimitBytes: opts.config.api.bodyLimitBytes });
  const url = await listenApi(app, ctx, opts.config.api.host, opts.config.api.port);
  opts.logger.info({ url }, 'API listening');
  return { url, app, service, stop: () => app.close() };
}

/** The Gerrit clients a worker's activities use, when the config has a `gerrit` block. */
export function gerritWorkerDeps(config: KilnConfig): { hosts: GerritHosts } | undefined {
  const settings = resolveGerritSettings(config.gerrit, new Registry(config));
  return settings ? { hosts: new GerritHosts(settings) } : undefined;
}
