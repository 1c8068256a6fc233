/**
 * Test support for change verification: Kiln's real API (Fastify, on 127.0.0.1) with the Gerrit intake and
 * tinderbox routes, embedded storage, and workers with the Gerrit activities — wired like `kiln dev`, on one
 * Temporal test environment (dev server or time-skipping) — over either a real Gerrit (`realGerritHarness`:
 * events come from `kiln gerrit listen` reading `gerrit stream-events` over SSH) or the HTTP fake
 * (`verificationHarness`, for what a real Gerrit cannot be made to do on demand). Each harness has its own task
 * queue; fake harnesses their own Gerrit host name, so workflow IDs never collide.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { type Worker } from '@temporalio/worker';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes.js';
import { type FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/server.ts';
import { BuildService } from '../../src/builds/service.ts';
import { type TinderboxTask } from '../../src/builds/tinderbox.ts';
import { parseConfig, Registry } from '../../src/config/load.ts';
import { type Build } from '../../src/domain/build.ts';
import { KILN_SEARCH_ATTRIBUTE_KEYS } from '../../src/domain/searchAttributes.ts';
import { verificationWorkflowId } from '../../src/domain/buildId.ts';
import { GerritIntake } from '../../src/gerrit/intake.ts';
import { GerritHosts, type GerritSettings, resolveGerritSettings } from '../../src/gerrit/settings.ts';
import { FileLogStore } from '../../src/logs/logStore.ts';
import { openStorage } from '../../src/storage/open.ts';
import { type Storage } from '../../src/storage/storage.ts';
import { type StoredVerification } from '../../src/domain/verification.ts';
import { type VerificationState } from '../../workflows/changeVerification.ts';
import { createKilnWorker } from '../../workers/worker.ts';
import { FakeGerritServer } from '../fakes/gerritServer.ts';
import { type GerritWorld } from './gerrit.ts';
import { eventually, testLogger } from './temporal.ts';

export const JAVA_TEST_SERVER = join(import.meta.dirname, '../../.tools/bin/temporal-test-server');
export const EVENT_SECRET = 'test-event-secret-0123456789';
export const PUBLIC_URL = 'http://kiln.test';
const KILN_BIN = join(import.meta.dirname, '../../bin/kiln.js');
const GERRIT_PASSWORD_ENV = 'KILN_TEST_GERRIT_PASSWORD';
process.env[GERRIT_PASSWORD_ENV] = 'kiln-http-password';

/** Accounts on the fake Gerrit. */
export const ACCOUNTS = {
  kiln: {
    _account_id: 1000,
    username: 'kiln',
    name: 'Kiln',
    email: 'kiln@example.org',
    password: 'kiln-http-password',
  },
  alice: { _account_id: 1, username: 'alice', name: 'Alice', email: 'alice@example.org' },
  norbert: { _account_id: 2, username: 'norbert', name: 'Norbert', email: 'norbert@example.org' },
  bob: { _account_id: 3, username: 'bob', name: 'Bob', email: 'bob@example.org' },
} as const;

/** Registers Kiln's search attributes on a time-skipping test server (the dev server takes them at start). */
export async function registerSearchAttributes(env: TestWorkflowEnvironment): Promise<void> {
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: Object.fromEntries(
      KILN_SEARCH_ATTRIBUTE_KEYS.map((k) => [k.name, encodeSearchAttributeIndexedValueType(k.type)!]),
    ),
  });
}

/**
 * The Java time-skipping test server with Kiln's search attributes. The SDK gives the JVM a fixed 5 s
 * to start listening, which a loaded CI machine can miss, so a failed start is tried again (twice).
 */
export async function startTimeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  for (let attempt = 1; ; attempt++) {
    try {
      const env = await TestWorkflowEnvironment.createTimeSkipping({
        server: { executable: { type: 'existing-path', path: JAVA_TEST_SERVER } },
      });
      await registerSearchAttributes(env);
      return env;
    } catch (e) {
      if (attempt >= 3 || !/did not start within/.test(String(e))) throw e;
    }
  }
}

/** Options of `verificationHarness`. */
export interface VerificationHarnessOptions {
  /** @default 3600 */
  idleTimeoutSecs?: number;
  /** Builder YAML overrides (lease etc.). */
  leaseDurationSecs?: number;
}

let counter = 0;

/** A patchset as events name it. */
export interface Ps {
  number: number;
  revision: string;
  ref: string;
}

