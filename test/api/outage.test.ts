/**
 * The outage contract over HTTP: with the Temporal server unreachable, and with Temporal up but no
 * worker, every route answers — 503 UNAVAILABLE naming the Temporal address where it needs
 * Temporal (or a worker), its normal answer where storage alone serves it — and none hangs or
 * answers 500. The service's documented bounds are 5 s for a Temporal call and 10 s for a
 * workflow's answer; this test only guards against hangs (60 s) and prints how long each took.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { type FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/server.ts';
import { BuildService } from '../../src/builds/service.ts';
import { type Build, isEnded } from '../../src/domain/build.ts';
import { newBuildId } from '../../src/domain/buildId.ts';
import { FileLogStore } from '../../src/logs/logStore.ts';
import { losingScheduleWrites, scheduledBuild } from '../support/builds.ts';
import { spawnDevServerOnFreePort } from '../support/processes.ts';
import { eventually, harness, type Harness, startDevEnv, testLogger } from '../support/temporal.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CONFIG = `
projects:
  - name: chromium
    buckets:
      - name: try
        builders:
          - name: linux-rel
`;
const builder = { project: 'chromium', bucket: 'try', builder: 'linux-rel' };

/** Every route that reaches Temporal, with a body that passes validation. */
function routes(id: string, leaseKey: string, unstored: string): [string, 'GET' | 'POST', string, unknown][] {
  return [
    ['schedule', 'POST', '/api/v1/builds', { builder }],
    ['cancel', 'POST', `/api/v1/builds/${id}/cancel`, {}],
    ['priority', 'POST', `/api/v1/builds/${id}/priority`, { priority: 10 }],
    ['lease', 'POST', `/api/v1/builds/${id}/lease`, {}],
    ['start', 'POST', `/api/v1/builds/${id}/start`, { leaseKey }],
    ['heartbeat', 'POST', `/api/v1/builds/${id}/heartbeat`, { leaseKey }],
    ['heartbeat batch', 'POST', '/api/v1/heartbeat', { heartbeats: [{ buildId: id, leaseKey }] }],
    ['succeed', 'POST', `/api/v1/builds/${id}/succeed`, { leaseKey }],
    ['fail', 'POST', `/api/v1/builds/${id}/fail`, { leaseKey }],
    ['log', 'POST', `/api/v1/builds/${id}/log`, { leaseKey, offset: 0, data: 'x' }],
    ['tinderbox report', 'POST', '/api/v1/tinderbox/report', { buildId: id, leaseKey, outcome: 'SUCCESS' }],
    ['get unstored', 'GET', `/api/v1/builds/${unstored}`, undefined],
  ];
}

