/**
 * Kiln's worker: hosts every workflow and activity on one task queue. Stateless, so run as many as
 * the load needs; each shares storage and the Temporal server with the others.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  bundleWorkflowCode,
  DefaultLogger,
  type LogLevel,
  type NativeConnection,
  Runtime,
  Worker,
  type WorkflowBundle,
} from '@temporalio/worker';
import type pino from 'pino';
import { type ActivityDeps, createActivities } from '../activities/index.ts';
import { withBuildMetrics } from '../src/metrics/builds.ts';
import { type KilnMetrics } from '../src/metrics/registry.ts';
import { DEFAULT_MAX_CACHED_WORKFLOWS } from '../src/config/schema.ts';

const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/**
 * The workflow bundle `npm run build` writes beside the compiled code (`dist/workflow-bundle.js`). Only compiled
 * code uses it: from the sources (tsx) the bundle is made at start, so it always matches the sources.
 */
export const PREBUILT_WORKFLOW_BUNDLE = fileURLToPath(new URL('../workflow-bundle.js', import.meta.url));
const RUNNING_COMPILED = import.meta.url.endsWith('.js');

/** Bundles Kiln's workflow code with webpack (seconds of CPU); `npm run build` runs it once, at build time. */
export function bundleKilnWorkflows(): Promise<WorkflowBundle> {
  return bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: new DefaultLogger('WARN') });
}

let bundle: Promise<WorkflowBundle> | undefined;

/**
 * The workflow bundle every worker of this process uses: the prebuilt one when running compiled, else bundled once
 * per process from the sources.
 */
export function workflowBundle(): Promise<WorkflowBundle> {
  bundle ??= RUNNING_COMPILED ? readPrebuiltBundle() : bundleKilnWorkflows();
  return bundle;
}

async function readPrebuiltBundle(): Promise<WorkflowBundle> {
  if (!existsSync(PREBUILT_WORKFLOW_BUNDLE)) {
    throw new Error(`${PREBUILT_WORKFLOW_BUNDLE} is missing: the build is incomplete, run \`npm run build\` again`);
  }
  return { code: readFileSync(PREBUILT_WORKFLOW_BUNDLE, 'utf8') };
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
    // Kiln's processes stop their workers themselves, in order (kiln dev: runner, API, then the
    // worker), so a build being stopped is still reported; the SDK must not stop them on a signal.
    shutdownSignals: [],
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
  /** Workflows kept in memory between tasks (config `worker.maxCachedWorkflows`). @default 2000 */
  maxCachedWorkflows?: number;
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
    maxCachedWorkflows: opts.maxCachedWorkflows ?? DEFAULT_MAX_CACHED_WORKFLOWS,
  });
}