/** Kiln under test (API, storage, workers) wired for Gerrit verification; see the module comment. */
export interface KilnUnderTest {
  env: TestWorkflowEnvironment;
  host: string;
  settings: GerritSettings;
  intake: GerritIntake;
  logs: FileLogStore;
  storage: Storage;
  service: BuildService;
  taskQueue: string;
  registry: Registry;
  /** The API base URL (changes when `restartApi` runs). */
  url: string;
  newWorker(): Promise<Worker>;
  /** Closes the API and starts a new one on the same port-less config (a restart). */
  restartApi(): Promise<void>;
  close(): Promise<void>;
  /** POSTs a stream event; returns status and JSON body. */
  sendEvent(
    event: unknown,
    secret?: string,
  ): Promise<{
    status: number;
    body: { actions?: { action: string; reason: string; workflowId?: string }[]; code?: string; message?: string };
  }>;
  getTask(platform: string, tinderboxId: string, capabilities?: string[]): Promise<TinderboxTask | null>;
  report(
    task: Pick<TinderboxTask, 'buildId' | 'leaseKey'>,
    outcome: 'SUCCESS' | 'FAILURE',
    log?: string,
  ): Promise<{ status: number; body: Build & { code?: string } }>;
  /** The verification's final state (waits for it to exist, then to end). */
  result(change: number, patchset: number): Promise<VerificationState>;
  /** The change's stored verifications, newest patch set first (`GET /api/v1/verifications`). */
  verifications(change: number): Promise<StoredVerification[]>;
  /** The builds of a patchset's buildset, newest first. */
  builds(change: number, patchset: number): Promise<Build[]>;
}

/** A harness over the fake Gerrit. */
export interface VerificationHarness extends KilnUnderTest {
  fake: FakeGerritServer;
  /** Kiln's messages on a change (marker line stripped), in order, with the votes they carried. */
  kilnReviews(change: number): { message: string; labels?: Record<string, number>; patchset: number }[];
  /** Stream events for a change of the fake. */
  events: ReturnType<typeof eventFactory>;
}

/** Stream-event JSON in Gerrit's wire format for changes on the fake. */
export function eventFactory(project: string) {
  const acct = (a: { name: string; email: string; username: string }) => ({
    name: a.name,
    email: a.email,
    username: a.username,
  });
  const base = (change: number, ps: Ps) => ({
    change: {
      project,
      branch: 'master',
      id: `I${String(change).padStart(40, '0')}`,
      number: change,
      subject: `Change ${change}`,
      owner: acct(ACCOUNTS.alice),
      url: `https://gerrit/c/${project}/+/${change}`,
      status: 'NEW',
    },
    patchSet: { number: ps.number, revision: ps.revision, ref: ps.ref, uploader: acct(ACCOUNTS.alice) },
    eventCreatedOn: 1714557600,
  });
  return {
    patchsetCreated: (change: number, ps: Ps) => ({
      type: 'patchset-created',
      ...base(change, ps),
      uploader: acct(ACCOUNTS.alice),
    }),
    commentAdded: (
      change: number,
      ps: Ps,
      author: keyof typeof ACCOUNTS,
      approvals: { type: string; value: number; oldValue?: number }[],
    ) => ({
      type: 'comment-added',
      ...base(change, ps),
      author: acct(ACCOUNTS[author]),
      approvals: approvals.map((a) => ({
        type: a.type,
        value: String(a.value),
        ...(a.oldValue !== undefined ? { oldValue: String(a.oldValue) } : {}),
      })),
      comment: 'Patch Set 1: Code-Review+2',
    }),
    changeMerged: (change: number, ps: Ps) => ({
      type: 'change-merged',
      ...base(change, ps),
      submitter: acct(ACCOUNTS.norbert),
    }),
    changeAbandoned: (change: number, ps: Ps) => ({
      type: 'change-abandoned',
      ...base(change, ps),
      abandoner: acct(ACCOUNTS.alice),
    }),
  };
}

/** One Gerrit project a harness verifies. */
export interface HarnessProject {
  project: string;
  trigger: 'approval' | 'patchset-created' | 'commit-queue';
  reviewerGroup?: string;
  builders: string[];
}

/** The projects the fake-backed harness verifies: `core` by Norbert's rule, `online` on every upload. */
const FAKE_PROJECTS: HarnessProject[] = [
  {
    project: 'core',
    trigger: 'approval',
    reviewerGroup: 'Reviewers',
    builders: ['lo/gerrit/LINUX', 'lo/gerrit/WINDOWS'],
  },
  { project: 'online', trigger: 'patchset-created', builders: ['lo/gerrit/LINUX'] },
];

