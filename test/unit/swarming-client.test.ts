import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { type AddressInfo } from 'node:net';
import { KilnError } from '../../src/domain/errors.ts';
import { SwarmingBucketConfigSchema, SwarmingServiceConfigSchema } from '../../src/domain/swarming/config.ts';
import { mergeBuilderConfig } from '../../src/domain/swarming/merge.ts';
import { buildStatusFromTask } from '../../src/domain/swarming/status.ts';
import {
  type SwarmingNewTaskRequest,
  chooseTaskTemplate,
  newTaskRequest,
  parsePubsubUserdata,
  swarmingBuildTags,
} from '../../src/domain/swarming/template.ts';
import { SwarmingClient, SwarmingRpcError, builderHash, isTransientSwarmingError } from '../../src/swarming/client.ts';
import { parseSwarmingNotification } from '../../src/swarming/notification.ts';
import { FakeSwarmingServer } from '../fakes/swarmingServer.ts';

const TOKEN = 'sekrit';
let fake: FakeSwarmingServer;
let client: SwarmingClient;
/** A Pub/Sub push endpoint standing in for Kiln's API route. */
let receiver: Server;
let received: unknown[] = [];

before(async () => {
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      received.push(JSON.parse(body));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const notifyUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/swarming/notify`;
  fake = await FakeSwarmingServer.start({ requireToken: TOKEN, notifyUrl });
  client = new SwarmingClient({ hostname: 'swarm.example.org', baseUrl: fake.baseUrl, token: TOKEN, timeoutMs: 2000 });
});

after(async () => {
  await fake.close();
  await new Promise<void>((r) => receiver.close(() => r()));
});

let nextBuild = 8922054662172510000n;
/** A real request, built the way the workflow will build it, for a fresh build id. */
function request(over: { pubsub?: boolean } = {}): SwarmingNewTaskRequest {
  const buildId = String(nextBuild++);
  const bucket = SwarmingBucketConfigSchema.parse({
    hostname: 'swarm.example.org',
    builders: [
      {
        name: 'linux-rel',
        dimensions: ['pool:ci', 'os:Linux'],
        recipe: { repository: 'https://example.org/recipes', name: 'chromium' },
        swarming_tags: ['team:browser'],
      },
    ],
  });
  const service = SwarmingServiceConfigSchema.parse({
    task_template: {
      revision: 'r1',
      template: {
        name: 'bb-${builder}',
        task_slices: [
          { expiration_secs: 3600, properties: { command: ['run', '${recipe}'], execution_timeout_secs: 600 } },
        ],
      },
    },
  });
  return newTaskRequest({
    buildId,
    builder: { project: 'chromium', bucket: 'try', builder: 'linux-rel' },
    builderCfg: mergeBuilderConfig(bucket, 'linux-rel'),
    builderHash: builderHash('try', 'linux-rel'),
    swarmingHostname: 'swarm.example.org',
    kilnHostname: 'kiln.example.org',
    template: chooseTaskTemplate(service, { canaryPercentage: 0, random100: 0 }),
    buildTags: ['buildset:commit/abc'],
    inputProperties: {},
    ...(over.pubsub === false ? {} : { pubsub: { topic: 'projects/kiln/topics/swarming', authToken: 'pubsub-tok' } }),
  });
}

async function rejectsWith(p: Promise<unknown>, want: Partial<SwarmingRpcError>): Promise<SwarmingRpcError> {
  const err = await p.then(
    () => assert.fail('expected the call to fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof SwarmingRpcError, `expected SwarmingRpcError, got ${String(err)}`);
  for (const [k, v] of Object.entries(want)) assert.equal(err[k as keyof SwarmingRpcError], v, k);
  return err;
}

void test('NewTask speaks pRPC JSON and returns the task as Swarming registered it', async () => {
  const req = request();
  const created = await client.newTask(req);
  assert.match(created.taskId, /^[0-9a-f]+0$/, 'a summary task id');

  const call = fake.newTaskRequests().at(-1)!;
  assert.equal(call.headers['content-type'], 'application/json');
  assert.equal(call.headers['accept'], 'application/json');
  assert.equal(call.headers['authorization'], `Bearer ${TOKEN}`);
  assert.equal(call.body?.['request_uuid'], req.request_uuid);
  assert.ok(JSON.parse(call.rawBody).task_slices, 'sent with proto field names');

  // Swarming adds tags of its own (pool:, priority:, ...); the build's swarming_tag:* reflect them.
  const tags = swarmingBuildTags('swarm.example.org', created);
  assert.ok(tags.includes(`swarming_task_id:${created.taskId}`));
  assert.ok(tags.includes('swarming_tag:pool:ci'));
  assert.ok(tags.includes('swarming_tag:buildbucket_template_revision:r1'));
  assert.ok(tags.includes('swarming_dimension:os:Linux'));
  assert.equal(created.taskResult?.state, 'PENDING');
});

void test('GetResult follows the task through its states; the build status follows', async () => {
  const { taskId } = await client.newTask(request());
  const status = async () => buildStatusFromTask(await client.getResult(taskId));

  assert.deepEqual(await status(), { status: 'SCHEDULED', statusDetails: {} });
  await fake.setState(taskId, 'RUNNING');
  assert.deepEqual(await status(), { status: 'STARTED', statusDetails: {} });
  await fake.setState(taskId, 'COMPLETED', { failure: true });
  const result = await client.getResult(taskId);
  assert.equal(result.failure, true);
  assert.equal(result.exitCode, 1, 'int64 exit code arrives as a string and is parsed');
  assert.deepEqual(buildStatusFromTask(result), { status: 'FAILURE', statusDetails: {} });
});

void test('every final task state maps to the build status Buildbucket gives it', async () => {
  const cases = [
    ['COMPLETED', {}, 'SUCCESS', {}],
    ['COMPLETED', { internalFailure: true }, 'INFRA_FAILURE', {}],
    ['BOT_DIED', {}, 'INFRA_FAILURE', {}],
    ['TIMED_OUT', {}, 'INFRA_FAILURE', { timeout: true }],
    ['EXPIRED', {}, 'INFRA_FAILURE', { resourceExhaustion: true, timeout: true }],
    ['NO_RESOURCE', {}, 'INFRA_FAILURE', { resourceExhaustion: true }],
    ['CLIENT_ERROR', {}, 'INFRA_FAILURE', {}],
    ['CANCELED', {}, 'CANCELED', {}],
    ['KILLED', {}, 'CANCELED', {}],
  ] as const;
  for (const [state, outcome, status, statusDetails] of cases) {
    const { taskId } = await client.newTask(request({ pubsub: false }));
    await fake.setState(taskId, state, outcome);
    const result = await client.getResult(taskId);
    assert.equal(result.state, state);
    assert.deepEqual(buildStatusFromTask(result), { status, statusDetails }, `${state} ${JSON.stringify(outcome)}`);
  }
  assert.throws(() => buildStatusFromTask({ state: 'INVALID' }), KilnError);
});

void test('CancelTask cancels a pending task, kills a running one, and is a no-op on an ended one', async () => {
  const pending = await client.newTask(request({ pubsub: false }));
  assert.deepEqual(await client.cancelTask(pending.taskId), { canceled: true, wasRunning: false });
  assert.equal((await client.getResult(pending.taskId)).state, 'CANCELED');
  assert.deepEqual(await client.cancelTask(pending.taskId), { canceled: false, wasRunning: false });

  const running = await client.newTask(request({ pubsub: false }));
  await fake.setState(running.taskId, 'RUNNING');
  assert.deepEqual(await client.cancelTask(running.taskId, false), { canceled: false, wasRunning: true });
  assert.equal((await client.getResult(running.taskId)).state, 'RUNNING');
  assert.deepEqual(await client.cancelTask(running.taskId), { canceled: true, wasRunning: true });
  assert.equal((await client.getResult(running.taskId)).state, 'KILLED');
  assert.deepEqual(fake.requests.at(-2)?.body, { task_id: running.taskId, kill_running: true });
});

void test('the XSSI prefix is stripped and unknown response fields are tolerated', async () => {
  const body = { taskId: 'abc0', state: 'RUNNING', someFutureField: { x: 1 }, costsUsd: [0.1] };
  fake.replyNext('GetResult', {
    status: 200,
    headers: { 'Content-Type': 'application/json', 'X-Prpc-Grpc-Code': '0' },
    body: `)]}'\n${JSON.stringify(body)}\n`,
  });
  const r = await client.getResult('abc0');
  assert.equal(r.state, 'RUNNING');
  assert.equal(r.failure, false, 'an omitted false is false');
});

