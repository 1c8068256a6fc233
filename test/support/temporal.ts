/**
 * Test support: a real Temporal dev server (the CLI built by scripts/setup.sh) with Kiln's search
 * attributes, started once per test file; in-memory embedded storage; a worker per test.
 */
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, before } from 'node:test';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { NativeConnection, type Worker } from '@temporalio/worker';
import pino from 'pino';
import { BuildService, type BuildServiceOptions } from '../../src/builds/service.ts';
import { parseConfig, Registry } from '../../src/config/load.ts';
import { type KilnConfig } from '../../src/config/schema.ts';
import { KilnError } from '../../src/domain/errors.ts';
import { KILN_SEARCH_ATTRIBUTE_KEYS } from '../../src/domain/searchAttributes.ts';
import { openStorage } from '../../src/storage/open.ts';
import { type Storage } from '../../src/storage/storage.ts';
import { type SupervisedWorker, superviseWorker } from '../../workers/supervisor.ts';
import { createKilnWorker, installRuntimeLogger } from '../../workers/worker.ts';

export const TEMPORAL_CLI = resolve(import.meta.dirname, '../../.tools/bin/temporal');

/** Starts a dev server on a free port (in memory, no UI). */
export async function startDevEnv(): Promise<TestWorkflowEnvironment> {
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: TEMPORAL_CLI },
      ip: '127.0.0.1',
      searchAttributes: [...KILN_SEARCH_ATTRIBUTE_KEYS],
      log: { format: 'pretty', level: 'error' },
    },
  });
}

/** A silent logger unless KILN_TEST_LOG is set. */
export const testLogger = pino({ level: process.env.KILN_TEST_LOG ?? 'silent' });
installRuntimeLogger(testLogger);

let queueCounter = 0;

/** Everything a workflow test needs, wired like a real `kiln dev`, on its own task queue. */
export interface Harness {
  env: TestWorkflowEnvironment;
  storage: Storage;
  registry: Registry;
  service: BuildService;
  taskQueue: string;
  /** A fresh worker on this harness's task queue (not running). */
  newWorker(): Promise<Worker>;
  /** Another `BuildService` on this harness (same storage and task queue), with `options` changed. */
  newService(options: Partial<BuildServiceOptions>): BuildService;
}

/** The demo-ish config tests use unless they pass their own YAML. */
export const TEST_CONFIG = `
projects:
  - name: chromium
    buckets:
      - name: try
        builders:
          - name: linux-rel
            dimensions: ["os:Linux"]
          - name: short-lease
            leaseDurationSecs: 2
            maxLeaseResets: 1
          - name: no-resets
            leaseDurationSecs: 2
            maxLeaseResets: 0
          - name: quick-timeouts
            schedulingTimeoutSecs: 3
            executionTimeoutSecs: 3
`;

/** Builds a harness on `env` with in-memory storage. */
export async function harness(
  env: TestWorkflowEnvironment,
  configYaml = TEST_CONFIG,
  serviceOptions: Partial<BuildServiceOptions> = {},
): Promise<Harness> {
  const config: KilnConfig = parseConfig(configYaml, 'test-config.yaml', { LOG_LEVEL: 'silent' });
  const registry = new Registry(config);
  const storage = await openStorage({ kind: 'embedded' });
  const taskQueue = `kiln-test-${process.pid}-${++queueCounter}`;
  const newService = (options: Partial<BuildServiceOptions>) =>
    new BuildService({
      ...{ client: env.client, storage, registry, taskQueue, logger: testLogger },
      // The time-skipping server's clock runs ahead of this process's: every heartbeat goes to the workflow there.
      answerHeartbeatsFromLeases: !env.supportsTimeSkipping,
      ...options,
    });
  return {
    env,
    storage,
    registry,
    service: newService(serviceOptions),
    newService,
    taskQueue,
    newWorker: () =>
      createKilnWorker({
        connection: env.nativeConnection,
        namespace: env.namespace ?? 'default',
        taskQueue,
        deps: { storage, logger: testLogger },
      }),
  };
}

/**
 * For a `describe` block: starts a dev server and a harness on it before the block's tests (handed
 * to `use`), and stops both after them.
 */
export function withDevHarness(
  use: (env: TestWorkflowEnvironment, h: Harness) => void,
  serviceOptions: Partial<BuildServiceOptions> = {},
): void {
  let env: TestWorkflowEnvironment | undefined;
  let h: Harness | undefined;
  before(async () => {
    env = await startDevEnv();
    h = await harness(env, TEST_CONFIG, serviceOptions);
    use(env, h);
  });
  after(async () => {
    await h?.storage.close();
    await env?.teardown();
  });
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes. */
export async function eventually<T>(
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 15_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Asserts `p` rejects with a KilnError of `code`, and returns it. */
export async function rejectsWith(p: Promise<unknown>, code: string): Promise<KilnError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof KilnError, `expected KilnError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}, but the call succeeded`);
}

/** A Kiln worker under the supervisor, as `kiln worker` runs it, on the dev server at 127.0.0.1:`port`. */
export function supervisedWorker(o: {
  connection: NativeConnection;
  port: number;
  taskQueue: string;
  storage: Storage;
  /** The supervisor's `unansweredProbes` (default its own). */
  unansweredProbes?: number;
}): Promise<SupervisedWorker> {
  return superviseWorker({
    ...(o.unansweredProbes === undefined ? {} : { unansweredProbes: o.unansweredProbes }),
    connection: o.connection,
    address: `127.0.0.1:${o.port}`,
    logger: testLogger,
    connect: (address) => NativeConnection.connect({ address }),
    create: (connection) =>
      createKilnWorker({
        connection,
        namespace: 'default',
        taskQueue: o.taskQueue,
        deps: { storage: o.storage, logger: testLogger },
      }),
  });
}