/** The config a harness runs: Gerrit projects on one host, tinderbox builders in lo/gerrit. */
function configYaml(
  host: string,
  gerritUrl: string,
  projects: HarnessProject[],
  o: VerificationHarnessOptions & { username?: string },
): string {
  const lease = o.leaseDurationSecs ?? 14400;
  const builder = (name: string, dims: string[]) => `
          - name: ${name}
            dimensions: ${JSON.stringify(dims)}
            leaseDurationSecs: ${lease}
            maxLeaseDurationSecs: ${lease}
            maxLeaseResets: 1
            schedulingTimeoutSecs: 172800
            executionTimeoutSecs: 172800`;
  const project = (p: HarnessProject) => `
    - host: ${host}
      project: ${p.project}
      trigger: ${p.trigger}${p.reviewerGroup ? `\n      reviewerGroup: ${p.reviewerGroup}` : ''}
      builders: ${JSON.stringify(p.builders)}`;
  return `
api:
  publicUrl: ${PUBLIC_URL}
projects:
  - name: lo
    buckets:
      - name: gerrit
        builders:${builder('LINUX', [])}${builder('WINDOWS', ['cap:with-java'])}${builder('MAC', [])}
gerrit:
  hosts:
    - host: ${host}
      baseUrl: ${gerritUrl}
      auth: { kind: basic, username: ${o.username ?? 'kiln'}, passwordEnv: ${GERRIT_PASSWORD_ENV} }
  eventSecret: ${EVENT_SECRET}
  self: { username: ${o.username ?? 'kiln'} }
  idleTimeoutSecs: ${o.idleTimeoutSecs ?? 3600}
  projects:${projects.map(project).join('')}
`;
}

/** Starts Kiln (API on 127.0.0.1, in-memory storage, workers on request) with `configYaml` on `env`. */
export async function startKiln(
  env: TestWorkflowEnvironment,
  host: string,
  configText: string,
  opts: { apiPort?: number } = {},
): Promise<KilnUnderTest> {
  const n = ++counter;
  const config = parseConfig(configText, 'verification-test.yaml', { LOG_LEVEL: 'silent' });
  const registry = new Registry(config);
  const settings = resolveGerritSettings(config.gerrit, registry)!;
  const storage = await openStorage({ kind: 'embedded' });
  const taskQueue = `kiln-verify-${process.pid}-${n}`;
  const service = new BuildService({
    ...{ client: env.client, storage, registry, taskQueue, logger: testLogger },
    // The time-skipping server's clock runs ahead of this process's: every heartbeat goes to the workflow there.
    answerHeartbeatsFromLeases: !env.supportsTimeSkipping,
  });
  const logDir = await mkdtemp(join(tmpdir(), 'kiln-verify-logs-'));
  const logs = new FileLogStore(logDir);
  const intake = new GerritIntake({
    client: env.client,
    registry,
    settings,
    taskQueue,
    logger: testLogger,
    publicUrl: PUBLIC_URL,
  });

  let app: FastifyInstance;
  const startApi = async (): Promise<string> => {
    app = buildApi({ service, registry, logger: testLogger, logs, gerrit: intake });
    await app.listen({ host: '127.0.0.1', port: opts.apiPort ?? 0 });
    const addr = app.server.address();
    return `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  };

  const k: KilnUnderTest = {
    env,
    host,
    settings,
    intake,
    logs,
    storage,
    service,
    taskQueue,
    registry,
    url: await startApi(),
    newWorker: () =>
      createKilnWorker({
        connection: env.nativeConnection,
        namespace: env.namespace ?? 'default',
        taskQueue,
        deps: { storage, logger: testLogger, gerrit: { hosts: new GerritHosts(settings) } },
      }),
    async restartApi() {
      await app.close();
      k.url = await startApi();
    },
    async close() {
      await app.close();
      await storage.close();
      await rm(logDir, { recursive: true, force: true });
    },
    async sendEvent(event, secret = EVENT_SECRET) {
      const res = await fetch(`${k.url}/api/v1/gerrit/events?host=${encodeURIComponent(host)}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-kiln-gerrit-secret': secret },
        body: typeof event === 'string' ? event : JSON.stringify(event),
      });
      return { status: res.status, body: (await res.json()) as never };
    },
    async getTask(platform, tinderboxId, capabilities = []) {
      const res = await fetch(`${k.url}/api/v1/tinderbox/get-task`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ platform, tinderboxId, capabilities }),
      });
      const body = (await res.json()) as { task: TinderboxTask | null; message?: string };
      if (res.status !== 200) throw new Error(`get-task: HTTP ${res.status}: ${body.message}`);
      return body.task;
    },
    async report(task, outcome, log) {
      const res = await fetch(`${k.url}/api/v1/tinderbox/report`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          buildId: task.buildId,
          leaseKey: task.leaseKey,
          outcome,
          ...(log !== undefined ? { log } : {}),
        }),
      });
      return { status: res.status, body: (await res.json()) as never };
    },
    async result(change, patchset) {
      const handle = env.client.workflow.getHandle(verificationWorkflowId(host, change, patchset));
      await eventually(
        () =>
          handle.describe().then(
            () => true,
            () => false,
          ),
        60_000,
        `verification of ${change}/${patchset} to exist`,
      );
      return (await handle.result()) as VerificationState;
    },
    async verifications(change) {
      const res = await fetch(`${k.url}/api/v1/verifications?change=${change}&host=${encodeURIComponent(host)}`);
      return ((await res.json()) as { verifications: StoredVerification[] }).verifications;
    },
    async builds(change, patchset) {
      const res = await fetch(
        `${k.url}/api/v1/builds?buildset=${encodeURIComponent(`patch/gerrit/${host}/${change}/${patchset}`)}`,
      );
      return ((await res.json()) as { builds: Build[] }).builds;
    },
  };
  return k;
}

