/**
 * POST /api/v1/lease-next (peek + lease + start in one round trip) on a real dev server: the best
 * build first, every build to exactly one of several racing runners, `{lease: null}` when nothing is
 * pending; bad input names the field; WRITER on every named bucket. And the API's memory of what it
 * granted and where builds live never lets a key or a token through that storage would refuse.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { type FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/server.ts';
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
          - { name: linux-rel, dimensions: ['os:Linux'] }
          - { name: mac-rel, dimensions: ['os:Mac'] }
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
const linux = { project: 'chromium', bucket: 'try', builder: 'linux-rel' };
const mac = { project: 'chromium', bucket: 'try', builder: 'mac-rel' };

describe('lease-next', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  let app: FastifyInstance;

  before(async () => {
    env = await startDevEnv();
    h = await harness(env, CONFIG);
    app = buildApi({ service: h.service, registry: h.registry, logger: testLogger });
  });
  after(async () => {
    await app?.close();
    await h?.storage.close();
    await env?.teardown();
  });

  const call = async (url: string, token: string | undefined, body: unknown) => {
    const r = await app.inject({
      method: 'POST',
      url,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json' },
      payload: JSON.stringify(body),
    });
    return { status: r.statusCode, body: r.json() as Record<string, unknown> };
  };
  const schedule = async (builder: typeof linux, priority?: number) => {
    const s = await call('/api/v1/builds', SCHEDULER, { builder, ...(priority ? { priority } : {}) });
    assert.equal(s.status, 200, JSON.stringify(s.body));
    return s.body.id as string;
  };
  type Grant = { leaseKey: string; build: { id: string; status: string; leaseHolder?: string } } | null;
  const leaseNext = async (body: Record<string, unknown>, token = WRITER) => {
    const r = await call('/api/v1/lease-next', token, { buckets: ['chromium/try'], ...body });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.lease as Grant;
  };

  it('hands out the best build the runner covers, started, then the next, then nothing', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const older = await schedule(linux);
      const urgent = await schedule(linux, 10);
      const other = await schedule(mac, 1); // best priority, but not for a Linux runner
      const dims = { dimensions: ['os:Linux'], holder: 'bot-1' };
      const first = await leaseNext({ ...dims, start: true });
      assert.equal(first?.build.id, urgent);
      assert.equal(first?.build.status, 'STARTED');
      assert.equal(first?.build.leaseHolder, 'bot-1');
      const second = await leaseNext(dims);
      assert.equal(second?.build.id, older);
      assert.equal(second?.build.status, 'SCHEDULED', 'not started without start: true');
      assert.equal(await leaseNext(dims), null);
      // The key works for the usual calls, with no token (it is the capability).
      const hb = await call('/api/v1/heartbeat', undefined, {
        heartbeats: [{ buildId: urgent, leaseKey: first?.leaseKey }],
      });
      assert.ok((hb.body.results as { leaseExpiration?: string }[])[0]?.leaseExpiration, JSON.stringify(hb.body));
      const done = await call(`/api/v1/builds/${urgent}/succeed`, undefined, { leaseKey: first?.leaseKey });
      assert.equal(done.body.status, 'SUCCESS');
      assert.equal((await leaseNext({ dimensions: ['os:Mac'] }))?.build.id, other);
    });
  });

  it('gives each build to exactly one of several racing runners', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const ids = [await schedule(linux), await schedule(linux), await schedule(linux)];
      const grants = await Promise.all(
        Array.from({ length: 6 }, (_, i) => leaseNext({ dimensions: ['os:Linux'], holder: `bot-${i}` })),
      );
      const got = grants.filter((g) => g !== null).map((g) => g.build.id);
      assert.deepEqual([...got].sort(), [...ids].sort(), 'every build leased once');
      assert.equal(grants.filter((g) => g === null).length, 3);
    });
  });

  it('refuses bad input naming the field, and callers without WRITER on every bucket', async () => {
    const bad = await call('/api/v1/lease-next', WRITER, { buckets: ['chromium/try'], leaseDurationSecs: -1 });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'INVALID_ARGUMENT');
    assert.match(String(bad.body.message), /leaseDurationSecs/);
    const none = await call('/api/v1/lease-next', WRITER, {});
    assert.equal(none.status, 400);
    assert.match(String(none.body.message), /buckets/);
    assert.equal((await call('/api/v1/lease-next', undefined, { buckets: ['chromium/try'] })).status, 401);
    const reader = await call('/api/v1/lease-next', READER, { buckets: ['chromium/try'] });
    assert.deepEqual([reader.status, reader.body.code], [403, 'PERMISSION_DENIED']);
    const mixed = await call('/api/v1/lease-next', WRITER, { buckets: ['chromium/try', 'chromium/ci'] });
    assert.equal(mixed.status, 403);
  });

  it('what the API remembers lets nothing through that storage would refuse', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const id = await schedule(linux);
      // The bucket of a build the API has seen: another bucket's token still gets BUILD_NOT_FOUND.
      const foreign = await call(`/api/v1/builds/${id}/lease`, OTHER, {});
      assert.deepEqual([foreign.status, foreign.body.code], [404, 'BUILD_NOT_FOUND']);
      const reader = await call(`/api/v1/builds/${id}/lease`, READER, {});
      assert.deepEqual([reader.status, reader.body.code], [403, 'PERMISSION_DENIED']);
      const g = await call(`/api/v1/builds/${id}/lease`, WRITER, { leaseDurationSecs: 60 });
      const leaseKey = g.body.leaseKey as string;
      // A key the API granted is still judged by the build: a wrong one, or after the build ended.
      const wrong = await call(`/api/v1/builds/${id}/start`, undefined, { leaseKey: `${leaseKey}x` });
      assert.equal(wrong.body.code, 'LEASE_EXPIRED');
      assert.equal((await call(`/api/v1/builds/${id}/succeed`, undefined, { leaseKey })).body.status, 'SUCCESS');
      const late = await call('/api/v1/heartbeat', undefined, { heartbeats: [{ buildId: id, leaseKey }] });
      assert.equal((late.body.results as { error?: { code: string } }[])[0]?.error?.code, 'BUILD_IS_COMPLETED');
    });
  });
});
