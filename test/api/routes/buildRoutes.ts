/**
 * The build routes (schedule, get, get by number, search, cancel, priority, builder, verifications)
 * and the event edges (Gerrit events, Swarming notifications), each with its happy path (the answer
 * parsed by the route's own response schema), its bad input (4xx, a code, the field named, no
 * workflow started) and its permissions. They share the one dev server and API of
 * routes.test.ts (see world.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildApi, listenApi } from '../../../src/api/server.ts';
import { cancelBuildResponse } from '../../../src/api/routes/cancelBuild.ts';
import { gerritEventsResponse, GERRIT_SECRET_HEADER } from '../../../src/api/routes/gerritEvents.ts';
import { getBuildResponse } from '../../../src/api/routes/getBuild.ts';
import { getBuildByNumberResponse } from '../../../src/api/routes/getBuildByNumber.ts';
import { getBuilderResponse } from '../../../src/api/routes/getBuilder.ts';
import { type ScheduleBuildRequest } from '../../../src/api/routes/scheduleBuild.ts';
import { searchBuildsResponse } from '../../../src/api/routes/searchBuilds.ts';
import { searchVerificationsResponse } from '../../../src/api/routes/searchVerifications.ts';
import { setPriorityResponse } from '../../../src/api/routes/setPriority.ts';
import { type SwarmingNotifyRequest } from '../../../src/api/routes/swarmingNotify.ts';
import { type ApiContext } from '../../../src/api/context.ts';
import { KilnError } from '../../../src/domain/errors.ts';
import { GerritError } from '../../../src/gerrit/client.ts';
import { parseConfig, Registry } from '../../../src/config/load.ts';
import { testLogger } from '../../support/temporal.ts';
import {
  answer,
  GERRIT_SECRET,
  linux,
  NOTIFY_TOKEN,
  OTHER,
  READER,
  refused,
  type RouteWorld,
  SCHEDULER,
  WRITER,
} from './world.ts';

const NO_TOKENS = [undefined, 'not-a-real-token-at-all'];
const UNKNOWN_ID = '12345';

/** Declares the tests, on the file's one world (see routes.test.ts). */
export function buildRouteTests(w: RouteWorld): void {
  describe('POST /api/v1/builds', () => {
    it('schedules a build, and the same requestId returns the same build', async () => {
      const b = await w.schedule({ tags: ['buildset:commit/1'], requestId: 'r1', properties: { x: 1 } });
      assert.deepEqual([b.status, b.createdBy, b.builder, b.input.properties.x], ['SCHEDULED', 'cq', linux, 1]);
      assert.ok(b.tags.includes('buildset:commit/1'));
      const again = await w.schedule({ tags: ['buildset:commit/1'], requestId: 'r1', properties: { x: 1 } });
      assert.equal(again.id, b.id);
    });

    it('refuses bad input naming the field, and starts no workflow', async () => {
      const before = await w.workflowCount();
      const cases: [unknown, number, string, RegExp][] = [
        [{ builder: { ...linux, builder: 'nope' } }, 404, 'BUILDER_NOT_FOUND', /chromium\/try\/nope/],
        [{ builder: linux, properties: { buildbucket: { x: 1 } } }, 400, 'INVALID_ARGUMENT', /properties\.buildbucket/],
        [{ builder: linux, tags: ['no-colon'] }, 400, 'INVALID_ARGUMENT', /body\.tags\[0\]/],
        [{ builder: linux, priority: 300 }, 400, 'INVALID_ARGUMENT', /body\.priority/],
        [{ builder: linux, surprise: true }, 400, 'INVALID_ARGUMENT', /surprise/],
        [{ builder: { ...linux, project: 'bad name' } }, 400, 'INVALID_ARGUMENT', /body\.builder\.project/],
        [{}, 400, 'INVALID_ARGUMENT', /body\.builder/],
        ['{"builder": ', 400, 'INVALID_ARGUMENT', /JSON/],
      ];
      for (const [body, status, code, msg] of cases) {
        refused(await w.call('POST', '/api/v1/builds', { token: SCHEDULER, body }), status, code, msg);
      }
      const big = { builder: linux, properties: { blob: 'x'.repeat(100 * 1024) } } satisfies ScheduleBuildRequest;
      refused(await w.call('POST', '/api/v1/builds', { token: SCHEDULER, body: big }), 413, 'PAYLOAD_TOO_LARGE');
      const text = await w.call('POST', '/api/v1/builds', {
        token: SCHEDULER,
        body: 'hi',
        headers: { 'content-type': 'text/plain' },
      });
      refused(text, 415, 'UNSUPPORTED_MEDIA_TYPE');
      assert.equal(await w.workflowCount(), before, 'no workflow started by a refused request');
    });

    it('needs a known token with SCHEDULER on the bucket', async () => {
      const before = await w.workflowCount();
      for (const token of NO_TOKENS) {
        refused(await w.call('POST', '/api/v1/builds', { token, body: { builder: linux } }), 401, 'UNAUTHENTICATED');
      }
      const basic = await w.call('POST', '/api/v1/builds', {
        body: { builder: linux },
        headers: { authorization: 'Basic abc' },
      });
      refused(basic, 401, 'UNAUTHENTICATED', /Bearer/);
      for (const token of [READER, OTHER]) {
        refused(
          await w.call('POST', '/api/v1/builds', { token, body: { builder: linux } }),
          403,
          'PERMISSION_DENIED',
          /SCHEDULER role on bucket chromium\/try/,
        );
      }
      assert.equal(await w.workflowCount(), before);
    });
  });

  describe('GET /api/v1/builds/:id', () => {
    it('answers the build to a READER', async () => {
      const b = await w.schedule();
      const got = answer(getBuildResponse, await w.call('GET', `/api/v1/builds/${b.id}`, { token: READER }));
      assert.deepEqual([got.id, got.number, got.status], [b.id, b.number, 'SCHEDULED']);
    });

    it('refuses an id that is not a build ID', async () => {
      refused(await w.call('GET', '/api/v1/builds/abc', { token: READER }), 400, 'INVALID_ARGUMENT', /params\.id/);
      refused(await w.call('GET', `/api/v1/builds/${UNKNOWN_ID}`, { token: READER }), 404, 'BUILD_NOT_FOUND');
    });

    it('tells a caller without a role nothing about which ids exist', async () => {
      const b = await w.schedule();
      for (const token of NO_TOKENS) {
        const existing = await w.call('GET', `/api/v1/builds/${b.id}`, { token });
        const missing = await w.call('GET', `/api/v1/builds/${UNKNOWN_ID}`, { token });
        refused(existing, 401, 'UNAUTHENTICATED');
        assert.deepEqual(existing.body, missing.body);
      }
      const existing = await w.call('GET', `/api/v1/builds/${b.id}`, { token: OTHER });
      const missing = await w.call('GET', `/api/v1/builds/${UNKNOWN_ID}`, { token: OTHER });
      refused(existing, 404, 'BUILD_NOT_FOUND');
      refused(missing, 404, 'BUILD_NOT_FOUND');
    });
  });

  describe('GET /api/v1/builders/:project/:bucket/:builder/builds/:number', () => {
    const url = (n: number | string) => `/api/v1/builders/chromium/try/linux-rel/builds/${n}`;

    it('answers a build by its builder and number', async () => {
      const b = await w.schedule();
      const got = answer(getBuildByNumberResponse, await w.call('GET', url(b.number), { token: READER }));
      assert.equal(got.id, b.id);
    });

    it('refuses a number that is not a positive int32', async () => {
      for (const n of [0, -1, 'x', 2 ** 31]) {
        refused(await w.call('GET', url(n), { token: READER }), 400, 'INVALID_ARGUMENT', /params\.number/);
      }
      refused(await w.call('GET', url(999_999), { token: READER }), 404, 'BUILD_NOT_FOUND');
    });

    it('answers a bucket the token cannot read like an unknown build', async () => {
      const b = await w.schedule();
      refused(await w.call('GET', url(b.number), {}), 401, 'UNAUTHENTICATED');
      const hidden = await w.call('GET', url(b.number), { token: OTHER });
      const missing = await w.call('GET', url(999_999), { token: OTHER });
      refused(hidden, 404, 'BUILD_NOT_FOUND');
      assert.equal(
        String(hidden.body.message).replace(String(b.number), 'N'),
        String(missing.body.message).replace('999999', 'N'),
      );
    });
  });

  describe('GET /api/v1/builds (search)', () => {
    it('finds builds by buildset and status, newest first, paged', async () => {
      const bs = `commit/search-${Date.now()}`;
      const first = await w.schedule({ tags: [`buildset:${bs}`] });
      const second = await w.schedule({ tags: [`buildset:${bs}`] });
      const page = answer(
        searchBuildsResponse,
        await w.call('GET', `/api/v1/builds?buildset=${bs}&status=SCHEDULED&limit=1`, { token: READER }),
      );
      assert.deepEqual(
        page.builds.map((b) => b.id),
        [second.id],
      );
      assert.ok(page.nextCursor);
      const next = answer(
        searchBuildsResponse,
        await w.call('GET', `/api/v1/builds?buildset=${bs}&limit=1&cursor=${page.nextCursor}`, { token: READER }),
      );
      assert.deepEqual(
        next.builds.map((b) => b.id),
        [first.id],
      );
    });

    it('refuses bad filters naming the parameter', async () => {
      const cases: [string, RegExp][] = [
        ['status=DONE', /query\.status/],
        ['cursor=abc', /query\.cursor/],
        ['limit=0', /query\.limit/],
        ['createdAfter=yesterday', /query\.createdAfter/],
        ['tag=no-colon', /query\.tag\[0\]/],
        ['surprise=1', /surprise/],
      ];
      for (const [q, field] of cases) {
        refused(await w.call('GET', `/api/v1/builds?${q}`, { token: READER }), 400, 'INVALID_ARGUMENT', field);
      }
    });

    it('searches only buckets the token reads', async () => {
      const bs = `commit/hidden-${Date.now()}`;
      await w.schedule({ tags: [`buildset:${bs}`] });
      refused(await w.call('GET', '/api/v1/builds', {}), 401, 'UNAUTHENTICATED');
      const other = answer(
        searchBuildsResponse,
        await w.call('GET', `/api/v1/builds?buildset=${bs}`, { token: OTHER }),
      );
      assert.deepEqual(other.builds, []);
      refused(
        await w.call('GET', '/api/v1/builds?project=chromium&bucket=try', { token: OTHER }),
        403,
        'PERMISSION_DENIED',
      );
    });
  });

  describe('POST /api/v1/builds/:id/cancel', () => {
    it('cancels a pending build, naming who did it; an ended build is left as it is', async () => {
      const b = await w.schedule();
      const c = answer(
        cancelBuildResponse,
        await w.call('POST', `/api/v1/builds/${b.id}/cancel`, { token: SCHEDULER, body: { reason: 'not needed' } }),
      );
      assert.deepEqual([c.status, c.canceledBy], ['CANCELED', 'cq']);
      const again = answer(
        cancelBuildResponse,
        await w.call('POST', `/api/v1/builds/${b.id}/cancel`, { token: SCHEDULER, body: {} }),
      );
      assert.equal(again.status, 'CANCELED');
    });

    it('refuses a bad body naming the field', async () => {
      const b = await w.schedule();
      const long = { reason: 'x'.repeat(5000) };
      refused(
        await w.call('POST', `/api/v1/builds/${b.id}/cancel`, { token: SCHEDULER, body: long }),
        400,
        'INVALID_ARGUMENT',
        /body\.reason/,
      );
      refused(
        await w.call('POST', `/api/v1/builds/${b.id}/cancel`, { token: SCHEDULER, body: { why: 1 } }),
        400,
        'INVALID_ARGUMENT',
        /why/,
      );
    });

    it('needs SCHEDULER; a token without a role sees an unknown build', async () => {
      const b = await w.schedule();
      refused(await w.call('POST', `/api/v1/builds/${b.id}/cancel`, { body: {} }), 401, 'UNAUTHENTICATED');
      refused(
        await w.call('POST', `/api/v1/builds/${b.id}/cancel`, { token: READER, body: {} }),
        403,
        'PERMISSION_DENIED',
      );
      refused(
        await w.call('POST', `/api/v1/builds/${b.id}/cancel`, { token: OTHER, body: {} }),
        404,
        'BUILD_NOT_FOUND',
      );
      const still = answer(getBuildResponse, await w.call('GET', `/api/v1/builds/${b.id}`, { token: READER }));
      assert.equal(still.status, 'SCHEDULED');
    });
  });

  describe('POST /api/v1/builds/:id/priority', () => {
    it('changes a pending build’s priority', async () => {
      const b = await w.schedule({ priority: 30 });
      const p = answer(
        setPriorityResponse,
        await w.call('POST', `/api/v1/builds/${b.id}/priority`, { token: WRITER, body: { priority: 10 } }),
      );
      assert.equal(p.priority, 10);
    });

    it('refuses a priority outside 0–255', async () => {
      const b = await w.schedule();
      for (const priority of [-1, 256, 1.5, 'high']) {
        refused(
          await w.call('POST', `/api/v1/builds/${b.id}/priority`, { token: WRITER, body: { priority } }),
          400,
          'INVALID_ARGUMENT',
          /body\.priority/,
        );
      }
    });

    it('needs WRITER', async () => {
      const b = await w.schedule();
      for (const token of [READER, SCHEDULER]) {
        refused(
          await w.call('POST', `/api/v1/builds/${b.id}/priority`, { token, body: { priority: 1 } }),
          403,
          'PERMISSION_DENIED',
          /WRITER/,
        );
      }
      refused(
        await w.call('POST', `/api/v1/builds/${b.id}/priority`, { token: OTHER, body: { priority: 1 } }),
        404,
        'BUILD_NOT_FOUND',
      );
    });
  });

  describe('GET /api/v1/builders/:project/:bucket/:builder', () => {
    it('answers the builder as runners need it', async () => {
      const r = answer(
        getBuilderResponse,
        await w.call('GET', '/api/v1/builders/chromium/try/linux-rel', { token: READER }),
      );
      assert.deepEqual(r.command, ['make', 'check']);
      assert.deepEqual(r.checkout, { repo: 'https://example.org/src.git', ref: 'main' });
      assert.deepEqual(r.dimensions, ['os:Linux']);
    });

    it('refuses a bad or unknown builder name', async () => {
      refused(
        await w.call('GET', '/api/v1/builders/chromium/try/bad%20name!', { token: READER }),
        400,
        'INVALID_ARGUMENT',
        /params\.builder/,
      );
      refused(
        await w.call('GET', '/api/v1/builders/chromium/try/nope', { token: READER }),
        404,
        'BUILDER_NOT_FOUND',
        /chromium\/try\/nope/,
      );
    });

    it('needs READER on the bucket', async () => {
      refused(await w.call('GET', '/api/v1/builders/chromium/try/linux-rel', {}), 401, 'UNAUTHENTICATED');
      refused(
        await w.call('GET', '/api/v1/builders/chromium/try/linux-rel', { token: OTHER }),
        403,
        'PERMISSION_DENIED',
      );
    });
  });

  describe('GET /api/v1/verifications', () => {
    it("lists a change's verifications (none yet)", async () => {
      const r = answer(
        searchVerificationsResponse,
        await w.call('GET', '/api/v1/verifications?change=1', { token: READER }),
      );
      assert.deepEqual(r.verifications, []);
    });

    it('refuses a missing or bad change number', async () => {
      refused(
        await w.call('GET', '/api/v1/verifications', { token: READER }),
        400,
        'INVALID_ARGUMENT',
        /query\.change/,
      );
      refused(
        await w.call('GET', '/api/v1/verifications?change=1&patchset=0', { token: READER }),
        400,
        'INVALID_ARGUMENT',
        /query\.patchset/,
      );
    });

    it('needs a known token', async () => {
      for (const token of NO_TOKENS) {
        refused(await w.call('GET', '/api/v1/verifications?change=1', { token }), 401, 'UNAUTHENTICATED');
      }
    });
  });

  describe('POST /api/v1/gerrit/events', () => {
    const secret = { [GERRIT_SECRET_HEADER]: GERRIT_SECRET };
    const event = {
      type: 'patchset-created',
      change: {
        project: 'not-kiln',
        branch: 'main',
        id: 'I0123',
        number: 7,
        subject: 's',
        owner: { name: 'o' },
        url: 'https://review.example.org/7',
        status: 'NEW',
      },
      patchSet: { number: 1, revision: 'a'.repeat(40), ref: 'refs/changes/07/7/1', uploader: { name: 'o' } },
      uploader: { name: 'o' },
      eventCreatedOn: 1,
    };

    it('accepts an event, answering what Kiln does about it (ignore: no project config)', async () => {
      const r = answer(
        gerritEventsResponse,
        await w.call('POST', '/api/v1/gerrit/events', { body: event, headers: secret }),
        202,
      );
      assert.deepEqual(r.actions, [
        { action: 'ignore', reason: 'project not-kiln on review.example.org is not configured for verification' },
      ]);
    });

    it('refuses a malformed event naming the field', async () => {
      const bad = { ...event, change: { ...event.change, number: 'seven' } };
      refused(
        await w.call('POST', '/api/v1/gerrit/events', { body: bad, headers: secret }),
        400,
        'INVALID_ARGUMENT',
        /change\.number/,
      );
      refused(
        await w.call('POST', '/api/v1/gerrit/events?host=', { body: event, headers: secret }),
        400,
        'INVALID_ARGUMENT',
        /query\.host/,
      );
    });

    it('needs the shared secret, not a bearer token', async () => {
      refused(await w.call('POST', '/api/v1/gerrit/events', { body: event, token: WRITER }), 401, 'UNAUTHENTICATED');
      refused(
        await w.call('POST', '/api/v1/gerrit/events', { body: event, headers: { [GERRIT_SECRET_HEADER]: 'wrong' } }),
        401,
        'UNAUTHENTICATED',
        /x-kiln-gerrit-secret/,
      );
    });
  });

  describe('POST /api/v1/swarming/notify', () => {
    const push = (data: unknown, token: string | null = NOTIFY_TOKEN): SwarmingNotifyRequest => ({
      message: {
        data: Buffer.from(JSON.stringify(data)).toString('base64'),
        ...(token ? { attributes: { auth_token: token } } : {}),
        messageId: 'm1',
      },
    });
    const userdata = (buildId: string) => JSON.stringify({ build_id: buildId, created_ts: 1, swarming_hostname: 'x' });

    it('acks a notification for a build (the build then polls its task)', async () => {
      const b = await w.schedule();
      const r = await w.call('POST', '/api/v1/swarming/notify', {
        body: push({ task_id: 't1', userdata: userdata(b.id) }),
      });
      assert.equal(r.status, 204, r.text);
    });

    it('refuses a malformed push naming the field, and an unknown build', async () => {
      refused(await w.call('POST', '/api/v1/swarming/notify', { body: {} }), 400, 'INVALID_ARGUMENT', /message/);
      refused(
        await w.call('POST', '/api/v1/swarming/notify', { body: push({ userdata: userdata('1') }) }),
        400,
        'INVALID_ARGUMENT',
        /message\.data\.task_id/,
      );
      refused(
        await w.call('POST', '/api/v1/swarming/notify', {
          body: push({ task_id: 't', userdata: userdata(UNKNOWN_ID) }),
        }),
        404,
        'BUILD_NOT_FOUND',
      );
    });

    it('needs the notify token Kiln gave the task', async () => {
      const b = await w.schedule();
      const data = { task_id: 't1', userdata: userdata(b.id) };
      refused(await w.call('POST', '/api/v1/swarming/notify', { body: push(data, null) }), 401, 'UNAUTHENTICATED');
      refused(
        await w.call('POST', '/api/v1/swarming/notify', { body: push(data, 'wrong-token-0123456789') }),
        403,
        'PERMISSION_DENIED',
      );
      const byQuery = await w.call('POST', `/api/v1/swarming/notify?token=${NOTIFY_TOKEN}`, {
        body: push(data, null),
      });
      assert.equal(byQuery.status, 204, byQuery.text);
    });
  });

  it('answers 5xx without what failed underneath (a bug, a Gerrit outage)', async () => {
    const secret = 'password=hunter2 /srv/kiln/db';
    const ctx = {
      service: {
        get: () => Promise.reject(new KilnError('INTERNAL', secret)),
        search: () => Promise.reject(new Error(secret)),
      },
      registry: w.h.registry,
      logger: testLogger,
      gerrit: {
        o: { settings: { eventSecret: GERRIT_SECRET } },
        handle: () => Promise.reject(new GerritError('UNAVAILABLE', secret, 502, true, 'GET', '/changes/7')),
      },
    } as unknown as ApiContext;
    const app = buildApi(ctx, { ui: false });
    try {
      const answers = [
        await app.inject({
          method: 'GET',
          url: `/api/v1/builds/${UNKNOWN_ID}`,
          headers: { authorization: `Bearer ${READER}` },
        }),
        await app.inject({ method: 'GET', url: '/api/v1/builds', headers: { authorization: `Bearer ${READER}` } }),
        await app.inject({
          method: 'POST',
          url: '/api/v1/gerrit/events',
          headers: { [GERRIT_SECRET_HEADER]: GERRIT_SECRET, 'content-type': 'application/json' },
          payload: JSON.stringify({ type: 'x' }),
        }),
      ];
      assert.deepEqual(
        answers.map((a) => [a.statusCode, a.json().code]),
        [
          [500, 'INTERNAL'],
          [500, 'INTERNAL'],
          [503, 'UNAVAILABLE'],
        ],
      );
      for (const a of answers) assert.ok(!a.body.includes('hunter2'), a.body);
    } finally {
      await app.close();
    }
  });

  it('refuses to listen beyond loopback when no token is configured', async () => {
    const registry = new Registry(
      parseConfig('projects: [{name: p, buckets: [{name: b, builders: [{name: x}]}]}]', 'open.yaml', {
        LOG_LEVEL: 'silent',
      }),
    );
    assert.ok(registry.authDisabled);
    const ctx = { service: w.h.service, registry, logger: testLogger };
    const app = buildApi(ctx, { ui: false });
    try {
      await assert.rejects(listenApi(app, ctx, '0.0.0.0', 0), /refusing to listen on 0\.0\.0\.0/);
      assert.match(await listenApi(app, ctx, '127.0.0.1', 0), /^http:\/\/127\.0\.0\.1:\d+$/);
    } finally {
      await app.close();
    }
  });
}