void test('a 503 after the task was created, then a retry with the same request_uuid: one task', async () => {
  const before = fake.tasks.size;
  const req = request();
  fake.failNextNewTask(1);
  const err = await rejectsWith(client.newTask(req), { httpStatus: 503, grpcCode: 'UNAVAILABLE', transient: true });
  assert.ok(isTransientSwarmingError(err));
  const created = await client.newTask(req);
  assert.equal(fake.tasks.size, before + 1, 'the retry returned the task the first attempt created');
  assert.equal(fake.newTaskRequests().slice(-2)[0]!.body?.['request_uuid'], req.request_uuid);

  // Without a request_uuid the same sequence creates two tasks: the dedupe is what saves us.
  const anonymous = { ...request(), request_uuid: '' };
  fake.failNextNewTask(1);
  await rejectsWith(client.newTask(anonymous), { transient: true });
  const second = await client.newTask(anonymous);
  assert.equal(fake.tasks.size, before + 3);
  assert.notEqual(second.taskId, created.taskId);
});

void test('malformed responses are permanent errors saying what was wrong', async () => {
  const ok = { 'Content-Type': 'application/json', 'X-Prpc-Grpc-Code': '0' };
  fake.replyNext('GetResult', { status: 200, headers: ok, body: ")]}'\n<html>oops</html>" });
  const notJson = await rejectsWith(client.getResult('x0'), { transient: false, httpStatus: 200 });
  assert.match(notJson.message, /malformed response: not JSON/);

  fake.replyNext('GetResult', { status: 200, headers: ok, body: `)]}'\n{"taskId":"x0","state":"EXPLODED"}` });
  const badEnum = await rejectsWith(client.getResult('x0'), { transient: false });
  assert.match(badEnum.message, /state/);

  fake.replyNext('NewTask', { status: 200, headers: ok, body: `)]}'\n{"request":{}}` });
  const noId = await rejectsWith(client.newTask(request()), { transient: false });
  assert.match(noId.message, /taskId/);
});

