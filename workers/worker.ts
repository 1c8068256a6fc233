/**
 * Kiln's worker: hosts every workflow and activity on one task queue. Stateless, so run as many as
 * the load needs; each shares storage and the Temporal server with the others.
 */
import { fileURLToPath } from 'node:url';
import {
  bundleWorkflowCode,
  DefaultLogger,
  type LogLevel,
  type NativeConnection,
  Runtime,
  Worker,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import type pino from 'pino';
import { type ActivityDeps, createActivities } from '../activities/index.ts';
import { withBuildMetrics } from '../src/metrics/builds.ts';
import { type KilnMetrics } from '../src/metrics/registry.ts';

const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/** Bundles workflow code once per process (webpack takes seconds; every worker reuses it). */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: new DefaultLogger('WARN') });
  return bundle;
}

let runtimeInstalled = false;

/**
 * Routes the SDK's own logs (core and workflow `log`) into pino; once per process. With
 * `metricsBindAddress` the SDK also exports its metrics in Prometheus format there (src/metrics/sdk.ts).
 * Returns false when an earlier call had installed the Runtime already (its options stand).
 */
export function installRuntimeLogger(logger: pino.Logger, opts: { metricsBindAddress?: string } = {}): boolean {
  if (runtimeInstalled) return false;
  runtimeInstalled = true;
  const level = (logger.level.toUpperCase() === 'SILENT' ? 'ERROR' : logger.level.toUpperCase()) as LogLevel;
  const sdk = logger.child({ component: 'temporal-sdk' });
  Runtime.install({
    logger: new DefaultLogger(['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'].includes(level) ? level : 'INFO', (entry) => {
      const fn = entry.level === 'TRACE' ? 'trace' : (entry.level.toLowerCase() as 'debug' | 'info' | 'warn' | 'error');
      sdk[fn](entry.meta ?? {}, entry.message);
    }),
    ...(opts.metricsBindAddress !== undefined
      ? { telemetryOptions: { metrics: { prometheus: { bindAddress: opts.metricsBindAddress } } } }
      : {}),
  });
  return true;
}

/** Options for `createKilnWorker`. */
export interface KilnWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  deps: ActivityDeps;
  /** @default a worker-chosen identity */
  identity?: string;
  /** Counts build transitions as the activities store them (src/metrics/builds.ts). */
  metrics?: KilnMetrics;
}

/** Creates (does not run) a worker for Kiln's task queue. */
export async function createKilnWorker(opts: KilnWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities(
      opts.metrics ? { ...opts.deps, storage: withBuildMetrics(opts.deps.storage, opts.metrics) } : opts.deps,
    ),
    ...(opts.identity !== undefined ? { identity: opts.identity } : {}),
  });
}