/** Starts a harness over a fresh fake Gerrit on `env`. */
export async function verificationHarness(
  env: TestWorkflowEnvironment,
  o: VerificationHarnessOptions = {},
): Promise<VerificationHarness> {
  const host = `g${process.pid}-${counter + 1}.example.org`;
  const fake = await FakeGerritServer.start();
  for (const a of Object.values(ACCOUNTS)) fake.addAccount({ ...a });
  fake.addGroup({ name: 'Reviewers', members: [ACCOUNTS.norbert._account_id], visibleToAll: true });
  const k = await startKiln(env, host, configYaml(host, fake.url, FAKE_PROJECTS, o));
  const close = k.close;
  return Object.assign(k, {
    fake,
    events: eventFactory('core'),
    async close() {
      await close();
      await fake.close();
    },
    kilnReviews(change: number) {
      return fake.reviews
        .filter((r) => r.change === change && r.accountId === ACCOUNTS.kiln._account_id)
        .map((r) => ({
          message: (r.message ?? '').split('\n\nKiln-Review-Key: ')[0]!,
          ...(r.labels ? { labels: r.labels } : {}),
          patchset: r.patchset,
        }));
    },
  });
}

/** A harness over a real Gerrit: Kiln plus `kiln gerrit listen` reading `gerrit stream-events` over SSH. */
export interface RealGerritHarness extends KilnUnderTest {
  world: GerritWorld;
  /** What `kiln gerrit listen` printed so far. */
  listenerOutput(): string;
}

/**
 * Starts Kiln for `projects` on the real Gerrit of `world` (Kiln's account `kiln`, its HTTP password), and a
 * `kiln gerrit listen` process streaming Gerrit's events over SSH into Kiln's API. Resolves once the listener
 * is subscribed (a change in an unwatched project reached Kiln).
 */
export async function realGerritHarness(
  env: TestWorkflowEnvironment,
  world: GerritWorld,
  projects: HarnessProject[],
  o: VerificationHarnessOptions = {},
): Promise<RealGerritHarness> {
  process.env[GERRIT_PASSWORD_ENV] = world.kiln.password;
  const host = world.server.host;
  const k = await startKiln(env, host, configYaml(host, world.server.baseUrl, projects, o));
  const listener = spawn(
    process.execPath,
    [KILN_BIN, 'gerrit', 'listen', '--command', world.streamEventsCommand, '--host', host, '--api', k.url],
    { env: { ...process.env, KILN_GERRIT_SECRET: EVENT_SECRET }, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-200_000);
  };
  listener.stdout.on('data', keep);
  listener.stderr.on('data', keep);
  const killListener = () => {
    try {
      if (listener.pid !== undefined) process.kill(-listener.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  process.on('exit', killListener);
  // Subscribed once an event of a change Kiln does not watch comes through.
  const probeProject = `kiln-listen-probe-${++counter}`;
  await world.createProject(probeProject);
  for (let i = 0; ; i++) {
    await world.createChange(world.alice, probeProject, `probe ${i}`);
    const seen = await eventually(
      async () => out.includes(`${probeProject} on ${host} is not configured for verification`),
      5000,
    ).then(
      () => true,
      () => false,
    );
    if (seen) break;
    if (i > 10) throw new Error(`kiln gerrit listen did not forward events:\n${out}`);
  }
  const close = k.close;
  return Object.assign(k, {
    world,
    listenerOutput: () => out,
    async close() {
      killListener();
      process.off('exit', killListener);
      await close();
    },
  });
}