describe('outages: every route answers UNAVAILABLE in bounded time, never 500', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  const dir = mkdtempSync(join(tmpdir(), 'kiln-outage-'));
  before(async () => {
    env = await startDevEnv();
    h = await harness(env, CONFIG);
  });
  after(async () => {
    await h?.storage.close();
    await env?.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  const callAll = async (app: FastifyInstance, list: ReturnType<typeof routes>) =>
    Promise.all(
      list.map(async ([name, method, url, body]) => {
        const t0 = Date.now();
        const r = await Promise.race([
          app.inject({
            method,
            url,
            headers: body === undefined ? {} : { 'content-type': 'application/json' },
            payload: body === undefined ? undefined : JSON.stringify(body),
          }),
          new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`${name} hangs`)), 60_000)),
        ]);
        return { name, status: r.statusCode, body: r.json<{ code?: string; message?: string }>(), ms: Date.now() - t0 };
      }),
    );

  it('with the Temporal server unreachable: 503 UNAVAILABLE naming its address', async () => {
    // A Temporal server that was there when the API connected, and then died.
    const { port, temporal } = await spawnDevServerOnFreePort(join(dir, 'temporal.db'));
    const address = `127.0.0.1:${port}`;
    const client = new Client({ connection: await Connection.connect({ address }) });
    await temporal.kill('SIGKILL');
    const service = new BuildService({
      client,
      storage: h.storage,
      registry: h.registry,
      taskQueue: h.taskQueue,
      logger: testLogger,
    });
    const app = buildApi({ service, registry: h.registry, logger: testLogger, logs: new FileLogStore(dir) });
    // A build storage knows (so routes get past the storage read to Temporal), with a key it answers to.
    const b: Build = scheduledBuild(newBuildId(Date.now(), 1), builder, new Date().toISOString(), {
      status: 'STARTED',
      leaseGeneration: 1,
      leaseHolder: 'r',
      leaseExpiration: new Date(Date.now() + 3600_000).toISOString(),
    });
    await h.storage.recordBuild(b, { known: ['1.key'] });
    try {
      const answers = await callAll(app, routes(b.id, '1.key', newBuildId(Date.now() - 5000, 7)));
      console.log(`Temporal down: ${answers.map((a) => `${a.name} ${a.status} ${a.ms} ms`).join(', ')}`);
      for (const a of answers) {
        const batch = a.name === 'heartbeat batch';
        const code = batch
          ? (a.body as { results?: { error?: { code: string; message: string } }[] }).results?.[0]?.error
          : a.body;
        assert.equal(batch ? a.status : a.status, batch ? 200 : 503, `${a.name}: ${JSON.stringify(a.body)}`);
        assert.equal(code?.code, 'UNAVAILABLE', `${a.name}: ${JSON.stringify(a.body)}`);
        assert.ok(code?.message?.includes(address), `${a.name} names ${address}: ${code?.message}`);
      }
      // Storage alone still serves reads.
      const get = await app.inject({ method: 'GET', url: `/api/v1/builds/${b.id}` });
      assert.equal(get.statusCode, 200);
      const peek = await app.inject({ method: 'POST', url: '/api/v1/peek', payload: { buckets: ['chromium/try'] } });
      assert.equal(peek.statusCode, 200);
    } finally {
      await app.close();
      await client.connection.close();
    }
  });

  it('with Temporal up but no worker: 503 UNAVAILABLE where a worker must answer; schedule still answers', async () => {
    const app = buildApi({ service: h.service, registry: h.registry, logger: testLogger, logs: new FileLogStore(dir) });
    // A build leased and started while a worker ran; then the worker is gone.
    let b: Build | undefined;
    let key = '';
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      b = await h.service.schedule({ builder });
      key = (await h.service.lease(b.id, { leaseDurationMs: 3_600_000 })).leaseKey;
      await h.service.start(b.id, { leaseKey: key });
    });
    assert.ok(b);
    // Scheduled with no worker by an API that died before its write: durable, but not stored yet.
    const unstored = await h.newService({ storage: losingScheduleWrites(h.storage) }).schedule({ builder });
    try {
      const answers = await callAll(app, routes(b.id, key, unstored.id));
      console.log(`no worker: ${answers.map((a) => `${a.name} ${a.status} ${a.ms} ms`).join(', ')}`);
      const byName = new Map(answers.map((a) => [a.name, a]));
      // Durable without a worker: schedule answers with the build; cancel is a signal (queued) and
      // answers with the build as storage has it.
      assert.equal(byName.get('schedule')?.status, 200, JSON.stringify(byName.get('schedule')?.body));
      assert.equal(byName.get('cancel')?.status, 200, JSON.stringify(byName.get('cancel')?.body));
      for (const a of answers) {
        if (a.name === 'schedule' || a.name === 'cancel') continue;
        assert.ok(a.status < 500 || a.status === 503, `${a.name}: ${a.status} ${JSON.stringify(a.body)}`);
        if (a.name === 'heartbeat batch') {
          const err = (a.body as { results?: { error?: { code: string } }[] }).results?.[0]?.error;
          assert.equal(err?.code, 'UNAVAILABLE', JSON.stringify(a.body));
          continue;
        }
        assert.equal(a.status, 503, `${a.name}: ${JSON.stringify(a.body)}`);
        assert.equal(a.body.code, 'UNAVAILABLE');
        assert.match(a.body.message ?? '', /worker|Temporal/);
      }
    } finally {
      await app.close();
    }
    // Nothing was lost: once a worker runs again the canceled build ends (the calls the server kept
    // may land first) and the unstored one is stored.
    const again = await h.newWorker();
    const id = b.id;
    await again.runUntil(async () => {
      await eventually(
        async () => {
          const x = await h.storage.getBuild(id);
          return x !== undefined && isEnded(x.status);
        },
        30_000,
        'the canceled build ends',
      );
      await eventually(async () => (await h.storage.getBuild(unstored.id)) !== undefined, 30_000, 'stored');
      await h.service.cancel(unstored.id, undefined, undefined);
    });
  });
});
