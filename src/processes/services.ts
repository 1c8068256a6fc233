/**
 * The long-running parts of Kiln as functions, so `kiln dev`, `kiln api`, `kiln worker` and the
 * end-to-end tests start them the same way. Each returns a `stop()` for a clean shutdown.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Client } from '@temporalio/client';
import { type FastifyInstance } from 'fastify';
import type pino from 'pino';
import { buildApi, listenApi } from '../api/server.ts';
import { BuildRepairer } from '../builds/repair.ts';
import { BuildService } from '../builds/service.ts';
import { BuildWatcher } from '../builds/watch.ts';
import { kilnMetrics } from '../metrics/registry.ts';
import { clearSdkMetricsAddress, reserveSdkMetricsAddress } from '../metrics/sdk.ts';
import { metricsToken, startMetricsServer } from '../metrics/server.ts';
import { Registry } from '../config/load.ts';
import { type KilnConfig } from '../config/schema.ts';
import { FileLogStore } from '../logs/logStore.ts';
import { KILN_VERSION, startTinderboxSsh } from '../builds/tinderboxSsh.ts';
import { GerritIntake } from '../gerrit/intake.ts';
import { GerritHosts, resolveGerritSettings } from '../gerrit/settings.ts';
import { type Storage } from '../storage/storage.ts';
import { swarmingDepsFromConfig } from '../swarming/deps.ts';
import { connectWorker } from '../temporal/connection.ts';
import { replayFailure } from '../../workers/replay.ts';
import { superviseWorker } from '../../workers/supervisor.ts';
import { createKilnWorker, installRuntimeLogger } from '../../workers/worker.ts';
import { temporalUnreachable } from './runtime.ts';

/** How long a stopping API waits for calls in flight before it closes their connections. */
const API_DRAIN_MS = 3000;
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
  /** Serve /metrics on `metrics.worker` (`kiln worker`; `kiln dev` serves them on the API). */
  serveMetrics?: boolean;
}): Promise<Running> {
  // Metrics (issue 17): the SDK's Prometheus exporter on a loopback port, appended to /metrics.
  const metricsOn = opts.config.metrics.enabled;
  const metricsBindAddress = metricsOn ? await reserveSdkMetricsAddress() : undefined;
  if (!installRuntimeLogger(opts.logger, { metricsBindAddress }) && metricsBindAddress) clearSdkMetricsAddress();
  const metricsServer =
    metricsOn && opts.serveMetrics
      ? await startMetricsServer({
          m: kilnMetrics(),
          host: opts.config.metrics.worker.host,
          port: opts.config.metrics.worker.port,
          token: metricsToken(opts.config.metrics),
        }).catch((e: unknown) => {
          // A second worker on this host: it runs all the same (builds matter more than its metrics).
          if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
          opts.logger.warn(
            { port: opts.config.metrics.worker.port },
            'metrics.worker.port is taken (another kiln worker on this host?): this worker serves no /metrics; give each its own port',
          );
          return undefined;
        })
      : undefined;
  if (metricsServer) opts.logger.info({ url: metricsServer.url }, 'worker metrics listening');
  let connection;
  try {
    connection = await connectWorker({ ...opts.config.temporal, address: opts.address });
  } catch (e) {
    await metricsServer?.close();
    throw temporalUnreachable(opts.address, e);
  }
  // ---- launchpad: branches checked before taking work; schedules and pollers reconciled once running ----
  const launchpad = await launchpadForWorker({ ...opts, connection });
  // A fresh worker after every Temporal outage: its workflow cache never outlives what the server lost.
  const supervised = await superviseWorker({
    connection,
    address: opts.address,
    logger: opts.logger,
    // Each worker through a relay of its own, cut at an outage (workers/relay.ts).
    connect: (relay) => connectWorker({ ...opts.config.temporal, address: opts.address }, relay),
    create: (workerConnection) =>
      createKilnWorker({
        connection: workerConnection,
        namespace: opts.config.temporal.namespace,
        taskQueue: opts.config.temporal.taskQueue,
        deps: {
          storage: opts.storage,
          logger: opts.logger.child({ component: 'activities' }),
          gerrit: gerritWorkerDeps(opts.config),
          swarming: swarmingDepsFromConfig(opts.config),
          launchpad: launchpad.context,
        },
        ...(metricsOn ? { metrics: kilnMetrics() } : {}),
        maxCachedWorkflows: opts.config.worker.maxCachedWorkflows, // issue 18: a sized workflow cache
      }),
  });
  await launchpad.reconcile();
  opts.logger.info({ taskQueue: opts.config.temporal.taskQueue }, 'worker running');
  return {
    stop: async () => {
      supervised.shutdown();
      await supervised.done.catch((e: unknown) => opts.logger.error({ err: e }, 'worker stopped with an error'));
      await connection.close();
      await metricsServer?.close();
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
  // Builds stopped on a nondeterminism error go on from storage (src/builds/repair.ts): looked at when
  // a call to one goes unanswered, and swept for. Every API process may do it: a repair is one atomic
  // terminate-and-start, and a second look finds the new run working.
  const repairer =
    opts.config.api.repairIntervalSecs > 0
      ? new BuildRepairer({
          client: opts.client,
          storage: opts.storage,
          taskQueue: opts.config.temporal.taskQueue,
          logger: opts.logger.child({ component: 'repair' }),
          replayFailure,
        })
      : undefined;
  const service = new BuildService({
    client: opts.client,
    storage: opts.storage,
    registry: opts.registry,
    taskQueue: opts.config.temporal.taskQueue,
    logger: opts.logger,
    ...(repairer ? { onUnanswered: (id: string) => repairer.noteUnanswered(id) } : {}),
    ...(opts.config.metrics.enabled ? { metrics: kilnMetrics() } : {}),
  });
  const gerrit = resolveGerritSettings(opts.config.gerrit, opts.registry);
  // Runners long-poll this for canceled builds (issue 17): one storage read per poll for all of them.
  const watcher = new BuildWatcher({
    storage: opts.storage,
    onError: (e) => opts.logger.warn({ err: e }, 'lease watch: storage read failed'),
  });
  const ctx = {
    service,
    watcher,
    registry: opts.registry,
    logger: opts.logger,
    // The web UI's read endpoints and live updates (storage), and its stuck-build report (Temporal).
    storage: opts.storage,
    client: opts.client,
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
  const app = buildApi(ctx, {
    bodyLimitBytes: opts.config.api.bodyLimitBytes,
    ...(opts.config.metrics.enabled
      ? {
          metrics: {
            storage: opts.storage,
            registry: opts.registry,
            token: metricsToken(opts.config.metrics),
            watcher,
          },
        }
      : {}),
  });
  const url = await listenApi(app, ctx, opts.config.api.host, opts.config.api.port);
  opts.logger.info({ url }, 'API listening');
  const repairs = repairer?.start(opts.config.api.repairIntervalSecs * 1000);
  // Tinderboxes over SSH (the Buildbot Gerrit Plugin's commands), when configured.
  const ssh = opts.config.tinderboxSsh
    ? await startTinderboxSsh(
        opts.config.tinderboxSsh,
        {
          service,
          logs: ctx.logs,
          buckets: opts.registry.bucketPaths(),
          projects: gerrit?.projects ?? [],
          intake: ctx.gerrit,
          hosts: gerrit ? new GerritHosts(gerrit) : undefined,
          version: KILN_VERSION,
        },
        {
          logger: opts.logger.child({ component: 'tinderbox-ssh' }),
          hostKeyFile: join(opts.config.dataDir, 'ssh_host_rsa_key'),
        },
      )
    : undefined;
  return {
    url,
    app,
    service,
    // Calls in flight get a moment to finish; then their connections are closed (a call waiting on
    // an unreachable Temporal must not hold the shutdown for its whole timeout).
    stop: async () => {
      await repairs?.stop();
      await ssh?.close();
      await watcher.close(); // answers the runners' long polls, so close() need not wait for them
      const closed = app.close();
      const drained = await Promise.race([closed.then(() => true), sleep(API_DRAIN_MS).then(() => false)]);
      if (!drained) {
        opts.logger.warn('API calls still in flight at shutdown: closing their connections');
        app.server.closeAllConnections();
        await Promise.race([closed, sleep(API_DRAIN_MS)]);
      }
    },
  };
}

/** The Gerrit clients a worker's activities use, when the config has a `gerrit` block. */
export function gerritWorkerDeps(config: KilnConfig): { hosts: GerritHosts } | undefined {
  const settings = resolveGerritSettings(config.gerrit, new Registry(config));
  return settings ? { hosts: new GerritHosts(settings) } : undefined;
}
