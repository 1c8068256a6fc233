/**
 * The HTTP API on a real dev server: happy paths, bad input (4xx with a code naming the field and
 * no workflow started), and permissions per bucket role.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { type FastifyInstance } from 'fastify';
import { buildApi, listenApi } from '../../src/api/server.ts';
import { harness, type Harness, startDevEnv, testLogger } from '../support/temporal.ts';

const CONFIG = `
projects:
  - name: chromium
    buckets:
      - name: try
        acls:
          - { role: READER, name: viewer, token: reader-token-0123456789 }
          - { role: SCHEDULER, name: cq, token: scheduler-token-0123456789 }
          - { role: WRITER, name: runner, token: writer-token-0123456789 }
        builders:
          - name: linux-rel
      - name: ci
        acls:
          - { role: WRITER, name: other, token: other-bucket-token-0123 }
        builders:
          - name: mac
`;
const READER = 'reader-token-0123456789';
const SCHEDULER = 'scheduler-token-0123456789';
const WRITER = 'writer-token-0123456789';
const OTHER = 'other-bucket-token-0123';
const builder = { project: 'chromium', bucket: 'try', builder: 'linux-rel' };

describe('HTTP API', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  let app: FastifyInstance;

  before(async () => {
    env = await startDevEnv();
    h = await harness(env, CONFIG);
    app = buildApi({ service: h.service, registry: h.registry, logger: testLogger }, { bodyLimitBytes: 64 * 1024 });
  });
  after(async () => {
    await app?.close();
    await h?.storage.close();
    await env?.teardown();
  });

  const call = async (method: 'GET' | 'POST', url: string, token?: string, body?: unknown) => {
    const r = await app.inject({
      method,
      url,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      payload: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: r.statusCode, body: r.json() as Record<string, unknown> };
  };

  const workflowCount = async () => (await env.client.workflow.count(`TaskQueue = '${h.taskQueue}'`)).count;

  it('runs the whole lease cycle over HTTP', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const s = await call('POST', '/api/v1/builds', SCHEDULER, {
        builder,
        tags: ['buildset:commit/1'],
        requestId: 'r1',
      });
      assert.equal(s.status, 200, JSON.stringify(s.body));
      const id = s.body.id as string;
      assert.equal(s.body.createdBy, 'cq');
      const again = await call('POST', '/api/v1/builds', SCHEDULER, {
        builder,
        tags: ['buildset:commit/1'],
        requestId: 'r1',
      });
      assert.equal(again.body.id, id);

      let peek = await call('POST', '/api/v1/peek', WRITER, { buckets: ['chromium/try'] });
      for (let i = 0; i < 50 && !(peek.body.builds as { id: string }[]).some((b) => b.id === id); i++) {
        await new Promise((r) => setTimeout(r, 100));
        peek = await call('POST', '/api/v1/peek', WRITER, { buckets: ['chromium/try'] });
      }
      assert.ok((peek.body.builds as { id: string }[]).some((b) => b.id === id));
      const lease = await call('POST', `/api/v1/builds/${id}/lease`, WRITER, {
        holder: 'bot-1',
        leaseDurationSecs: 60,
      });
      assert.equal(lease.status, 200);
      const leaseKey = lease.body.leaseKey as string;
      const again2 = await call('POST', `/api/v1/builds/${id}/lease`, WRITER, {});
      assert.deepEqual([again2.status, again2.body.code], [409, 'BUILD_IS_LEASED']);
      // Lease-key calls need no token: the key is the capability.
      assert.equal((await call('POST', `/api/v1/builds/${id}/start`, undefined, { leaseKey })).body.status, 'STARTED');
      const hb = await call('POST', '/api/v1/heartbeat', undefined, {
        heartbeats: [
          { buildId: id, leaseKey },
          { buildId: id, leaseKey: 'stale.key' },
        ],
      });
      const results = hb.body.results as { leaseExpiration?: string; error?: { code: string } }[];
      assert.ok(results[0]?.leaseExpiration);
      assert.equal(results[1]?.error?.code, 'LEASE_EXPIRED');
      const ok = await call('POST', `/api/v1/builds/${id}/succeed`, undefined, {
        leaseKey,
        output: { properties: { x: 1 } },
      });
      assert.equal(ok.body.status, 'SUCCESS');
      const got = await call('GET', `/api/v1/builds/${id}`, READER);
      assert.equal(got.body.status, 'SUCCESS');
      const found = await call('GET', '/api/v1/builds?buildset=commit/1&status=SUCCESS', READER);
      assert.deepEqual(
        (found.body.builds as { id: string }[]).map((b) => b.id),
        [id],
      );
      const cancel = await call('POST', `/api/v1/builds/${id}/cancel`, SCHEDULER, { reason: 'late' });
      assert.equal(cancel.body.status, 'SUCCESS', 'cancel of an ended build changes nothing');
    });
  });

  it('refuses bad input with 4xx, a code, a message naming the field, and starts no workflow', async () => {
    const before = await workflowCount();
    const cases: [unknown, number, string, RegExp][] = [
      [{ builder: { ...builder, builder: 'nope' } }, 404, 'BUILDER_NOT_FOUND', /chromium\/try\/nope/],
      [{ builder, properties: { buildbucket: { x: 1 } } }, 400, 'INVALID_ARGUMENT', /properties\.buildbucket/],
      [{ builder, tags: ['no-colon'] }, 400, 'INVALID_ARGUMENT', /body\.tags\[0\]/],
      [{ builder, priority: 300 }, 400, 'INVALID_ARGUMENT', /body\.priority/],
      [{ builder, surprise: true }, 400, 'INVALID_ARGUMENT', /surprise/],
      [{}, 400, 'INVALID_ARGUMENT', /body\.builder/],
      ['{"builder": ', 400, 'INVALID_ARGUMENT', /JSON/],
    ];
    for (const [body, status, code, msg] of cases) {
      const r = await call('POST', '/api/v1/builds', SCHEDULER, body);
      assert.equal(r.status, status, JSON.stringify(body));
      assert.equal(r.body.code, code);
      assert.match(String(r.body.message), msg);
    }
    const big = await call('POST', '/api/v1/builds', SCHEDULER, {
      builder,
      properties: { blob: 'x'.repeat(100 * 1024) },
    });
    assert.deepEqual([big.status, big.body.code], [413, 'PAYLOAD_TOO_LARGE']);
    const r = await app.inject({
      method: 'POST',
      url: '/api/v1/builds',
      headers: { authorization: `Bearer ${SCHEDULER}`, 'content-type': 'text/plain' },
      payload: 'hi',
    });
    assert.deepEqual([r.statusCode, r.json().code], [415, 'UNSUPPORTED_MEDIA_TYPE']);
    assert.equal((await call('GET', '/api/v1/builds/abc', READER)).body.code, 'INVALID_ARGUMENT');
    assert.equal((await call('GET', '/api/v1/builds/12345', READER)).body.code, 'BUILD_NOT_FOUND');
    assert.equal((await call('GET', '/api/v1/nothing-here', READER)).body.code, 'NOT_FOUND');
    assert.equal((await call('GET', '/api/v1/builds?status=DONE', READER)).body.code, 'INVALID_ARGUMENT');
    assert.equal(await workflowCount(), before, 'no workflow started by a refused request');
  });

  it('enforces tokens and per-bucket roles', async () => {
    const before = await workflowCount();
    const noToken = await call('POST', '/api/v1/builds', undefined, { builder });
    assert.deepEqual([noToken.status, noToken.body.code], [401, 'UNAUTHENTICATED']);
    const wrong = await call('POST', '/api/v1/builds', 'not-a-real-token-at-all', { builder });
    assert.deepEqual([wrong.status, wrong.body.code], [401, 'UNAUTHENTICATED']);
    const malformed = await app.inject({
      method: 'GET',
      url: '/api/v1/builds',
      headers: { authorization: 'Basic abc' },
    });
    assert.equal(malformed.statusCode, 401);
    const reader = await call('POST', '/api/v1/builds', READER, { builder });
    assert.deepEqual([reader.status, reader.body.code], [403, 'PERMISSION_DENIED']);
    const otherBucket = await call('POST', '/api/v1/builds', OTHER, { builder });
    assert.deepEqual([otherBucket.status, otherBucket.body.code], [403, 'PERMISSION_DENIED']);
    const peek = await call('POST', '/api/v1/peek', SCHEDULER, { buckets: ['chromium/try'] });
    assert.deepEqual([peek.status, peek.body.code], [403, 'PERMISSION_DENIED']);
    assert.equal(await workflowCount(), before);
    // Search only covers readable buckets.
    const other = await call('GET', '/api/v1/builds?project=chromium&bucket=try', OTHER);
    assert.deepEqual([other.status, other.body.code], [403, 'PERMISSION_DENIED']);
  });

  it('answers a caller without a valid token the same for an existing and an unknown build', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const s = await call('POST', '/api/v1/builds', SCHEDULER, { builder });
      assert.equal(s.status, 200, JSON.stringify(s.body));
      const id = s.body.id as string;
      const unknown = '12345';
      const routes: ['GET' | 'POST', string, unknown][] = [
        ['GET', '', undefined],
        ['GET', '/log', undefined],
        ['POST', '/cancel', {}],
        ['POST', '/lease', {}],
        ['POST', '/priority', { priority: 1 }],
      ];
      for (const [method, suffix, body] of routes) {
        for (const token of [undefined, 'not-a-real-token-at-all']) {
          const existing = await call(method, `/api/v1/builds/${id}${suffix}`, token, body);
          const missing = await call(method, `/api/v1/builds/${unknown}${suffix}`, token, body);
          assert.deepEqual([existing.status, existing.body], [401, missing.body], `${method} ${suffix} ${token}`);
          assert.equal(missing.status, 401);
        }
        // A token with no role on the build's bucket cannot tell it from an id that does not exist.
        const existing = await call(method, `/api/v1/builds/${id}${suffix}`, OTHER, body);
        const missing = await call(method, `/api/v1/builds/${unknown}${suffix}`, OTHER, body);
        assert.deepEqual([existing.status, existing.body.code], [404, 'BUILD_NOT_FOUND'], `${method} ${suffix}`);
        assert.deepEqual([missing.status, missing.body.code], [404, 'BUILD_NOT_FOUND']);
      }
      // A role on the bucket that is too low still says so.
      const low = await call('POST', `/api/v1/builds/${id}/cancel`, READER, {});
      assert.deepEqual([low.status, low.body.code], [403, 'PERMISSION_DENIED']);
      await call('POST', `/api/v1/builds/${id}/cancel`, SCHEDULER, {});
    });
  });

  it('refuses to listen beyond loopback when no token is configured', async () => {
    const open = await harness(env, 'projects: [{name: p, buckets: [{name: b, builders: [{name: x}]}]}]');
    const ctx = { service: open.service, registry: open.registry, logger: testLogger };
    const app2 = buildApi(ctx);
    await assert.rejects(listenApi(app2, ctx, '0.0.0.0', 0), /refusing to listen on 0\.0\.0\.0/);
    const url = await listenApi(app2, ctx, '127.0.0.1', 0);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    await app2.close();
    await open.storage.close();
  });
});
