/**
 * POST /api/v1/watch on a real dev server: a runner's long poll answers as soon as a held build is
 * canceled (from storage, with no Temporal call per poll), empty after its timeout, at once for a
 * lease that is already over; bad input is refused naming the field; WRITER on the bucket is needed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { type Worker } from '@temporalio/worker';
import { type FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/server.ts';
import { type WatchLeasesResponse, watchLeasesResponse } from '../../src/api/routes/watchLeases.ts';
import { BuildWatcher, endedLeases } from '../../src/builds/watch.ts';
import { harness, type Harness, startDevEnv, testLogger } from '../support/temporal.ts';

const CONFIG = `
projects:
  - name: chromium
    buckets:
      - name: try
        acls:
          - { role: READER, name: viewer, token: reader-token-0123456789 }
          - { role: WRITER, name: runner, token: writer-token-0123456789 }
        builders:
          - name: linux-rel
`;
const READER = 'reader-token-0123456789';
const WRITER = 'writer-token-0123456789';
const builder = { project: 'chromium', bucket: 'try', builder: 'linux-rel' };

describe('POST /api/v1/watch', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  let app: FastifyInstance;
  let watcher: BuildWatcher;
  let worker: Worker;
  let running: Promise<void>;

  before(async () => {
    env = await startDevEnv();
    h = await harness(env, CONFIG);
    watcher = new BuildWatcher({ storage: h.storage, pollMs: 200 });
    app = buildApi({ service: h.service, registry: h.registry, logger: testLogger, watcher });
    worker = await h.newWorker();
    running = worker.run();
  });
  after(async () => {
    await watcher?.close();
    await app?.close();
    worker?.shutdown();
    await running;
    await h?.storage.close();
    await env?.teardown();
  });

  const watch = async (body: unknown, token = WRITER) => {
    const r = await app.inject({
      method: 'POST',
      url: '/api/v1/watch',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      payload: JSON.stringify(body),
    });
    return {
      status: r.statusCode,
      body: (r.statusCode === 200 ? watchLeasesResponse.parse(r.json()) : r.json()) as Partial<WatchLeasesResponse> & {
        code?: string;
        message?: string;
      },
    };
  };

  const leased = async () => {
    const b = await h.service.schedule({ builder });
    const g = await h.service.lease(b.id, { holder: 'watch-test' });
    await h.service.start(b.id, { leaseKey: g.leaseKey });
    return { id: b.id, leaseKey: g.leaseKey };
  };

  it('answers when a held build is canceled, with the status, and not before', async () => {
    const a = await leased();
    const b = await leased();
    const started = Date.now();
    const pending = watch({ builds: [a, b].map((x) => ({ buildId: x.id, leaseKey: x.leaseKey })), timeoutSecs: 30 });
    await new Promise((r) => setTimeout(r, 1000));
    await h.service.cancel(a.id, 'stop it', 'test');
    const r = await pending;
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.results, [
      {
        buildId: a.id,
        status: 'CANCELED',
        error: {
          code: 'BUILD_IS_COMPLETED',
          message: `build ${a.id} has ended with status CANCELED; stop working on it`,
        },
      },
    ]);
    assert.ok(Date.now() - started < 30_000, 'answered on the cancel, not at the timeout');
    // The other build is still held: an empty answer after the (short) timeout.
    const quiet = await watch({ builds: [{ buildId: b.id, leaseKey: b.leaseKey }], timeoutSecs: 0.5 });
    assert.deepEqual(quiet.body.results, []);
    // Already over: at once, even with a long timeout.
    const again = await watch({ builds: [{ buildId: a.id, leaseKey: a.leaseKey }], timeoutSecs: 50 });
    assert.equal(again.body.results?.[0]?.error.code, 'BUILD_IS_COMPLETED');
  });

  it('refuses bad input naming the field, and needs WRITER on the bucket', async () => {
    const a = await leased();
    const bad = await watch({ builds: [{ buildId: a.id, leaseKey: 'nonsense' }] });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'INVALID_ARGUMENT');
    assert.match(bad.body.message ?? '', /body\.builds\[0\]\.leaseKey/);
    const tooLong = await watch({ builds: [{ buildId: a.id, leaseKey: a.leaseKey }], timeoutSecs: 3600 });
    assert.match(tooLong.body.message ?? '', /body\.timeoutSecs/);
    const none = await watch({ builds: [] });
    assert.match(none.body.message ?? '', /body\.builds/);
    const reader = await watch({ builds: [{ buildId: a.id, leaseKey: a.leaseKey }], timeoutSecs: 0 }, READER);
    assert.deepEqual([reader.status, reader.body.code], [403, 'PERMISSION_DENIED']);
    const stranger = await watch({ builds: [{ buildId: a.id, leaseKey: a.leaseKey }] }, 'not-a-token-0123456789');
    assert.equal(stranger.status, 401);
  });

  it('says which leases are over from stored states (pure)', () => {
    const states = new Map([
      ['1', { id: '1', bucket: 'p/b', status: 'STARTED' as const, leaseGeneration: 2 }],
      ['2', { id: '2', bucket: 'p/b', status: 'STARTED' as const, leaseGeneration: 1 }],
    ]);
    const ends = endedLeases(
      [
        { buildId: '1', leaseGeneration: 1 },
        { buildId: '2', leaseGeneration: 1 },
        { buildId: '3', leaseGeneration: 1 },
      ],
      states,
    );
    assert.deepEqual(
      ends.map((e) => [e.buildId, e.code]),
      [
        ['1', 'LEASE_EXPIRED'],
        ['3', 'BUILD_NOT_FOUND'],
      ],
    );
  });
});
