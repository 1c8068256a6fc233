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
/** Body limit of the hostile-field test: bigger than every field's own limit. */
const BIG_LIMIT = 256 * 1024;
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
          const where = `${method} ${seg}${tail}`;
          if (new URL(`/api/v1/builds/${seg}${tail}`, 'http://kiln').pathname.startsWith('/api/')) {
            check(r.statusCode, r.payload, where);
          } else {
            // The dots climbed out of /api: the web UI answers with its own index page (a client-side route),
            // never with a file from outside ui/dist.
            assert.ok(
              r.statusCode === 200 || (r.statusCode >= 400 && r.statusCode < 500),
              `${where} → ${r.statusCode}`,
            );
            if (r.statusCode === 200) {
              assert.match(String(r.headers['content-type']), /^text\/html/, where);
              assert.match(r.payload, /<div id="root">/, where);
            }
            assert.doesNotMatch(r.payload, /root:.*:0:0:/, where);
          }
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

  it('refuses NUL, lone surrogates, over-long values and deep nesting in every string field, naming the field', async () => {
    const builder = { project: 'chromium', bucket: 'try', builder: 'linux-rel' };
    const key = victim.leaseKey;
    const id = victim.id;
    /** A field of a route: a valid request, and where the hostile value goes. */
    interface Field {
      name: string;
      method: 'GET' | 'POST';
      url: string;
      body?: () => Record<string, unknown>;
      /** Puts `v` into the request (the body, or the query string). */
      set: (req: { body: Record<string, unknown>; query: URLSearchParams }, v: unknown) => void;
      /** What an INVALID_ARGUMENT message must start with. */
      path: string;
      /** Stored as bytes, not text: any string is fine here (2xx), only size and type are checked. */
      anyText?: boolean;
      /** No length limit of its own (only the body's): a long value is fine here. */
      unbounded?: boolean;
    }
    const schedule = () => ({ builder: { ...builder }, properties: { ok: 1 }, tags: ['a:b'] });
    const complete = () => ({ leaseKey: `${key}-not` });
    const fields: Field[] = [
      ...(['project', 'bucket', 'builder'] as const).map((k): Field => ({
        name: `schedule builder.${k}`,
        method: 'POST',
        url: '/api/v1/builds',
        body: schedule,
        set: (r, v) => ((r.body.builder as Record<string, unknown>)[k] = v),
        path: `body.builder.${k}`,
      })),
      {
        name: 'schedule property value',
        method: 'POST',
        url: '/api/v1/builds',
        body: schedule,
        set: (r, v) => ((r.body.properties as Record<string, unknown>).p = v),
        path: 'body.properties',
        unbounded: true,
      },
      {
        name: 'schedule property key',
        method: 'POST',
        url: '/api/v1/builds',
        body: schedule,
        set: (r, v) =>
          (r.body.properties = {
            [typeof v === 'string' && !v.startsWith('__kiln') ? v : 'k']:
              typeof v === 'string' && !v.startsWith('__kiln') ? 1 : v,
          }),
        path: 'body.properties',
      },
      {
        name: 'schedule tag',
        method: 'POST',
        url: '/api/v1/builds',
        body: schedule,
        set: (r, v) => (r.body.tags = [typeof v === 'string' ? `k:${v}` : v]),
        path: 'body.tags[0]',
      },
      {
        name: 'schedule dimension',
        method: 'POST',
        url: '/api/v1/builds',
        body: schedule,
        set: (r, v) => (r.body.dimensions = [typeof v === 'string' ? `k:${v}` : v]),
        path: 'body.dimensions[0]',
      },
      {
        name: 'schedule requestId',
        method: 'POST',
        url: '/api/v1/builds',
        body: schedule,
        set: (r, v) => (r.body.requestId = v),
        path: 'body.requestId',
      },
      {
        name: 'schedule swarming override',
        method: 'POST',
        url: '/api/v1/builds',
        body: schedule,
        set: (r, v) => (r.body.swarming = { overrideBuilderCfg: { dimensions: [v] } }),
        path: 'body.swarming',
      },
      {
        name: 'cancel reason',
        method: 'POST',
        url: `/api/v1/builds/${id}/cancel`,
        body: () => ({}),
        set: (r, v) => (r.body.reason = v),
        path: 'body.reason',
      },
      {
        name: 'lease holder',
        method: 'POST',
        url: `/api/v1/builds/${id}/lease`,
        body: () => ({}),
        set: (r, v) => (r.body.holder = v),
        path: 'body.holder',
      },
      {
        name: 'lease requestId',
        method: 'POST',
        url: `/api/v1/builds/${id}/lease`,
        body: () => ({}),
        set: (r, v) => (r.body.requestId = v),
        path: 'body.requestId',
      },
      {
        name: 'start leaseKey',
        method: 'POST',
        url: `/api/v1/builds/${id}/start`,
        body: () => ({}),
        set: (r, v) => (r.body.leaseKey = v),
        path: 'body.leaseKey',
      },
      {
        name: 'start url',
        method: 'POST',
        url: `/api/v1/builds/${id}/start`,
        body: complete,
        set: (r, v) => (r.body.url = typeof v === 'string' ? `http://x/${v}` : v),
        path: 'body.url',
      },
      {
        name: 'heartbeat leaseKey',
        method: 'POST',
        url: `/api/v1/builds/${id}/heartbeat`,
        body: () => ({}),
        set: (r, v) => (r.body.leaseKey = v),
        path: 'body.leaseKey',
      },
      {
        name: 'batch buildId',
        method: 'POST',
        url: '/api/v1/heartbeat',
        body: () => ({}),
        set: (r, v) => (r.body.heartbeats = [{ buildId: v, leaseKey: 'k' }]),
        path: 'body.heartbeats[0].buildId',
      },
      {
        name: 'batch leaseKey',
        method: 'POST',
        url: '/api/v1/heartbeat',
        body: () => ({}),
        set: (r, v) => (r.body.heartbeats = [{ buildId: id, leaseKey: v }]),
        path: 'body.heartbeats[0].leaseKey',
      },
      ...(['succeed', 'fail'] as const).flatMap((route): Field[] => [
        {
          name: `${route} summaryMarkdown`,
          method: 'POST',
          url: `/api/v1/builds/${id}/${route}`,
          body: complete,
          set: (r, v) => (r.body.summaryMarkdown = v),
          path: 'body.summaryMarkdown',
        },
        {
          name: `${route} output.summaryMarkdown`,
          method: 'POST',
          url: `/api/v1/builds/${id}/${route}`,
          body: complete,
          set: (r, v) => (r.body.output = { summaryMarkdown: v }),
          path: 'body.output.summaryMarkdown',
        },
        {
          name: `${route} output property`,
          method: 'POST',
          url: `/api/v1/builds/${id}/${route}`,
          body: complete,
          set: (r, v) => (r.body.output = { properties: { p: v } }),
          path: 'body.output.properties',
          unbounded: true,
        },
        {
          name: `${route} url`,
          method: 'POST',
          url: `/api/v1/builds/${id}/${route}`,
          body: complete,
          set: (r, v) => (r.body.url = typeof v === 'string' ? `http://x/${v}` : v),
          path: 'body.url',
        },
      ]),
      {
        name: 'peek bucket',
        method: 'POST',
        url: '/api/v1/peek',
        body: () => ({}),
        set: (r, v) => (r.body.buckets = [typeof v === 'string' ? `chromium/${v}` : v]),
        path: 'body.buckets[0]',
      },
      {
        name: 'peek dimension',
        method: 'POST',
        url: '/api/v1/peek',
        body: () => ({ buckets: ['chromium/try'] }),
        set: (r, v) => (r.body.dimensions = [typeof v === 'string' ? `k:${v}` : v]),
        path: 'body.dimensions[0]',
      },
      {
        name: 'peek builder',
        method: 'POST',
        url: '/api/v1/peek',
        body: () => ({ buckets: ['chromium/try'] }),
        set: (r, v) => (r.body.builders = [v]),
        path: 'body.builders[0]',
      },
      {
        name: 'log leaseKey',
        method: 'POST',
        url: `/api/v1/builds/${id}/log`,
        body: () => ({ offset: 0, data: '' }),
        set: (r, v) => (r.body.leaseKey = v),
        path: 'body.leaseKey',
      },
      {
        name: 'log data',
        method: 'POST',
        url: `/api/v1/builds/${id}/log`,
        body: () => ({ leaseKey: key }),
        set: (r, v) => Object.assign(r.body, { data: v, offset: 'appendAt' }),
        path: 'body.data',
        anyText: true,
        unbounded: true,
      },
      {
        name: 'get-task platform',
        method: 'POST',
        url: '/api/v1/tinderbox/get-task',
        body: () => ({ tinderboxId: 't' }),
        set: (r, v) => (r.body.platform = v),
        path: 'body.platform',
      },
      {
        name: 'get-task tinderboxId',
        method: 'POST',
        url: '/api/v1/tinderbox/get-task',
        body: () => ({ platform: 'p' }),
        set: (r, v) => (r.body.tinderboxId = v),
        path: 'body.tinderboxId',
      },
      {
        name: 'get-task capability',
        method: 'POST',
        url: '/api/v1/tinderbox/get-task',
        body: () => ({ platform: 'p', tinderboxId: 't' }),
        set: (r, v) => (r.body.capabilities = [v]),
        path: 'body.capabilities[0]',
      },
      ...(['buildId', 'leaseKey', 'summary', 'url'] as const).map((k): Field => ({
        name: `report ${k}`,
        method: 'POST',
        url: '/api/v1/tinderbox/report',
        body: () => ({ buildId: id, leaseKey: `${key}-not`, outcome: 'SUCCESS' }),
        set: (r, v) => (r.body[k] = k === 'url' && typeof v === 'string' ? `http://x/${v}` : v),
        path: `body.${k}`,
      })),
      ...(
        [
          'project',
          'bucket',
          'builder',
          'status',
          'tag',
          'buildset',
          'createdAfter',
          'createdBefore',
          'cursor',
          'limit',
        ] as const
      ).map((k): Field => ({
        name: `search ${k}`,
        method: 'GET',
        url: '/api/v1/builds',
        set: (r, v) => r.query.set(k, typeof v === 'string' ? (k === 'tag' ? `k:${v}` : v) : JSON.stringify(v)),
        path: `query.${k}`,
      })),
      ...(['host', 'change', 'patchset'] as const).map((k): Field => ({
        name: `verifications ${k}`,
        method: 'GET',
        url: '/api/v1/verifications',
        set: (r, v) => {
          r.query.set('change', '1');
          r.query.set(k, typeof v === 'string' ? v : JSON.stringify(v));
        },
        path: `query.${k}`,
      })),
    ];
    /** JSON text nested `depth` levels (JSON.stringify itself overflows the stack on such values). */
    const nestedJson = (depth: number): string =>
      '[{"d":'.repeat(Math.ceil(depth / 2)) + '"leaf"' + '}]'.repeat(Math.ceil(depth / 2));
    const DEEP = '__kiln_fuzz_deep__';
    /** Hostile values: NUL and lone surrogates inside random text, over-long text, deep nesting. */
    const hostile = fc.oneof(
      fc
        .tuple(
          fc.string({ maxLength: 20 }),
          fc.constantFrom('\u0000', '\ud800', '\udbff', '\udc00', '\udfff'),
          fc.string({ maxLength: 20 }),
        )
        .map(([a, x, c]) => ({ kind: 'unstorable', value: a + x + c })),
      // Longer than any field's own limit (64 KiB summaries), shorter than the body limit.
      fc.integer({ min: 65537, max: 70000 }).map((n) => ({ kind: 'long', value: 'x'.repeat(n) })),
      fc.constant({ kind: 'too long for the body', value: 'y'.repeat(BIG_LIMIT + 1) }),
      fc.integer({ min: 33, max: 5000 }).map((n) => ({ kind: 'deep', value: DEEP, json: nestedJson(n) })),
    );
    const big = buildApi(
      { service: h.service, registry: h.registry, logger: testLogger, logs: h.storage.logs },
      { bodyLimitBytes: BIG_LIMIT },
    );
    let tried = 0;
    let fiveHundreds = 0;
    let logSize = (await h.storage.logs.read(victim.id))?.size ?? 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...fields), hostile, async (f, hv) => {
        tried += 1;
        const req = { body: f.body?.() ?? {}, query: new URLSearchParams() };
        const deep = 'json' in hv ? hv.json : undefined;
        f.set(req, deep !== undefined && f.method === 'GET' ? deep : hv.value);
        if (req.body.offset === 'appendAt') req.body.offset = logSize;
        const url = req.query.size > 0 ? `${f.url}?${req.query.toString()}` : f.url;
        let payload = f.method === 'POST' ? JSON.stringify(req.body) : undefined;
        if (payload !== undefined && deep !== undefined) {
          // In a string field the nesting replaces the whole string (a deep object where text goes).
          payload = payload.replace(new RegExp(`"[^"]*${DEEP}[^"]*"`), deep);
        }
        const r = await Promise.race([
          big.inject({
            method: f.method,
            url,
            headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
            payload,
          }),
          new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`hang over 5 s: ${f.name} ${hv.kind}`)), 5000)),
        ]);
        const what = `${f.name} (${hv.kind}) → ${r.statusCode} ${r.payload.slice(0, 300)}`;
        if (r.statusCode >= 500) fiveHundreds += 1;
        // Values this field legitimately takes: a URL cannot carry a lone surrogate (it arrives as
        // U+FFFD), nesting in a query string is just text, log text is bytes, some fields are unbounded.
        const urlSurrogate = f.method === 'GET' && hv.kind === 'unstorable' && !String(hv.value).includes('\u0000');
        const queryText = f.method === 'GET' && hv.kind === 'deep';
        const valid =
          (f.anyText && hv.kind === 'unstorable') || (f.unbounded && hv.kind === 'long') || urlSurrogate || queryText;
        if (r.statusCode < 300) {
          assert.ok(valid, `accepted: ${what}`);
          if (f.anyText) logSize = (r.json() as { size: number }).size;
          return;
        }
        check(r.statusCode, r.payload, what);
        const j = r.json() as { code: string; message: string };
        // A value this field takes: a refusal is about something else (e.g. the wrong lease key).
        if (valid && j.code !== 'INVALID_ARGUMENT') return;
        if (j.code === 'INVALID_ARGUMENT') {
          // The service's own checks name the field without the "body." of the edge.
          const named = j.message.startsWith(f.path) || j.message.startsWith(f.path.replace(/^body\./, ''));
          assert.ok(named, `names ${f.path}: ${what}`);
        } else {
          // Only a body over the size limit may be refused without naming a field.
          assert.equal(j.code, 'PAYLOAD_TOO_LARGE', what);
        }
      }),
      { numRuns: RUNS * 4 },
    );
    await big.close();
    console.log(`hostile-field fuzz: ${tried} inputs over ${fields.length} fields, ${fiveHundreds} answers 5xx`);
    const v = await h.storage.getBuild(victim.id);
    assert.equal(v?.status, 'STARTED');
    assert.equal(v?.version, victim.version, 'the victim build was not changed');
  });

  it('answers with a 400 naming the field where storage used to fail with a 500', async () => {
    const builder = { project: 'chromium', bucket: 'try', builder: 'linux-rel' };
    const deep = '{"d":'.repeat(5000) + '1' + '}'.repeat(5000);
    const cases: [string, 'GET' | 'POST', string, string | undefined][] = [
      [
        'body.properties',
        'POST',
        '/api/v1/builds',
        `{"builder":${JSON.stringify(builder)},"properties":{"p":${deep}}}`,
      ],
      ['body.requestId', 'POST', '/api/v1/builds', JSON.stringify({ builder, requestId: 'r\u0000' })],
      ['body.properties', 'POST', '/api/v1/builds', JSON.stringify({ builder, properties: { p: 'x\u0000y' } })],
      ['body.tags[0]', 'POST', '/api/v1/builds', JSON.stringify({ builder, tags: ['k:\u0000'] })],
      ['body.reason', 'POST', `/api/v1/builds/${victim.id}/cancel`, JSON.stringify({ reason: 'bye\u0000' })],
      [
        'body.summaryMarkdown',
        'POST',
        `/api/v1/builds/${victim.id}/succeed`,
        JSON.stringify({ leaseKey: victim.leaseKey, summaryMarkdown: 'ok\u0000' }),
      ],
      ['body.holder', 'POST', `/api/v1/builds/${victim.id}/lease`, JSON.stringify({ holder: 'h\u0000' })],
      ['query.cursor', 'GET', '/api/v1/builds?cursor=9999999999999999999', undefined],
      ['query.createdAfter', 'GET', '/api/v1/builds?createdAfter=0000-01-01T00:00:00Z', undefined],
      ['query.tag', 'GET', '/api/v1/builds?tag=a:%00', undefined],
      ['query.buildset', 'GET', '/api/v1/builds?buildset=%00', undefined],
      ['query.builder', 'GET', '/api/v1/builds?builder=%00', undefined],
      ['query.attempt', 'GET', `/api/v1/builds/${victim.id}/log?attempt=99999999999`, undefined],
    ];
    const big = buildApi(
      { service: h.service, registry: h.registry, logger: testLogger },
      { bodyLimitBytes: BIG_LIMIT },
    );
    try {
      for (const [field, method, url, payload] of cases) {
        const r = await big.inject({
          method,
          url,
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          payload,
        });
        assert.equal(r.statusCode, 400, `${method} ${url}: ${r.payload}`);
        assert.ok((r.json() as { message: string }).message.startsWith(field), `${field}: ${r.payload}`);
      }
    } finally {
      await big.close();
    }
    assert.equal((await h.storage.getBuild(victim.id))?.version, victim.version, 'the victim build was not changed');
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
