/**
 * The web UI's read endpoints and actions on a real dev server and real storage: happy paths (checked
 * against their zod response schemas and against figures computed here), bad input (400 naming the
 * field), permissions (only readable buckets; READER cannot rebuild), live updates over SSE, and the
 * UI's static serving next to the API.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { type FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/server.ts';
import { consoleResponse } from '../../src/api/routes/getConsole.ts';
import { builderStatsResponse } from '../../src/api/routes/getBuilderStats.ts';
import { listBuildersResponse } from '../../src/api/routes/listBuilders.ts';
import { pipelineResponse } from '../../src/api/routes/getPipeline.ts';
import { sessionResponse } from '../../src/api/routes/getSession.ts';
import { stuckResponse } from '../../src/api/routes/getStuck.ts';
import { recentVerificationsResponse, verificationResponse } from '../../src/api/routes/getVerification.ts';
import { type Build, type BuilderId, type BuildStatus } from '../../src/domain/build.ts';
import { newBuildId } from '../../src/domain/buildId.ts';
import { type StoredVerification } from '../../src/domain/verification.ts';
import { scheduledBuild } from '../support/builds.ts';
import { eventually, harness, type Harness, startDevEnv, testLogger } from '../support/temporal.ts';

const CONFIG = `
api: { port: 0 }
ui: { liveIntervalMs: 200 }
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
            dimensions: ["os:Linux"]
          - name: mac-rel
      - name: ci
        acls:
          - { role: WRITER, name: other, token: other-bucket-token-0123 }
        builders:
          - name: mac
gerrit:
  hosts: [{ host: review.example.org }]
  eventSecret: test-event-secret-0123456789
`;
const READER = 'reader-token-0123456789';
const SCHEDULER = 'scheduler-token-0123456789';
const OTHER = 'other-bucket-token-0123';
const linux: BuilderId = { project: 'chromium', bucket: 'try', builder: 'linux-rel' };
const mac: BuilderId = { project: 'chromium', bucket: 'try', builder: 'mac-rel' };
const ciMac: BuilderId = { project: 'chromium', bucket: 'ci', builder: 'mac' };

const HOUR = 3600_000;
let seq = 0;
/** A stored build created `agoMs` ago, queued `queueS` and run `runS` seconds when it has those times. */
function made(
  builder: BuilderId,
  agoMs: number,
  status: BuildStatus,
  o: Partial<Build> & { queueS?: number; runS?: number } = {},
): Build {
  const t = Date.now() - agoMs;
  const { queueS, runS, ...rest } = o;
  const start = queueS !== undefined ? t + queueS * 1000 : undefined;
  const end = start !== undefined && runS !== undefined ? start + runS * 1000 : undefined;
  return scheduledBuild(newBuildId(t, ++seq), builder, new Date(t).toISOString(), {
    number: seq,
    status,
    ...(start !== undefined ? { startTime: new Date(start).toISOString() } : {}),
    ...(end !== undefined ? { endTime: new Date(end).toISOString() } : {}),
    ...rest,
  });
}

/** Percentile as PostgreSQL's percentile_cont computes it (linear interpolation). */
function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const i = (s.length - 1) * p;
  const lo = Math.floor(i);
  const hi = Math.ceil(i);
  return s[lo]! + (s[hi]! - s[lo]!) * (i - lo);
}

