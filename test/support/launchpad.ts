/**
 * Test support for the Launchpad features on a real Temporal server: a harness (see temporal.ts)
 * whose workers carry the Launchpad context (git cache, store, build service), the reconciler, and
 * a "runner" that ends builds the way a lease-mode runner would.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { type Worker } from '@temporalio/worker';
import { parseConfig, Registry } from '../../src/config/load.ts';
import { type KilnConfig } from '../../src/config/schema.ts';
import { type Build } from '../../src/domain/build.ts';
import { LaunchpadApi } from '../../src/launchpad/api.ts';
import { LaunchpadContext } from '../../src/launchpad/context.ts';
import { reconcileLaunchpad, type ReconcileReport } from '../../src/launchpad/reconcile.ts';
import { LaunchpadStore } from '../../src/launchpad/store.ts';
import { BuildService } from '../../src/builds/service.ts';
import { openStorage } from '../../src/storage/open.ts';
import { type Storage } from '../../src/storage/storage.ts';
import { createKilnWorker } from '../../workers/worker.ts';
import { eventually, testLogger } from './temporal.ts';

let n = 0;

/** A harness with the Launchpad features wired as `kiln worker` and `kiln api` wire them. */
export interface LaunchpadHarness {
  env: TestWorkflowEnvironment;
  config: KilnConfig;
  storage: Storage;
  store: LaunchpadStore;
  service: BuildService;
  context: LaunchpadContext;
  api: LaunchpadApi;
  taskQueue: string;
  newWorker(): Promise<Worker>;
  reconcile(config?: KilnConfig): Promise<ReconcileReport>;
  /** Swaps the config workers and the API use (as a restart with a new file would). */
  useConfig(yaml: string): KilnConfig;
  /** Leases, starts and ends a SCHEDULED build. */
  finish(buildId: string, outcome: 'SUCCESS' | 'FAILURE'): Promise<Build>;
  close(): Promise<void>;
}

/** Builds a Launchpad harness on `env` for config `yaml` (its own task queue and git cache). */
export async function launchpadHarness(env: TestWorkflowEnvironment, yaml: string): Promise<LaunchpadHarness> {
  const taskQueue = `kiln-lp-${process.pid}-${++n}`;
  const gitCacheDir = mkdtempSync(join(tmpdir(), 'kiln-lp-cache-'));
  const storage = await openStorage({ kind: 'embedded' });
  const store = await LaunchpadStore.open(storage);
  const parse = (y: string): KilnConfig => {
    const c = parseConfig(y, 'kiln.yaml', { LOG_LEVEL: 'silent' });
    c.temporal.taskQueue = taskQueue;
    return c;
  };
  let config = parse(yaml);
  const make = () => {
    const registry = new Registry(config);
    const service = new BuildService({ client: env.client, storage, registry, taskQueue, logger: testLogger });
    const context = new LaunchpadContext({
      config,
      registry,
      storage,
      store,
      client: env.client,
      taskQueue,
      builds: service,
      logger: testLogger,
      gitCacheDir,
    });
    const api = new LaunchpadApi({ client: env.client, config, store, taskQueue });
    return { service, context, api };
  };
  let parts = make();
  const h: LaunchpadHarness = {
    env,
    get config() {
      return config;
    },
    storage,
    store,
    get service() {
      return parts.service;
    },
    get context() {
      return parts.context;
    },
    get api() {
      return parts.api;
    },
    taskQueue,
    newWorker: () =>
      createKilnWorker({
        connection: env.nativeConnection,
        namespace: env.namespace ?? 'default',
        taskQueue,
        deps: { storage, logger: testLogger, launchpad: parts.context },
      }),
    reconcile: (c) => reconcileLaunchpad({ client: env.client, config: c ?? config, taskQueue, logger: testLogger }),
    useConfig: (y) => {
      config = parse(y);
      parts = make();
      return config;
    },
    finish: async (id, outcome) => {
      const s = parts.service;
      await eventually(async () => (await storage.getBuild(id))?.status === 'SCHEDULED', 30_000, `build ${id} stored`);
      const { leaseKey } = await s.lease(id, { holder: 'test-runner' });
      await s.start(id, { leaseKey });
      return outcome === 'SUCCESS'
        ? s.succeed(id, { leaseKey })
        : s.fail(id, { leaseKey, summaryMarkdown: 'tests failed' });
    },
    close: async () => {
      await storage.close();
      rmSync(gitCacheDir, { recursive: true, force: true });
    },
  };
  return h;
}

/** The builds of `builder` (`project/bucket/builder`) for commit `sha` in storage. */
export async function buildsOf(storage: Storage, builder: string, sha: string): Promise<Build[]> {
  const [project, bucket, name] = builder.split('/');
  const page = await storage.searchBuilds({ builder: { project, bucket, builder: name }, limit: 100 });
  return page.builds.filter((b) => b.input.gitilesCommit?.id === sha);
}