void test('pRPC error codes decide transient vs permanent; without a code, the HTTP status does', async () => {
  await rejectsWith(client.getResult('ffff0'), { httpStatus: 404, grpcCode: 'NOT_FOUND', transient: false });
  await rejectsWith(client.newTask({ ...request(), task_slices: [] }), {
    httpStatus: 400,
    grpcCode: 'INVALID_ARGUMENT',
    transient: false,
  });
  const anonymous = new SwarmingClient({ hostname: 'swarm.example.org', baseUrl: fake.baseUrl });
  await rejectsWith(anonymous.getResult('ffff0'), { grpcCode: 'UNAUTHENTICATED', transient: false });

  fake.replyNext('GetResult', { status: 429, body: 'slow down' });
  await rejectsWith(client.getResult('x0'), { httpStatus: 429, grpcCode: undefined, transient: true });
  fake.replyNext('GetResult', { status: 502, body: 'bad gateway' });
  await rejectsWith(client.getResult('x0'), { httpStatus: 502, transient: true });
  // The code header wins over the HTTP status, as pRPC requires.
  fake.replyNext('GetResult', { status: 500, headers: { 'X-Prpc-Grpc-Code': '3' }, body: 'bad task id' });
  await rejectsWith(client.getResult('x0'), { grpcCode: 'INVALID_ARGUMENT', transient: false });
});

void test('timeouts and refused connections are transient', async () => {
  const hang = createServer(() => {
    /* never answers */
  });
  await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
  const port = (hang.address() as AddressInfo).port;
  try {
    const slow = new SwarmingClient({ hostname: 'h', baseUrl: `http://127.0.0.1:${port}`, timeoutMs: 150 });
    const err = await rejectsWith(slow.getResult('x0'), {
      httpStatus: 0,
      grpcCode: 'DEADLINE_EXCEEDED',
      transient: true,
    });
    assert.match(err.message, /timed out after 150 ms/);
  } finally {
    hang.closeAllConnections();
    await new Promise<void>((r) => hang.close(() => r()));
  }
  const refused = new SwarmingClient({ hostname: 'h', baseUrl: `http://127.0.0.1:${port}`, timeoutMs: 1000 });
  await rejectsWith(refused.getResult('x0'), { httpStatus: 0, transient: true });
});

void test('state changes are pushed as Pub/Sub notifications that Kiln can parse back to the build', async () => {
  received = [];
  const req = request();
  const { taskId } = await client.newTask(req);
  await fake.setState(taskId, 'RUNNING');
  await fake.setState(taskId, 'COMPLETED');
  assert.equal(received.length, 2);
  const n = parseSwarmingNotification(received[1]);
  assert.equal(n.taskId, taskId);
  assert.equal(n.authToken, 'pubsub-tok');
  assert.deepEqual(parsePubsubUserdata(n.userdata), {
    buildId: req.tags.find((t) => t.startsWith('buildbucket_build_id:'))!.split(':')[1],
    swarmingHostname: 'swarm.example.org',
  });
});

void test('a lost notification leaves polling as the way to learn the outcome', async () => {
  received = [];
  const { taskId } = await client.newTask(request());
  fake.dropNotifications = true;
  try {
    await fake.setState(taskId, 'COMPLETED');
  } finally {
    fake.dropNotifications = false;
  }
  assert.equal(received.length, 0);
  assert.equal(fake.notifications.at(-1)?.dropped, true);
  assert.equal(buildStatusFromTask(await client.getResult(taskId)).status, 'SUCCESS');
});

void test('malformed Pub/Sub pushes are refused naming the field', () => {
  const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64');
  const cases: [unknown, RegExp][] = [
    [{}, /^message: /],
    [{ message: {} }, /^message\.data: /],
    [{ message: { data: '***' } }, /^message\.data: not base64/],
    [{ message: { data: b64('not json') } }, /^message\.data: not base64-encoded JSON/],
    [{ message: { data: b64({ userdata: 'u' }) } }, /^message\.data\.task_id: /],
    [{ message: { data: b64({ task_id: 't0', userdata: 5 }) } }, /^message\.data\.userdata: /],
  ];
  for (const [body, pattern] of cases) {
    assert.throws(
      () => parseSwarmingNotification(body),
      (e: unknown) => e instanceof KilnError && e.code === 'INVALID_ARGUMENT' && pattern.test(e.message),
      JSON.stringify(body),
    );
  }
  assert.deepEqual(parseSwarmingNotification({ message: { data: b64({ task_id: 't0', userdata: 'u' }) } }), {
    taskId: 't0',
    userdata: 'u',
  });
});
