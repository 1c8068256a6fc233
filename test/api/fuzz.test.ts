/**
 * Bad-input fuzzing of every HTTP endpoint (fast-check): random, truncated and oversized bodies,
 * wrong types, unicode, huge tag lists, path traversal, wrong and missing tokens, other builds'
 * lease keys. Every answer must be a 4xx with a known code (never 5xx, never a hang), no workflow
 * may be started and no build changed by a refused request, and the server stays up.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import fc from 'fast-check';
import { type FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/server.ts';
import { ERROR_CODES } from '../../src/domain/errors.ts';
import { harness, type Harness, startDevEnv, testLogger } from '../support/temporal.ts';

const CONFIG = `
projects:
  - name: chromium
    buckets:
      - name: try
        acls:
          - { role: WRITER, name: runner, token: writer-token-0123456789 }
        builders:
          - name: linux-rel
`;
const TOKEN = 'writer-token-0123456789';
const LIMIT = 16 * 1024;
const RUNS = Number(process.env.KILN_FUZZ_RUNS ?? '150');

describe('HTTP API fuzzing', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  let app: FastifyInstance;
  let workerDone: () => void;
  let workerRun: Promise<void>;
  let victim: { id: string; leaseKey: string; version: number };
  let other: { id: string; leaseKey: string };

  before(async () => {
    env = await startDevEnv();
    h = await harness(env, CONFIG);
    app = buildApi({ service: h.service, registry: h.registry, logger: testLogger }, { bodyLimitBytes: LIMIT });
    const worker = await h.newWorker();
    workerRun = worker.runUntil(new Promise<void>((r) => (workerDone = r)));
    const builder = { project: 'chromium', bucket: 'try', builder: 'linux-rel' };
    const v = await h.service.schedule({ builder });
    const vk = await h.service.lease(v.id, { leaseDurationMs: 3_600_000 });
    await h.service.start(v.id, { leaseKey: vk.leaseKey });
    const o = await h.service.schedule({ builder });
    const ok = await h.service.lease(o.id, { leaseDurationMs: 3_600_000 });
    victim = { id: v.id, leaseKey: vk.leaseKey, version: (await h.storage.getBuild(v.id))?.version ?? -1 };
    other = { id: o.id, leaseKey: ok.leaseKey };
  });
  after(async () => {
    workerDone?.();
    await workerRun;
    await app?.close();
    await h?.storage.close();
    await env?.teardown();
  });

  const routes = () =>
    [
      ['POST', '/api/v1/builds'],
      ['GET', `/api/v1/builds/${victim.id}`],
      ['GET', '/api/v1/builds'],
      ['POST', `/api/v1/builds/${victim.id}/cancel`],
      ['POST', `/api/v1/builds/${victim.id}/priority`],
      ['POST', '/api/v1/peek'],
      ['POST', `/api/v1/builds/${victim.id}/lease`],
      ['POST', `/api/v1/builds/${victim.id}/start`],
      ['POST', `/api/v1/builds/${victim.id}/heartbeat`],
      ['POST', '/api/v1/heartbeat'],
      ['POST', `/api/v1/builds/${victim.id}/succeed`],
      ['POST', `/api/v1/builds/${victim.id}/fail`],
      ['GET', '/api/v1/verifications?change=1'],
    ] as const;

  const validBodies = () => [
    { builder: { project: 'chromium', bucket: 'try', builder: 'linux-rel' }, tags: ['a:b'] },
    { buckets: ['chromium/try'], maxBuilds: 5 },
    { leaseKey: 'placeholder-victim', leaseDurationSecs: 60 },
    { heartbeats: [{ buildId: '7340946515261787793', leaseKey: 'placeholder-victim' }] },
    { priority: 10 },
  ];

  /** Anything a hostile or broken client might send as a body. */
  const body = fc.oneof(
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc.string({ unit: 'binary' }),
    fc
      .constantFrom(...validBodies().map((b) => JSON.stringify(b)))
      .chain((s) => fc.nat(s.length - 1).map((n) => s.slice(0, n))),
    fc
      .record({
        builder: fc.anything(),
        tags: fc.anything(),
        properties: fc.anything(),
        priority: fc.anything(),
        leaseKey: fc.anything(),
      })
      .map((v) => JSON.stringify(v)),
    fc
      .array(fc.string({ unit: 'grapheme', maxLength: 30 }), { minLength: 300, maxLength: 3000 })
      .map((tags) => JSON.stringify({ builder: { project: 'chromium', bucket: 'try', builder: 'linux-rel' }, tags })),
    fc.nat(LIMIT * 3).map((n) =>
      JSON.stringify({
        builder: { project: 'chromium', bucket: 'try', builder: 'linux-rel' },
        properties: { x: 'y'.repeat(LIMIT + n) },
      }),
    ),
    fc.constant(JSON.stringify({ leaseKey: 'placeholder-other' })),
  );
  /** Wrong, missing or malformed credentials (never the writer token: those requests may legitimately succeed). */
  const auth = fc.oneof(
    fc.constant(undefined),
    fc.string().map((s) => `Bearer ${s}`),
    fc.string(),
    fc.constant('Basic d3JpdGVyOnB3'),
    fc.constant(`Bearer ${TOKEN}x`),
  );

  const check = (status: number, payload: string, what: string) => {
    assert.ok(status >= 400 && status < 500, `${what} → ${status} ${payload.slice(0, 300)}`);
    const j = JSON.parse(payload) as { code?: unknown; message?: unknown };
    assert.ok((ERROR_CODES as readonly unknown[]).includes(j.code), `${what}: unknown code ${String(j.code)}`);
    assert.equal(typeof j.message, 'string');
  };

  const inject = async (method: 'GET' | 'POST', url: string, headers: Record<string, string>, payload?: string) => {
    const r = await Promise.race([
      app.inject({ method, url, headers, payload }),
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`hang: ${method} ${url}`)), 30_000)),
    ]);
    return r;
  };

  it('answers random bodies and bad credentials on every route with a coded 4xx', async () => {
    const before = (await env.client.workflow.count(`TaskQueue = '${h.taskQueue}'`)).count;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...routes()),
        body,
        auth,
        fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded'),
        async ([method, url], b, a, ct) => {
          // Truncated valid bodies carry the victim's real key: still refused, since they are not valid JSON
          // or (when whole) sent with bad credentials or to routes that need more.
          const payload = b
            .replace('placeholder-other', other.leaseKey)
            .replace('placeholder-victim', `${victim.leaseKey}-not`);
          const headers: Record<string, string> = { 'content-type': ct };
          if (a !== undefined) headers.authorization = a;
          const r = await inject(method, url, headers, method === 'GET' ? undefined : payload);
          check(r.statusCode, r.payload, `${method} ${url} ${payload.slice(0, 80)}`);
        },
      ),
      { numRuns: RUNS },
    );
    assert.equal(
      (await env.client.workflow.count(`TaskQueue = '${h.taskQueue}'`)).count,
      before,
      'no workflow started',
    );
    const v = await h.storage.getBuild(victim.id);
    assert.equal(v?.status, 'STARTED');
    assert.equal(v?.version, victim.version, 'the victim build was not changed');
  });

  it('refuses hostile paths and query strings (traversal, unicode, junk ids) with a coded 4xx', async () => {
    const segment = fc.oneof(
      fc.constantFrom(
        '..',
        '%2e%2e',
        '..%2f..%2fetc%2fpasswd',
        '%00',
        '-1',
        '9223372036854775808',
        '0',
        'ｂｕｉｌｄ',
        '😀',
        'a'.repeat(5000),
      ),
      fc.string({ unit: 'grapheme', maxLength: 40 }).map(encodeURIComponent),
    );
    await fc.assert(
      fc.asyncProperty(
        segment,
        fc.constantFrom('', '/log', '/lease', '/start', '/cancel', '/../../etc/passwd', '/log?name=../../etc/passwd'),
        fc.string({ maxLength: 200 }),
        async (seg, tail, q) => {
          const method = tail === '' || tail.startsWith('/log') || tail.startsWith('/..') ? 'GET' : 'POST';
          const r = await inject(
            method,
            `/api/v1/builds/${seg}${tail}`,
            { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
            method === 'POST' ? '{}' : undefined,
          );
          check(r.statusCode, r.payload, `${method} ${seg}${tail}`);
          const s = await inject(
            'GET',
            `/api/v1/builds?${encodeURIComponent(q)}=${encodeURIComponent(q)}&status=${encodeURIComponent(q)}`,
            { authorization: `Bearer ${TOKEN}` },
          );
          assert.ok(s.statusCode < 500, `search ${q} → ${s.statusCode}`);
          if (s.statusCode >= 400) check(s.statusCode, s.payload, `search ${q}`);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("refuses another build's lease key and changes neither build", async () => {
    for (const path of ['start', 'heartbeat', 'succeed', 'fail']) {
      const r = await inject(
        'POST',
        `/api/v1/builds/${victim.id}/${path}`,
        { 'content-type': 'application/json' },
        JSON.stringify({ leaseKey: other.leaseKey }),
      );
      assert.equal(r.statusCode, 409, r.payload);
      assert.equal(r.json().code, 'LEASE_EXPIRED');
    }
    const hb = await inject(
      'POST',
      '/api/v1/heartbeat',
      { 'content-type': 'application/json' },
      JSON.stringify({ heartbeats: [{ buildId: other.id, leaseKey: victim.leaseKey }] }),
    );
    assert.equal(hb.json().results[0].error.code, 'LEASE_EXPIRED');
    assert.equal((await h.storage.getBuild(victim.id))?.status, 'STARTED');
    assert.equal((await h.storage.getBuild(other.id))?.status, 'SCHEDULED');
    const health = await inject('GET', '/healthz', {});
    assert.equal(health.statusCode, 200, 'the server is still up');
  });
});
