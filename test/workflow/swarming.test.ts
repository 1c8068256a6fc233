/**
 * Swarming mode on a real Temporal dev server against a fake Swarming server that speaks the real
 * pRPC wire format: task creation (tags, template, canary, override), notifications pushed by the
 * fake through Kiln's real HTTP notify route, task states → build statuses, cancel and timeouts
 * → CancelTask, the sync timer when notifications are lost, and NewTask retried after a 503.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { type FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/server.ts';
import { BuildService, timeoutsOf } from '../../src/builds/service.ts';
import { planSwarmingBuild } from '../../src/builds/swarming.ts';
import { loadConfigFile, Registry } from '../../src/config/load.ts';
import { type Build, isEnded } from '../../src/domain/build.ts';
import { buildWorkflowId, newBuildId } from '../../src/domain/buildId.ts';
import { type Storage } from '../../src/storage/storage.ts';
import { openStorage } from '../../src/storage/open.ts';
import { swarmingDepsFromConfig } from '../../src/swarming/deps.ts';
import { createKilnWorker } from '../../workers/worker.ts';
import { swarmingBuildWorkflow } from '../../workflows/swarmingBuild.ts';
import { type FakeTask, FakeSwarmingServer } from '../fakes/swarmingServer.ts';
import { eventually, rejectsWith, startDevEnv, testLogger } from '../support/temporal.ts';
import { scheduledBuild } from '../support/builds.ts';

const NOTIFY_TOKEN = 'notify-secret-0123456789';
const linux = { project: 'chromium', bucket: 'ci', builder: 'linux-rel' };

const TASK_TEMPLATE = {
  revision: 'rev-stable-1',
  template: {
    name: 'kiln-${project}-${bucket}-${builder}',
    priority: '100',
    tags: ['template:stable'],
    task_slices: [
      {
        expiration_secs: '3600',
        properties: {
          command: ['luciexe', '--recipe', '${recipe}', '--properties', '${properties_json}'],
          env: [{ key: 'SWARMING_SERVER', value: 'https://${swarming_hostname}' }],
          caches: [{ name: 'builder_${builder_hash}', path: '${cache_dir}/builder' }],
        },
      },
    ],
  },
};
const CANARY_TEMPLATE = {
  revision: 'rev-canary-2',
  template: { ...TASK_TEMPLATE.template, tags: ['template:canary'] },
};

/** Config for the fake at `baseUrl`; template paths are relative to the config file. */
function configYaml(baseUrl: string, syncIntervalSecs: number): string {
  return `
projects:
  - name: chromium
    buckets:
      - name: ci
        swarming:
          hostname: swarm.example.org
          url_format: "https://{swarming_hostname}/task?id={task_id}&builder={builder}"
          task_template_canary_percentage: 0
          builder_defaults:
            dimensions: ["pool:luci.chromium.ci"]
            recipe: { repository: "https://example.org/recipes", name: chromium }
            swarming_tags: ["team:browser"]
            execution_timeout_secs: 1800
            expiration_secs: 3600
          builders:
            - name: linux-rel
              category: linux
              dimensions: ["os:Linux", "cores:8"]
      - name: try
        builders:
          - name: lease-builder
swarming:
  taskTemplate: templates/task.json
  taskTemplateCanary: templates/canary.json
  kilnHostname: kiln.example.org
  pubsubTopic: projects/kiln/topics/swarming
  notifyToken: ${NOTIFY_TOKEN}
  syncIntervalSecs: ${syncIntervalSecs}
  baseUrlOverride: ${baseUrl}
`;
}