describe('web UI endpoints', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  let app: FastifyInstance;
  const seeded: Record<string, Build> = {};

  before(async () => {
    env = await startDevEnv();
    h = await harness(env, CONFIG);
    app = buildApi({
      service: h.service,
      registry: h.registry,
      logger: testLogger,
      storage: h.storage,
      client: env.client,
    });
    // linux-rel: 6 ended over two days, 2 pending (different priorities), 1 running; mac-rel: one failure.
    const builds = {
      ok1: made(linux, 30 * HOUR, 'SUCCESS', { queueS: 10, runS: 100, tags: ['buildset:commit/a'] }),
      ok2: made(linux, 29 * HOUR, 'SUCCESS', { queueS: 20, runS: 200, tags: ['buildset:commit/b'] }),
      fail: made(linux, 5 * HOUR, 'FAILURE', { queueS: 30, runS: 300, tags: ['buildset:commit/c'] }),
      infra: made(linux, 4 * HOUR, 'INFRA_FAILURE', { queueS: 40, runS: 400 }),
      green: made(linux, 3 * HOUR, 'SUCCESS', { queueS: 50, runS: 500, tags: ['buildset:commit/d'] }),
      canceled: made(linux, 2.5 * HOUR, 'CANCELED'),
      running: made(linux, 2 * HOUR, 'STARTED', {
        queueS: 60,
        leaseHolder: 'bot-1',
        leaseExpiration: new Date().toISOString(),
      }),
      pendingOld: made(linux, 1 * HOUR, 'SCHEDULED', { priority: 30 }),
      pendingUrgent: made(linux, 0.5 * HOUR, 'SCHEDULED', { priority: 10 }),
      macFail: made(mac, 1 * HOUR, 'FAILURE', { queueS: 5, runS: 5, tags: ['buildset:commit/d'] }),
      ciBuild: made(ciMac, 1 * HOUR, 'SCHEDULED'),
      old: made(linux, 40 * 24 * HOUR, 'SUCCESS', { queueS: 1, runS: 1 }),
    };
    for (const [k, b] of Object.entries(builds)) {
      seeded[k] = b;
      await h.storage.recordBuild(b);
    }
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
      payload: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: r.statusCode, body: r.json() as Record<string, unknown> & { code?: string; message?: string } };
  };
  const refused = async (url: string, token: string | undefined, status: number, code: string, msg?: RegExp) => {
    const r = await call('GET', url, token);
    assert.equal(r.status, status, `${url}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.code, code, url);
    if (msg) assert.match(String(r.body.message), msg, url);
  };

  it('session: the buckets a token reads, with its role, and the links the UI builds', async () => {
    const r = await call('GET', '/api/v1/session', READER);
    assert.equal(r.status, 200);
    const s = sessionResponse.parse(r.body);
    assert.equal(s.authEnabled, true);
    assert.equal(s.name, 'viewer');
    assert.deepEqual(s.buckets, [{ bucket: 'chromium/try', role: 'READER', swarming: false }]);
    assert.equal(s.links.temporalUi, 'http://127.0.0.1:8233', "kiln dev's own dev server UI");
    assert.deepEqual(s.links.gerrit, { 'review.example.org': 'https://review.example.org' });
    const sched = sessionResponse.parse((await call('GET', '/api/v1/session', SCHEDULER)).body);
    assert.equal(sched.buckets[0]?.role, 'SCHEDULER');
    await refused('/api/v1/session', undefined, 401, 'UNAUTHENTICATED', /token is required/);
    await refused('/api/v1/session', 'a-wrong-token-0123456789', 401, 'UNAUTHENTICATED', /unknown token/);
  });

  it("builders: each builder's queue in runner order, counts, last build and last green build", async () => {
    const r = await call('GET', '/api/v1/builders', READER);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const { builders } = listBuildersResponse.parse(r.body);
    assert.deepEqual(
      builders.map((b) => b.builder.builder),
      ['linux-rel', 'mac-rel'],
      'only the readable bucket, in config order',
    );
    const l = builders[0]!;
    assert.equal(l.pending, 2);
    assert.equal(l.running, 1);
    assert.deepEqual(
      l.queue.map((b) => b.id),
      [seeded.pendingUrgent!.id, seeded.pendingOld!.id],
      'best priority first',
    );
    assert.equal(l.oldestPendingTime, seeded.pendingOld!.createTime);
    assert.equal(l.lastGreen?.id, seeded.green!.id);
    assert.equal(l.lastBuild?.id, seeded.pendingUrgent!.id);
    assert.equal((l.lastBuild as Record<string, unknown>).events, undefined, 'summaries leave events out');
    assert.equal(builders[1]?.lastGreen, undefined);
    const one = listBuildersResponse.parse(
      (await call('GET', '/api/v1/builders?bucket=chromium/ci&queue=1', OTHER)).body,
    );
    assert.deepEqual(
      one.builders.map((b) => [b.builder.builder, b.pending, b.queue.length]),
      [['mac', 1, 1]],
    );
    await refused('/api/v1/builders?bucket=chromium/ci', READER, 403, 'PERMISSION_DENIED', /chromium\/ci/);
    await refused('/api/v1/builders?bucket=chromium/nope', READER, 404, 'NOT_FOUND', /chromium\/nope/);
    await refused('/api/v1/builders?bucket=nope', READER, 400, 'INVALID_ARGUMENT', /query\.bucket/);
    await refused('/api/v1/builders?queue=-1', READER, 400, 'INVALID_ARGUMENT', /query\.queue/);
    await refused('/api/v1/builders?surprise=1', READER, 400, 'INVALID_ARGUMENT', /surprise/);
    await refused('/api/v1/builders', undefined, 401, 'UNAUTHENTICATED');
  });

  it('console: builders × their newest builds, and the buildsets across them', async () => {
    const r = await call('GET', '/api/v1/console?bucket=chromium/try&builds=3', READER);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const c = consoleResponse.parse(r.body);
    assert.deepEqual(
      c.rows[0]?.builds.map((b) => b.id),
      [seeded.pendingUrgent!.id, seeded.pendingOld!.id, seeded.running!.id],
    );
    assert.deepEqual(
      c.rows[1]?.builds.map((b) => b.id),
      [seeded.macFail!.id],
    );
    assert.deepEqual(c.buildsets, ['commit/d'], 'only buildsets of the builds shown');
    const all = consoleResponse.parse((await call('GET', '/api/v1/console', READER)).body);
    assert.deepEqual(all.buildsets, ['commit/d', 'commit/c', 'commit/b', 'commit/a'], 'newest first');
    await refused('/api/v1/console?builds=0', READER, 400, 'INVALID_ARGUMENT', /query\.builds/);
    await refused('/api/v1/console?bucket=chromium/ci', READER, 403, 'PERMISSION_DENIED');
  });

  it('statistics: counts and SQL percentiles per day and over the window, equal to the figures computed here', async () => {
    const r = await call('GET', '/api/v1/builders/chromium/try/linux-rel/stats?days=30', READER);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const s = builderStatsResponse.parse(r.body);
    const inWindow = Object.values(seeded).filter(
      (b) => b.builder.builder === 'linux-rel' && Date.parse(b.createTime) > Date.now() - 30 * 24 * HOUR,
    );
    assert.equal(s.window.total, inWindow.length);
    assert.deepEqual(
      [s.window.success, s.window.failure, s.window.infraFailure, s.window.canceled, s.window.open],
      [3, 1, 1, 1, 3],
    );
    const queues = inWindow.filter((b) => b.startTime).map((b) => Date.parse(b.startTime!) - Date.parse(b.createTime));
    const runs = inWindow.filter((b) => b.endTime).map((b) => Date.parse(b.endTime!) - Date.parse(b.startTime!));
    assert.equal(s.window.queueP50Ms, Math.round(percentile(queues, 0.5)));
    assert.equal(s.window.queueP95Ms, Math.round(percentile(queues, 0.95)));
    assert.equal(s.window.durationP50Ms, Math.round(percentile(runs, 0.5)));
    assert.equal(s.window.durationP95Ms, Math.round(percentile(runs, 0.95)));
    assert.equal(
      s.days.reduce((n, d) => n + d.total, 0),
      s.window.total,
      'the days add up to the window',
    );
    assert.ok(s.days.every((d) => /^\d{4}-\d\d-\d\d$/.test(d.day)));
    const narrow = builderStatsResponse.parse(
      (
        await call(
          'GET',
          `/api/v1/builders/chromium/try/linux-rel/stats?from=${new Date(Date.now() - 6 * HOUR).toISOString()}&to=${new Date(Date.now() - 3.5 * HOUR).toISOString()}`,
          READER,
        )
      ).body,
    );
    assert.deepEqual([narrow.window.total, narrow.window.failure, narrow.window.infraFailure], [2, 1, 1]);
    const empty = builderStatsResponse.parse(
      (await call('GET', '/api/v1/builders/chromium/try/mac-rel/stats?days=1', READER)).body,
    );
    assert.equal(empty.window.total, 1);
    await refused('/api/v1/builders/chromium/try/nope/stats', READER, 404, 'BUILDER_NOT_FOUND', /chromium\/try\/nope/);
    await refused('/api/v1/builders/chromium/ci/mac/stats', READER, 403, 'PERMISSION_DENIED');
    await refused(
      '/api/v1/builders/chromium/try/linux-rel/stats?days=0',
      READER,
      400,
      'INVALID_ARGUMENT',
      /query\.days/,
    );
    await refused(
      '/api/v1/builders/chromium/try/linux-rel/stats?from=yesterday',
      READER,
      400,
      'INVALID_ARGUMENT',
      /query\.from/,
    );
    await refused(
      '/api/v1/builders/chromium/try/linux-rel/stats?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z',
      READER,
      400,
      'INVALID_ARGUMENT',
      /query\.from: must be before to/,
    );
    await refused(
      '/api/v1/builders/chromium/try/linux-rel/stats?days=3&from=2026-01-01T00:00:00Z',
      READER,
      400,
      'INVALID_ARGUMENT',
      /query\.days/,
    );
  });

  const verification = (o: Partial<StoredVerification>): StoredVerification => ({
    id: `verify/review.example.org/77/2/run-${++seq}`,
    workflowId: 'verify/review.example.org/77/2',
    runId: `run-${seq}`,
    host: 'review.example.org',
    project: 'core',
    branch: 'master',
    change: 77,
    patchset: 2,
    phase: 'BUILDING',
    reason: 'approved by norbert',
    platforms: [
      {
        name: 'linux-rel',
        builder: linux,
        buildId: seeded.running!.id,
        number: seeded.running!.number,
        status: 'SCHEDULED',
      },
      {
        name: 'mac-rel',
        builder: mac,
        buildId: seeded.macFail!.id,
        number: seeded.macFail!.number,
        status: 'STARTED',
        holder: 'tb-mac',
      },
    ],
    merged: false,
    messages: ['linux-rel: taken by bot-1.'],
    createTime: new Date().toISOString(),
    updateTime: new Date().toISOString(),
    version: 3,
    ...o,
  });

  it("verification by change and patch set: attempts, platforms with their builds' current state, patch sets", async () => {
    await h.storage.recordVerification(
      verification({ patchset: 1, workflowId: 'verify/review.example.org/77/1', phase: 'ENDED', vote: -1 }),
    );
    const live = verification({});
    await h.storage.recordVerification(live);
    // One whose builds are in a bucket the reader cannot see.
    await h.storage.recordVerification(
      verification({
        change: 78,
        workflowId: 'verify/review.example.org/78/1',
        patchset: 1,
        platforms: [{ name: 'mac', builder: ciMac, buildId: seeded.ciBuild!.id, number: 1, status: 'SCHEDULED' }],
      }),
    );
    const r = await call('GET', '/api/v1/verifications/review.example.org/77/2', READER);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const v = verificationResponse.parse(r.body);
    assert.deepEqual(v.patchsets, [2, 1]);
    assert.equal(v.gerritUrl, 'https://review.example.org/c/core/+/77/2');
    assert.equal(v.attempts.length, 1);
    assert.deepEqual(
      v.attempts[0]?.builds.map((b) => [b.id, b.status, b.leaseHolder]),
      [
        [seeded.running!.id, 'STARTED', 'bot-1'],
        [seeded.macFail!.id, 'FAILURE', undefined],
      ],
      "the builds' own current state, newer than the verification's copy",
    );
    await refused('/api/v1/verifications/review.example.org/77/9', READER, 404, 'NOT_FOUND', /change 77 patch set 9/);
    await refused('/api/v1/verifications/review.example.org/78/1', READER, 403, 'PERMISSION_DENIED');
    await refused('/api/v1/verifications/review.example.org/x/1', READER, 400, 'INVALID_ARGUMENT', /params\.change/);
    const recent = recentVerificationsResponse.parse(
      (await call('GET', '/api/v1/verifications/recent?active=true', READER)).body,
    );
    assert.deepEqual(
      recent.verifications.map((x) => [x.change, x.patchset]),
      [[77, 2]],
      'active and readable only',
    );
    await refused('/api/v1/verifications/recent?active=yes', READER, 400, 'INVALID_ARGUMENT', /query\.active/);

    const p = pipelineResponse.parse((await call('GET', '/api/v1/pipeline', READER)).body);
    assert.deepEqual(
      p.builds.map((b) => b.id),
      [seeded.pendingUrgent!.id, seeded.running!.id, seeded.pendingOld!.id],
      'pending and running, best priority first, then oldest',
    );
    assert.equal(p.truncated, false);
    assert.deepEqual(
      p.builders.map((b) => [b.builder.builder, b.pending, b.running]),
      [
        ['linux-rel', 2, 1],
        ['mac-rel', 0, 0],
      ],
    );
    assert.deepEqual(
      p.verifications.map((x) => [x.verification.change, x.builds.length]),
      [[77, 2]],
    );
    const cut = pipelineResponse.parse((await call('GET', '/api/v1/pipeline?limit=1', READER)).body);
    assert.deepEqual([cut.builds.length, cut.truncated], [1, true]);
    await refused('/api/v1/pipeline?limit=x', READER, 400, 'INVALID_ARGUMENT', /query\.limit/);
  });

  it('stuck: the categories kiln stuck computes, only for readable buckets', async () => {
    const r = await call('GET', '/api/v1/stuck?scheduledFor=0', READER);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const s = stuckResponse.parse(r.body);
    assert.deepEqual(
      s.categories.map((c) => c.category),
      ['scheduled-too-long', 'lease-expiring', 'heartbeat-old'],
    );
    assert.match(s.categories[0]!.filter, /KilnStatus = 'SCHEDULED'/);
    await refused('/api/v1/stuck?scheduledFor=-5', READER, 400, 'INVALID_ARGUMENT', /query\.scheduledFor/);
    await refused('/api/v1/stuck', undefined, 401, 'UNAUTHENTICATED');
  });

  it('rebuild: a new build of the same builder with the same inputs; READER may not', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const first = await h.service.schedule({
        builder: linux,
        properties: { revision: 'abc123', nested: { x: 1 } },
        tags: ['buildset:commit/abc123', 'user:alice'],
        priority: 42,
        dimensions: ['pool:big'],
      });
      const r = await call('POST', `/api/v1/builds/${first.id}/rebuild`, SCHEDULER, {});
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const again = r.body as unknown as Build;
      assert.notEqual(again.id, first.id);
      assert.deepEqual(again.builder, linux);
      assert.deepEqual(again.input.properties, first.input.properties);
      assert.deepEqual(again.tags.sort(), [...first.tags, `rebuild_of:${first.id}`].sort());
      assert.equal(again.priority, 42);
      assert.deepEqual(again.dimensions, first.dimensions);
      assert.equal(again.createdBy, 'cq');
      const denied = await call('POST', `/api/v1/builds/${first.id}/rebuild`, READER, {});
      assert.deepEqual([denied.status, denied.body.code], [403, 'PERMISSION_DENIED']);
      const bad = await call('POST', `/api/v1/builds/${first.id}/rebuild`, SCHEDULER, { builder: 'x' });
      assert.deepEqual([bad.status, bad.body.code], [400, 'INVALID_ARGUMENT']);
      assert.match(String(bad.body.message), /builder/);
      const missing = await call('POST', '/api/v1/builds/12345/rebuild', SCHEDULER, {});
      assert.equal(missing.body.code, 'BUILD_NOT_FOUND');
    });
  });

  it('live updates: changed builds of readable buckets arrive over SSE, others never', async () => {
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    const open = async (token: string) => {
      const abort = new AbortController();
      const res = await fetch(`${url}/api/v1/live`, {
        headers: { authorization: `Bearer ${token}` },
        signal: abort.signal,
      });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
      let text = '';
      const reader = res.body!.getReader();
      void (async () => {
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) return;
            text += new TextDecoder().decode(value);
          }
        } catch {
          /* aborted */
        }
      })();
      return { text: () => text, close: () => abort.abort() };
    };
    const reader = await open(READER);
    const other = await open(OTHER);
    await eventually(async () => reader.text().includes('event: hello'), 10_000, 'hello');
    await new Promise((r) => setTimeout(r, 500)); // the feed has taken its starting cursor
    const changed = { ...seeded.pendingOld!, status: 'STARTED' as const, version: 2, leaseHolder: 'bot-9' };
    await h.storage.recordBuild(changed);
    const ciChanged = { ...seeded.ciBuild!, version: 2, priority: 1 };
    await h.storage.recordBuild(ciChanged);
    const frames = (t: string) =>
      t
        .split('\n\n')
        .filter((f) => f.startsWith('event: changes'))
        .map((f) => JSON.parse(f.slice(f.indexOf('data: ') + 6)) as { builds: Build[] });
    const got = await eventually(
      async () =>
        frames(reader.text())
          .flatMap((f) => f.builds)
          .find((b) => b.id === changed.id),
      10_000,
      'the change on the reader page',
    );
    assert.deepEqual([got.status, got.leaseHolder], ['STARTED', 'bot-9']);
    await eventually(
      async () =>
        frames(other.text())
          .flatMap((f) => f.builds)
          .some((b) => b.id === ciChanged.id),
      10_000,
      'the ci change on the other page',
    );
    assert.ok(
      !frames(reader.text())
        .flatMap((f) => f.builds)
        .some((b) => b.id === ciChanged.id),
      'no unreadable build',
    );
    assert.ok(
      !frames(other.text())
        .flatMap((f) => f.builds)
        .some((b) => b.id === changed.id),
      'no unreadable build',
    );
    // A second write of the same version is not sent again.
    const count = frames(reader.text())
      .flatMap((f) => f.builds)
      .filter((b) => b.id === changed.id).length;
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(
      frames(reader.text())
        .flatMap((f) => f.builds)
        .filter((b) => b.id === changed.id).length,
      count,
    );
    reader.close();
    other.close();
    const noToken = await fetch(`${url}/api/v1/live`);
    assert.equal(noToken.status, 401);
  });

  it('serves the UI under / next to the API; unknown API paths stay JSON', async () => {
    const page = await app.inject({ method: 'GET', url: '/builds/123?status=SUCCESS' });
    assert.match(String(page.headers['content-type']), /text\/html/);
    assert.match(String(page.headers['content-security-policy']), /default-src 'self'/);
    assert.ok([200, 503].includes(page.statusCode));
    if (page.statusCode === 200) assert.match(page.body, /<div id="root">/);
    else assert.match(page.body, /npm run build:ui/);
    const api = await app.inject({ method: 'GET', url: '/api/v1/nothing' });
    assert.deepEqual([api.statusCode, api.json().code], [404, 'NOT_FOUND']);
  });
});
