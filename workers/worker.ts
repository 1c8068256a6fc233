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

const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/** Bundles workflow code once per process (webpack takes seconds; every worker reuses it). */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: new DefaultLogger('WARN') });
  return bundle;
}

let runtimeInstalled = false;

/** Routes the SDK's own logs (core and workflow `log`) into pino; once per process. */
export function installRuntimeLogger(logger: pino.Logger): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  const level = (logger.level.toUpperCase() === 'SILENT' ? 'ERROR' : logger.level.toUpperCase()) as LogLevel;
  const sdk = logger.child({ component: 'temporal-sdk' });
  Runtime.install({
    // Kiln's processes stop their workers themselves, in order (kiln dev: runner, API, then the
    // worker), so a build being stopped is still reported; the SDK must not stop them on a signal.
    shutdownSignals: [],
    logger: new DefaultLogger(['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'].includes(level) ? level : 'INFO', (entry) => {
      const fn = entry.level === 'TRACE' ? 'trace' : (entry.level.toLowerCase() as 'debug' | 'info' | 'warn' | 'error');
      sdk[fn](entry.meta ?? {}, entry.message);
    }),
  });
}

/** Options for `createKilnWorker`. */
export interface KilnWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  deps: ActivityDeps;
  /** @default a worker-chosen identity */
  identity?: string;
}

/** Creates (does not run) a worker for Kiln's task queue. */
export async function createKilnWorker(opts: KilnWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities(opts.deps),
    ...(opts.identity !== undefined ? { identity: opts.identity } : {}),
  });
}