describe('Swarming builds', () => {
  let env: TestWorkflowEnvironment;
  let fake: FakeSwarmingServer;
  let storage: Storage;
  let dir: string;
  let app: FastifyInstance;
  let registry: Registry;
  /** Follows tasks by notification (the sync timer is 10 minutes). */
  let service: BuildService;
  /** Same, but polls every 2 seconds: for the lost-notification test. */
  let pollingService: BuildService;
  const taskQueue = `kiln-swarming-test-${process.pid}`;

  before(async () => {
    env = await startDevEnv();
    fake = await FakeSwarmingServer.start();
    // Template paths in the config are relative to the config file's directory.
    dir = mkdtempSync(join(tmpdir(), 'kiln-swarming-'));
    mkdirSync(join(dir, 'templates'));
    writeFileSync(join(dir, 'templates/task.json'), JSON.stringify(TASK_TEMPLATE));
    writeFileSync(join(dir, 'templates/canary.json'), JSON.stringify(CANARY_TEMPLATE));
    writeFileSync(join(dir, 'kiln.yaml'), configYaml(fake.baseUrl, 600));
    writeFileSync(join(dir, 'kiln-polling.yaml'), configYaml(fake.baseUrl, 2));
    const config = loadConfigFile(join(dir, 'kiln.yaml'), { LOG_LEVEL: 'silent' });
    const pollingConfig = loadConfigFile(join(dir, 'kiln-polling.yaml'), { LOG_LEVEL: 'silent' });
    storage = await openStorage({ kind: 'embedded' });
    registry = new Registry(config);
    service = new BuildService({ client: env.client, storage, registry, taskQueue, logger: testLogger });
    pollingService = new BuildService({
      client: env.client,
      storage,
      registry: new Registry(pollingConfig),
      taskQueue,
      logger: testLogger,
    });
    app = buildApi({ service, registry, logger: testLogger });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const addr = app.server.address();
    assert.ok(addr && typeof addr === 'object');
    fake.notifyUrl = `http://127.0.0.1:${addr.port}/api/v1/swarming/notify`;
    worker = await createKilnWorker({
      connection: env.nativeConnection,
      namespace: env.namespace ?? 'default',
      taskQueue,
      deps: { storage, logger: testLogger, swarming: swarmingDepsFromConfig(config) },
    });
    running = worker.run();
  });

  let worker: Awaited<ReturnType<typeof createKilnWorker>>;
  let running: Promise<void>;

  after(async () => {
    worker?.shutdown();
    await running?.catch(() => undefined);
    await app?.close();
    await fake?.close();
    await storage?.close();
    await env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The fake's task for build `id`, once NewTask created it. */
  const taskOf = (id: string): Promise<FakeTask> =>
    eventually(
      async () =>
        [...fake.tasks.values()].find((t) => (t.request['tags'] as string[]).includes(`buildbucket_build_id:${id}`)),
      30_000,
      `task of build ${id}`,
    );

  /** The build as storage has it, once `pred` holds. */
  const stored = (id: string, pred: (b: Build) => boolean, what: string): Promise<Build> =>
    eventually(
      async () => {
        const b = await storage.getBuild(id);
        return b && pred(b) && b;
      },
      30_000,
      what,
    );

  const withTask = (id: string) =>
    stored(id, (b) => b.tags.some((t) => t.startsWith('swarming_task_id:')), 'task tags');

  it('runs PENDING → RUNNING → COMPLETED to SUCCESS, with tags, URL and notifications through the API', async () => {
    const b = await service.schedule({ builder: linux, tags: ['buildset:commit/abc'], properties: { a: 1 } });
    assert.equal(b.status, 'SCHEDULED');
    const task = await taskOf(b.id);

    // The task: tags exactly as the README's Swarming section lists them, plus Swarming's own and the template's.
    const tags = task.request['tags'] as string[];
    for (const t of [
      'buildbucket_hostname:kiln.example.org',
      'buildbucket_bucket:chromium/ci',
      `buildbucket_build_id:${b.id}`,
      'buildbucket_template_canary:false',
      'buildbucket_template_revision:rev-stable-1',
      'recipe_repository:https://example.org/recipes',
      'recipe_revision:HEAD',
      'recipe_name:chromium',
      'team:browser',
      'buildset:commit/abc',
      'builder:linux-rel',
      'template:stable',
    ]) {
      assert.ok(tags.includes(t), `task tag ${t} in ${tags.join(', ')}`);
    }
    assert.equal(task.request['name'], 'kiln-chromium-ci-linux-rel');
    assert.equal(task.request['pubsub_topic'], 'projects/kiln/topics/swarming');
    assert.equal(task.request['pubsub_auth_token'], NOTIFY_TOKEN);
    const slice = (task.request['task_slices'] as { properties: { command: string[]; dimensions: unknown[] } }[])[0]!;
    const props = JSON.parse(slice.properties.command[4]!) as Record<string, unknown>;
    assert.deepEqual(props, { a: 1, buildername: 'linux-rel', category: 'linux' });
    assert.deepEqual(slice.properties.dimensions, [
      { key: 'cores', value: '8' },
      { key: 'os', value: 'Linux' },
      { key: 'pool', value: 'luci.chromium.ci' },
    ]);

    // The build: Swarming tags, dimensions and the task URL from url_format.
    const created = await withTask(b.id);
    assert.equal(created.url, `https://swarm.example.org/task?id=${task.taskId}&builder=linux-rel`);
    for (const t of [
      'swarming_hostname:swarm.example.org',
      `swarming_task_id:${task.taskId}`,
      'swarming_tag:team:browser',
      'swarming_tag:pool:luci.chromium.ci',
      'swarming_dimension:os:Linux',
      'swarming_dimension:pool:luci.chromium.ci',
    ]) {
      assert.ok(created.tags.includes(t), `build tag ${t}`);
    }
    assert.equal(created.status, 'SCHEDULED');
    // Found by its task id; never offered to runners; lease calls are refused.
    const found = await service.search({ tags: [`swarming_task_id:${task.taskId}`] });
    assert.deepEqual(
      found.builds.map((x) => x.id),
      [b.id],
    );
    assert.equal((await service.peek({ buckets: ['chromium/ci', 'chromium/try'] })).length, 0);
    await rejectsWith(service.lease(b.id, { holder: 'sneaky-runner' }), 'INVALID_BUILD_STATE');

    await fake.setState(task.taskId, 'RUNNING');
    const started = await stored(b.id, (x) => x.status === 'STARTED', 'STARTED');
    assert.ok(started.startTime);
    await fake.setState(task.taskId, 'COMPLETED', { exitCode: 0 });
    const done = await stored(b.id, (x) => isEnded(x.status), 'ended');
    assert.equal(done.status, 'SUCCESS');
    assert.deepEqual(done.statusDetails, {});
    // Both notifications went through Kiln's HTTP route and were accepted.
    const pushes = fake.notifications.filter((n) => n.taskId === task.taskId);
    assert.deepEqual(
      pushes.map((n) => [n.state, n.status]),
      [
        ['RUNNING', 204],
        ['COMPLETED', 204],
      ],
    );
  });

  it('ends FAILURE when the task completes with a non-zero exit code', async () => {
    const b = await service.schedule({ builder: linux });
    const task = await taskOf(b.id);
    await fake.setState(task.taskId, 'RUNNING');
    await stored(b.id, (x) => x.status === 'STARTED', 'STARTED');
    await fake.setState(task.taskId, 'COMPLETED', { exitCode: 1 });
    const done = await stored(b.id, (x) => isEnded(x.status), 'ended');
    assert.equal(done.status, 'FAILURE');
    assert.match(done.summaryMarkdown ?? '', /exit code 1/);
  });

  it('maps BOT_DIED and TIMED_OUT to INFRA_FAILURE', async () => {
    const died = await service.schedule({ builder: linux });
    const timedOut = await service.schedule({ builder: linux });
    const [t1, t2] = await Promise.all([taskOf(died.id), taskOf(timedOut.id)]);
    await fake.setState(t1.taskId, 'RUNNING');
    await fake.setState(t2.taskId, 'RUNNING');
    await fake.setState(t1.taskId, 'BOT_DIED');
    await fake.setState(t2.taskId, 'TIMED_OUT');
    const d1 = await stored(died.id, (x) => isEnded(x.status), 'BOT_DIED build ended');
    const d2 = await stored(timedOut.id, (x) => isEnded(x.status), 'TIMED_OUT build ended');
    assert.equal(d1.status, 'INFRA_FAILURE');
    assert.match(d1.summaryMarkdown ?? '', /BOT_DIED/);
    assert.equal(d2.status, 'INFRA_FAILURE');
    assert.deepEqual(d2.statusDetails, { timeout: true });
  });

  it('maps EXPIRED to INFRA_FAILURE with resourceExhaustion', async () => {
    const b = await service.schedule({ builder: linux });
    const task = await taskOf(b.id);
    await withTask(b.id);
    await fake.setState(task.taskId, 'EXPIRED');
    const done = await stored(b.id, (x) => isEnded(x.status), 'ended');
    assert.equal(done.status, 'INFRA_FAILURE');
    assert.equal(done.statusDetails.resourceExhaustion, true);
    assert.equal(done.startTime, undefined);
  });

  it('cancel ends the build CANCELED and calls CancelTask, which kills the running task', async () => {
    const b = await service.schedule({ builder: linux });
    const task = await taskOf(b.id);
    await fake.setState(task.taskId, 'RUNNING');
    await stored(b.id, (x) => x.status === 'STARTED', 'STARTED');
    const canceled = await service.cancel(b.id, 'not needed any more', 'operator');
    assert.equal(canceled.status, 'CANCELED');
    assert.equal(canceled.canceledBy, 'operator');
    await eventually(
      async () => fake.requests.some((r) => r.method === 'CancelTask' && r.body?.['task_id'] === task.taskId),
      30_000,
      'CancelTask',
    );
    const cancelReq = fake.requests.find((r) => r.method === 'CancelTask' && r.body?.['task_id'] === task.taskId);
    assert.equal(cancelReq?.body?.['kill_running'], true);
    assert.equal(fake.tasks.get(task.taskId)?.state, 'KILLED');
    // The task's own KILLED notification does not change the ended build.
    await fake.settled();
    assert.equal((await storage.getBuild(b.id))?.status, 'CANCELED');
  });

  it('execution timeout cancels the task and ends INFRA_FAILURE {timeout}', async () => {
    const b = await service.schedule({ builder: linux, executionTimeoutSecs: 2 });
    const task = await taskOf(b.id);
    await fake.setState(task.taskId, 'RUNNING');
    const done = await stored(b.id, (x) => isEnded(x.status), 'ended by the execution timeout');
    assert.equal(done.status, 'INFRA_FAILURE');
    assert.deepEqual(done.statusDetails, { timeout: true });
    await eventually(
      async () => fake.requests.some((r) => r.method === 'CancelTask' && r.body?.['task_id'] === task.taskId),
      30_000,
      'CancelTask',
    );
  });

  it('a lost notification: the sync timer polls GetResult and ends the build anyway', async () => {
    fake.dropNotifications = true;
    try {
      const b = await pollingService.schedule({ builder: linux });
      const task = await taskOf(b.id);
      await withTask(b.id);
      await fake.setState(task.taskId, 'RUNNING');
      await fake.setState(task.taskId, 'COMPLETED', { exitCode: 0 });
      const done = await stored(b.id, (x) => isEnded(x.status), 'ended by polling');
      assert.equal(done.status, 'SUCCESS');
      const pushes = fake.notifications.filter((n) => n.taskId === task.taskId);
      assert.ok(pushes.length >= 2 && pushes.every((n) => n.dropped));
      assert.ok(fake.requests.some((r) => r.method === 'GetResult' && r.body?.['task_id'] === task.taskId));
    } finally {
      fake.dropNotifications = false;
    }
  });

  it('retries NewTask after a transient 503 and creates exactly one task', async () => {
    fake.failNextNewTask(1); // the task is created, the answer is lost
    const b = await service.schedule({ builder: linux });
    const created = await withTask(b.id);
    const mine = [...fake.tasks.values()].filter((t) =>
      (t.request['tags'] as string[]).includes(`buildbucket_build_id:${b.id}`),
    );
    assert.equal(mine.length, 1);
    assert.ok(created.tags.includes(`swarming_task_id:${mine[0]!.taskId}`));
    const calls = fake
      .newTaskRequests()
      .filter((r) => ((r.body?.['tags'] as string[] | undefined) ?? []).includes(`buildbucket_build_id:${b.id}`));
    assert.equal(calls.length, 2);
    assert.equal(calls[0]!.body?.['request_uuid'], calls[1]!.body?.['request_uuid']);
    await service.cancel(b.id, undefined, 'test');
  });

  it('cancel while NewTask is still being retried shows CANCELED at once, then cancels the task it got', async () => {
    fake.failNextNewTask(3, { afterCreate: false }); // 1 s + 2 s + 4 s of retries before a task exists
    const b = await service.schedule({ builder: linux });
    await eventually(async () => fake.newTaskRequests().length > 0 && true, 30_000, 'first NewTask');
    const canceled = await service.cancel(b.id, 'changed my mind', 'operator');
    assert.equal(canceled.status, 'CANCELED');
    const task = await taskOf(b.id);
    await eventually(
      async () => fake.requests.some((r) => r.method === 'CancelTask' && r.body?.['task_id'] === task.taskId),
      30_000,
      'CancelTask',
    );
    assert.equal(fake.tasks.get(task.taskId)?.state, 'CANCELED');
    const final = await stored(b.id, (x) => x.tags.some((t) => t === `swarming_task_id:${task.taskId}`), 'task tags');
    assert.equal(final.status, 'CANCELED');
  });

  it('keeps history bounded: continues as new while polling, then still ends the build', async () => {
    // Started directly (not through the service) to give it a tiny history budget and a fast poll.
    const plan = planSwarmingBuild(registry, { builder: linux });
    assert.ok(plan);
    const now = new Date().toISOString();
    const id = newBuildId(Date.now(), 4242);
    const build = scheduledBuild(id, linux, now, { number: 1000, tags: ['builder:linux-rel'], priority: 100 });
    const handle = await env.client.workflow.start(swarmingBuildWorkflow, {
      workflowId: buildWorkflowId(id),
      taskQueue,
      args: [
        {
          build,
          timeouts: timeoutsOf(plan.builderConfig),
          swarming: { ...plan.spec, syncIntervalMs: 100 },
          maxHistoryEvents: 40,
        },
      ],
    });
    const task = await taskOf(id);
    await eventually(
      async () => (await handle.describe()).runId !== handle.firstExecutionRunId,
      60_000,
      'continue-as-new',
    );
    await fake.setState(task.taskId, 'COMPLETED', { exitCode: 0 });
    const result = await handle.result();
    assert.equal(result.status, 'SUCCESS');
    // Only one task for the build across runs.
    assert.equal(
      [...fake.tasks.values()].filter((t) => (t.request['tags'] as string[]).includes(`buildbucket_build_id:${id}`))
        .length,
      1,
    );
  });

  it('honours swarming.canaryTemplate and overrideBuilderCfg, and refuses bad swarming options', async () => {
    const b = await service.schedule({
      builder: linux,
      swarming: { canaryTemplate: true, overrideBuilderCfg: { dimensions: ['cores:64', 'os:'] } },
      priority: 12,
    });
    const task = await taskOf(b.id);
    assert.equal(task.request['priority'], 12, "the build's priority, not the template's 100");
    const tags = task.request['tags'] as string[];
    assert.ok(tags.includes('buildbucket_template_canary:true'));
    assert.ok(tags.includes('buildbucket_template_revision:rev-canary-2'));
    assert.ok(tags.includes('template:canary'));
    const slice = (task.request['task_slices'] as { properties: { dimensions: unknown[] } }[])[0]!;
    assert.deepEqual(slice.properties.dimensions, [
      { key: 'cores', value: '64' },
      { key: 'pool', value: 'luci.chromium.ci' },
    ]);
    await service.cancel(b.id, undefined, 'test');

    const bad = await rejectsWith(
      service.schedule({ builder: linux, swarming: { overrideBuilderCfg: { dimensions: 'cores:64' } } }),
      'INVALID_ARGUMENT',
    );
    assert.match(bad.message, /swarming\.overrideBuilderCfg\.dimensions/);
    await rejectsWith(
      service.schedule({ builder: linux, swarming: { overrideBuilderCfg: { recipe: { name: 'x' }, nope: 1 } } }),
      'INVALID_ARGUMENT',
    );
    await rejectsWith(
      service.schedule({
        builder: { ...linux, bucket: 'try', builder: 'lease-builder' },
        swarming: { canaryTemplate: true },
      }),
      'INVALID_ARGUMENT',
    );
    await rejectsWith(service.schedule({ builder: { ...linux, builder: 'nope' } }), 'BUILDER_NOT_FOUND');
    await rejectsWith(service.schedule({ builder: linux, dimensions: ['os:Mac'] }), 'INVALID_ARGUMENT');
    await rejectsWith(service.schedule({ builder: linux, priority: 0 }), 'INVALID_ARGUMENT');
  });

  it('the notify route refuses malformed pushes, wrong tokens and unknown builds', async () => {
    const push = (data: unknown, attributes?: Record<string, string>) => ({
      message: {
        data: Buffer.from(JSON.stringify(data)).toString('base64'),
        ...(attributes ? { attributes } : {}),
        messageId: '1',
      },
      subscription: 'projects/kiln/subscriptions/swarming',
    });
    const post = (payload: unknown, url = '/api/v1/swarming/notify') =>
      app.inject({ method: 'POST', url, payload: payload as Record<string, unknown> });
    const userdata = (buildId: string) => JSON.stringify({ build_id: buildId, swarming_hostname: 'swarm.example.org' });

    let r = await post({ message: { data: '!!!not base64' } });
    assert.equal(r.statusCode, 400);
    assert.equal(r.json<{ code: string }>().code, 'INVALID_ARGUMENT');
    r = await post({ nope: true });
    assert.equal(r.statusCode, 400);
    r = await post(push({ task_id: 'abc', userdata: 'not json' }, { auth_token: NOTIFY_TOKEN }));
    assert.equal(r.statusCode, 400);
    assert.match(r.json<{ message: string }>().message, /userdata/);

    r = await post(push({ task_id: 'abc', userdata: userdata('8922054662172510001') }));
    assert.equal(r.statusCode, 401);
    r = await post(
      push({ task_id: 'abc', userdata: userdata('8922054662172510001') }, { auth_token: 'wrong-token-0123456789' }),
    );
    assert.equal(r.statusCode, 403);
    assert.equal(r.json<{ code: string }>().code, 'PERMISSION_DENIED');

    r = await post(push({ task_id: 'abc', userdata: userdata('8922054662172510001') }, { auth_token: NOTIFY_TOKEN }));
    assert.equal(r.statusCode, 404);
    assert.equal(r.json<{ code: string }>().code, 'BUILD_NOT_FOUND');
    // The token may come in the push URL instead.
    r = await post(
      push({ task_id: 'abc', userdata: userdata('8922054662172510001') }),
      `/api/v1/swarming/notify?token=${NOTIFY_TOKEN}`,
    );
    assert.equal(r.statusCode, 404);

    // A real build: accepted (204), and a notification for another task id changes nothing.
    const b = await service.schedule({ builder: linux });
    const task = await taskOf(b.id);
    await withTask(b.id);
    r = await post(push({ task_id: 'someothertask0', userdata: userdata(b.id) }, { auth_token: NOTIFY_TOKEN }));
    assert.equal(r.statusCode, 204);
    r = await post(push({ task_id: task.taskId, userdata: userdata(b.id) }, { auth_token: NOTIFY_TOKEN }));
    assert.equal(r.statusCode, 204);
    assert.equal((await storage.getBuild(b.id))?.status, 'SCHEDULED');
    await service.cancel(b.id, undefined, 'test');
  });
});
