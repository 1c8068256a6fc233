/**
 * The runner's routes (peek, lease, start, heartbeat, batch heartbeat, log upload and read, succeed,
 * fail) and the tinderbox's (get-task, report), each with its happy path (the answer parsed by the
 * route's own response schema), its bad input (4xx naming the field) and its permissions: a bearer
 * role for peek and lease, the lease key as the capability for everything after. They share the one dev
 * server and API of routes.test.ts (see world.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { completeBuildResponse } from '../../../src/api/routes/completeBuild.ts';
import { getBuildResponse } from '../../../src/api/routes/getBuild.ts';
import { heartbeatBatchResponse } from '../../../src/api/routes/heartbeatBatch.ts';
import { heartbeatResponse } from '../../../src/api/routes/heartbeatBuild.ts';
import { leaseBuildResponse } from '../../../src/api/routes/leaseBuild.ts';
import { peekBuildsResponse } from '../../../src/api/routes/peekBuilds.ts';
import { startBuildResponse } from '../../../src/api/routes/startBuild.ts';
import { type GetTaskResponse, getTaskResponse } from '../../../src/api/routes/tinderboxGetTask.ts';
import { tinderboxReportResponse } from '../../../src/api/routes/tinderboxReport.ts';
import { uploadLogResponse } from '../../../src/api/routes/uploadLog.ts';
import { answer, OTHER, READER, refused, type RouteWorld, SCHEDULER, tinderboxLinux, WRITER } from './world.ts';

/** A lease key no build handed out (the right shape, a generation no build had). */
const FORGED = '99.forged-key';

/** Declares the tests, on the file's one world (see routes.test.ts). */
export function leaseRouteTests(w: RouteWorld): void {
  const post = (path: string, body: unknown, token?: string) => w.call('POST', path, { body, token });

  describe('POST /api/v1/peek', () => {
    it('lists pending builds a runner can take, filtered by dimensions', async () => {
      const b = await w.schedule({ tags: [`buildset:peek/${Date.now()}`] });
      const found = async (dimensions: string[]) => {
        for (let i = 0; i < 100; i++) {
          const r = answer(
            peekBuildsResponse,
            await post('/api/v1/peek', { buckets: ['chromium/try'], dimensions, maxBuilds: 100 }, WRITER),
          );
          if (r.builds.some((x) => x.id === b.id)) return true;
          if (dimensions.length && !dimensions.includes('os:Linux')) return false;
          await new Promise((res) => setTimeout(res, 100));
        }
        return false;
      };
      assert.ok(await found(['os:Linux']), 'a runner with the dimension sees the build');
      assert.equal(await found(['os:Mac']), false, 'a runner without it does not');
    });

    it('refuses bad input naming the field', async () => {
      const cases: [unknown, RegExp][] = [
        [{}, /body\.buckets/],
        [{ buckets: [] }, /body\.buckets/],
        [{ buckets: ['no-slash'] }, /body\.buckets\[0\]/],
        [{ buckets: ['chromium/try'], maxBuilds: 0 }, /body\.maxBuilds/],
        [{ buckets: ['chromium/try'], dimensions: ['nokey'] }, /body\.dimensions\[0\]/],
      ];
      for (const [body, field] of cases)
        refused(await post('/api/v1/peek', body, WRITER), 400, 'INVALID_ARGUMENT', field);
    });

    it('needs WRITER on every bucket asked for', async () => {
      refused(await post('/api/v1/peek', { buckets: ['chromium/try'] }), 401, 'UNAUTHENTICATED');
      for (const token of [READER, SCHEDULER, OTHER])
        refused(await post('/api/v1/peek', { buckets: ['chromium/try'] }, token), 403, 'PERMISSION_DENIED');
      refused(
        await post('/api/v1/peek', { buckets: ['chromium/try', 'chromium/ci'] }, WRITER),
        403,
        'PERMISSION_DENIED',
      );
    });
  });

  describe('POST /api/v1/builds/:id/lease', () => {
    it('grants a lease once; a retry with the same requestId gets the same grant', async () => {
      const b = await w.schedule();
      const body = { holder: 'bot-7', leaseDurationSecs: 120, requestId: 'lease-1' };
      const g = answer(leaseBuildResponse, await post(`/api/v1/builds/${b.id}/lease`, body, WRITER));
      assert.deepEqual([g.build.id, g.build.leaseHolder], [b.id, 'bot-7']);
      assert.ok(Date.parse(g.leaseExpiration) > Date.now() + 60_000);
      const retry = answer(leaseBuildResponse, await post(`/api/v1/builds/${b.id}/lease`, body, WRITER));
      assert.equal(retry.leaseKey, g.leaseKey);
      refused(await post(`/api/v1/builds/${b.id}/lease`, { holder: 'bot-8' }, WRITER), 409, 'BUILD_IS_LEASED');
    });

    it('refuses bad input naming the field', async () => {
      const b = await w.schedule();
      for (const [body, field] of [
        [{ leaseDurationSecs: 0 }, /body\.leaseDurationSecs/],
        [{ leaseDurationSecs: 8 * 24 * 3600 }, /body\.leaseDurationSecs/],
        [{ holder: '' }, /body\.holder/],
        [{ extra: 1 }, /extra/],
      ] as const) {
        refused(await post(`/api/v1/builds/${b.id}/lease`, body, WRITER), 400, 'INVALID_ARGUMENT', field);
      }
      refused(await post('/api/v1/builds/0/lease', {}, WRITER), 400, 'INVALID_ARGUMENT', /params\.id/);
    });

    it('needs WRITER; a token without a role sees an unknown build', async () => {
      const b = await w.schedule();
      refused(await post(`/api/v1/builds/${b.id}/lease`, {}), 401, 'UNAUTHENTICATED');
      for (const token of [READER, SCHEDULER])
        refused(await post(`/api/v1/builds/${b.id}/lease`, {}, token), 403, 'PERMISSION_DENIED', /WRITER/);
      refused(await post(`/api/v1/builds/${b.id}/lease`, {}, OTHER), 404, 'BUILD_NOT_FOUND');
    });
  });

  describe('POST /api/v1/builds/:id/start', () => {
    it('starts a leased build with the lease key alone', async () => {
      const g = await w.leased();
      const s = answer(
        startBuildResponse,
        await post(`/api/v1/builds/${g.build.id}/start`, { leaseKey: g.leaseKey, url: 'https://ci.example.org/1' }),
      );
      assert.deepEqual([s.status, s.url], ['STARTED', 'https://ci.example.org/1']);
    });

    it('refuses bad input naming the field', async () => {
      const g = await w.leased();
      refused(await post(`/api/v1/builds/${g.build.id}/start`, {}), 400, 'INVALID_ARGUMENT', /body\.leaseKey/);
      refused(
        await post(`/api/v1/builds/${g.build.id}/start`, { leaseKey: g.leaseKey, url: 'not a url' }),
        400,
        'INVALID_ARGUMENT',
        /body\.url/,
      );
    });

    it('refuses a key the build never handed out, and a bearer token is no substitute', async () => {
      const g = await w.leased();
      refused(await post(`/api/v1/builds/${g.build.id}/start`, { leaseKey: FORGED }, WRITER), 409, 'LEASE_EXPIRED');
      const still = answer(getBuildResponse, await w.call('GET', `/api/v1/builds/${g.build.id}`, { token: READER }));
      assert.equal(still.status, 'SCHEDULED');
    });
  });

  describe('POST /api/v1/builds/:id/heartbeat', () => {
    it('extends the lease', async () => {
      const g = await w.leased();
      const r = answer(
        heartbeatResponse,
        await post(`/api/v1/builds/${g.build.id}/heartbeat`, { leaseKey: g.leaseKey, leaseDurationSecs: 600 }),
      );
      assert.ok(Date.parse(r.leaseExpiration) > Date.now() + 500_000);
    });

    it('refuses bad input naming the field', async () => {
      const g = await w.leased();
      refused(
        await post(`/api/v1/builds/${g.build.id}/heartbeat`, { leaseKey: g.leaseKey, leaseDurationSecs: -5 }),
        400,
        'INVALID_ARGUMENT',
        /body\.leaseDurationSecs/,
      );
    });

    it('refuses a key that is not the current lease', async () => {
      const g = await w.leased();
      refused(await post(`/api/v1/builds/${g.build.id}/heartbeat`, { leaseKey: FORGED }), 409, 'LEASE_EXPIRED');
    });
  });

  describe('POST /api/v1/heartbeat (batch)', () => {
    it('answers each heartbeat on its own', async () => {
      const g = await w.leased();
      const r = answer(
        heartbeatBatchResponse,
        await post('/api/v1/heartbeat', {
          heartbeats: [
            { buildId: g.build.id, leaseKey: g.leaseKey },
            { buildId: g.build.id, leaseKey: FORGED },
          ],
        }),
      );
      assert.ok(r.results[0]?.leaseExpiration);
      assert.equal(r.results[1]?.error?.code, 'LEASE_EXPIRED');
    });

    it('refuses bad input naming the field', async () => {
      refused(await post('/api/v1/heartbeat', { heartbeats: [] }), 400, 'INVALID_ARGUMENT', /body\.heartbeats/);
      refused(
        await post('/api/v1/heartbeat', { heartbeats: [{ buildId: 'x', leaseKey: 'k' }] }),
        400,
        'INVALID_ARGUMENT',
        /body\.heartbeats\[0\]\.buildId/,
      );
    });

    it('a key is good only for its own build', async () => {
      const a = await w.leased();
      const b = await w.leased();
      const r = answer(
        heartbeatBatchResponse,
        await post('/api/v1/heartbeat', { heartbeats: [{ buildId: b.build.id, leaseKey: a.leaseKey }] }),
      );
      assert.equal(r.results[0]?.error?.code, 'LEASE_EXPIRED');
    });
  });

  describe('POST and GET /api/v1/builds/:id/log', () => {
    it('appends chunks at their offsets and reads them back with the log state', async () => {
      const g = await w.leased();
      const id = g.build.id;
      const one = answer(
        uploadLogResponse,
        await post(`/api/v1/builds/${id}/log`, { leaseKey: g.leaseKey, offset: 0, data: 'héllo ' }),
      );
      assert.deepEqual([one.size, one.complete], [7, false]);
      const retried = answer(
        uploadLogResponse,
        await post(`/api/v1/builds/${id}/log`, { leaseKey: g.leaseKey, offset: 0, data: 'héllo ' }),
      );
      assert.equal(retried.size, 7, 'a retried chunk changes nothing');
      const done = answer(
        uploadLogResponse,
        await post(`/api/v1/builds/${id}/log`, { leaseKey: g.leaseKey, offset: 7, data: 'world\n', complete: true }),
      );
      assert.deepEqual([done.size, done.complete], [13, true]);
      const read = await w.call('GET', `/api/v1/builds/${id}/log`, { token: READER });
      assert.equal(read.status, 200);
      assert.equal(read.text, 'héllo world\n');
      assert.deepEqual(
        [read.headers['x-kiln-log-size'], read.headers['x-kiln-log-complete'], read.headers['x-kiln-log-attempt']],
        ['13', 'true', String(done.attempt)],
      );
      const tail = await w.call('GET', `/api/v1/builds/${id}/log?offset=7`, { token: READER });
      assert.equal(tail.text, 'world\n');
    });

    it('refuses bad input naming the field', async () => {
      const g = await w.leased();
      const id = g.build.id;
      refused(
        await post(`/api/v1/builds/${id}/log`, { leaseKey: g.leaseKey, offset: -1, data: 'x' }),
        400,
        'INVALID_ARGUMENT',
        /body\.offset/,
      );
      refused(
        await post(`/api/v1/builds/${id}/log`, { leaseKey: g.leaseKey, offset: 0 }),
        400,
        'INVALID_ARGUMENT',
        /body\.data/,
      );
      await post(`/api/v1/builds/${id}/log`, { leaseKey: g.leaseKey, offset: 0, data: 'abc' });
      refused(
        await post(`/api/v1/builds/${id}/log`, { leaseKey: g.leaseKey, offset: 0, data: 'xyz' }),
        409,
        'CONFLICT',
      );
      refused(
        await w.call('GET', `/api/v1/builds/${id}/log?offset=-1`, { token: READER }),
        400,
        'INVALID_ARGUMENT',
        /query\.offset/,
      );
      refused(
        await w.call('GET', `/api/v1/builds/${id}/log?attempt=7`, { token: READER }),
        404,
        'NOT_FOUND',
        /attempt 7/,
      );
    });

    it('writing needs the lease key; reading needs READER', async () => {
      const g = await w.leased();
      const id = g.build.id;
      refused(
        await post(`/api/v1/builds/${id}/log`, { leaseKey: FORGED, offset: 0, data: 'x' }, WRITER),
        409,
        'LEASE_EXPIRED',
      );
      refused(await w.call('GET', `/api/v1/builds/${id}/log`, {}), 401, 'UNAUTHENTICATED');
      refused(await w.call('GET', `/api/v1/builds/${id}/log`, { token: OTHER }), 404, 'BUILD_NOT_FOUND');
    });
  });

  describe('POST /api/v1/builds/:id/succeed and /fail', () => {
    it('ends the build with its output; a retried report gets the same answer', async () => {
      const g = await w.leased();
      const body = { leaseKey: g.leaseKey, output: { properties: { binary_size: 42 } }, summaryMarkdown: 'all green' };
      const ok = answer(completeBuildResponse, await post(`/api/v1/builds/${g.build.id}/succeed`, body));
      assert.deepEqual([ok.status, ok.output?.properties?.binary_size], ['SUCCESS', 42]);
      const retry = answer(completeBuildResponse, await post(`/api/v1/builds/${g.build.id}/succeed`, body));
      assert.equal(retry.status, 'SUCCESS');
      const f = await w.leased();
      const failed = answer(
        completeBuildResponse,
        await post(`/api/v1/builds/${f.build.id}/fail`, { leaseKey: f.leaseKey, failureReason: 'INFRA_FAILURE' }),
      );
      assert.equal(failed.status, 'INFRA_FAILURE');
    });

    it('refuses bad input naming the field', async () => {
      const g = await w.leased();
      refused(
        await post(`/api/v1/builds/${g.build.id}/succeed`, { leaseKey: g.leaseKey, output: { props: {} } }),
        400,
        'INVALID_ARGUMENT',
        /props/,
      );
      refused(
        await post(`/api/v1/builds/${g.build.id}/fail`, { leaseKey: g.leaseKey, failureReason: 'OOPS' }),
        400,
        'INVALID_ARGUMENT',
        /body\.failureReason/,
      );
      const still = answer(getBuildResponse, await w.call('GET', `/api/v1/builds/${g.build.id}`, { token: READER }));
      assert.equal(still.status, 'SCHEDULED');
    });

    it('refuses a report from a key that is not the lease, and notes nothing changed', async () => {
      const g = await w.leased();
      for (const kind of ['succeed', 'fail'])
        refused(await post(`/api/v1/builds/${g.build.id}/${kind}`, { leaseKey: FORGED }, WRITER), 409, 'LEASE_EXPIRED');
      const still = answer(getBuildResponse, await w.call('GET', `/api/v1/builds/${g.build.id}`, { token: READER }));
      assert.equal(still.status, 'SCHEDULED');
    });
  });

  describe('POST /api/v1/tinderbox/get-task and /report', () => {
    it('hands a tinderbox a started build, and its report ends it with the log', async () => {
      const b = await w.schedule({ builder: tinderboxLinux, tags: ['buildset:patch/gerrit/review.example.org/77/1'] });
      const body = { platform: 'tinderbox-linux', tinderboxId: 'tb-1' };
      let task: GetTaskResponse['task'] = null;
      for (let i = 0; i < 100 && !task; i++) {
        task = answer(getTaskResponse, await post('/api/v1/tinderbox/get-task', body, WRITER)).task;
        // Storage shows a new build to peeks a moment after it was scheduled.
        if (!task) await new Promise((res) => setTimeout(res, 100));
      }
      assert.ok(task && task.buildId === b.id, 'our build was handed out');
      assert.equal(task.buildset, 'patch/gerrit/review.example.org/77/1');
      const started = answer(getBuildResponse, await w.call('GET', `/api/v1/builds/${b.id}`, { token: READER }));
      assert.deepEqual([started.status, started.leaseHolder], ['STARTED', 'tb-1']);
      const ended = answer(
        tinderboxReportResponse,
        await post('/api/v1/tinderbox/report', {
          buildId: b.id,
          leaseKey: task.leaseKey,
          outcome: 'SUCCESS',
          log: 'ok\n',
        }),
      );
      assert.equal(ended.status, 'SUCCESS');
      assert.equal((await w.call('GET', `/api/v1/builds/${b.id}/log`, { token: READER })).text, 'ok\n');
      const none = answer(
        getTaskResponse,
        await post('/api/v1/tinderbox/get-task', { platform: 'no-such-platform', tinderboxId: 'tb-1' }, WRITER),
      );
      assert.equal(none.task, null);
    });

    it('refuses bad input naming the field', async () => {
      refused(
        await post('/api/v1/tinderbox/get-task', { platform: 'bad name!', tinderboxId: 'tb' }, WRITER),
        400,
        'INVALID_ARGUMENT',
        /body\.platform/,
      );
      refused(
        await post(
          '/api/v1/tinderbox/get-task',
          { platform: 'linux-rel', tinderboxId: 'tb', capabilities: [''] },
          WRITER,
        ),
        400,
        'INVALID_ARGUMENT',
        /body\.capabilities\[0\]/,
      );
      const g = await w.leased();
      refused(
        await post('/api/v1/tinderbox/report', { buildId: g.build.id, leaseKey: g.leaseKey, outcome: 'MAYBE' }),
        400,
        'INVALID_ARGUMENT',
        /body\.outcome/,
      );
    });

    it('get-task needs WRITER on some bucket; a report needs the lease key', async () => {
      const body = { platform: 'linux-rel', tinderboxId: 'tb' };
      refused(await post('/api/v1/tinderbox/get-task', body), 401, 'UNAUTHENTICATED');
      refused(await post('/api/v1/tinderbox/get-task', body, 'not-a-real-token-at-all'), 401, 'UNAUTHENTICATED');
      for (const token of [READER, SCHEDULER])
        refused(await post('/api/v1/tinderbox/get-task', body, token), 403, 'PERMISSION_DENIED', /WRITER/);
      const g = await w.leased();
      refused(
        await post('/api/v1/tinderbox/report', { buildId: g.build.id, leaseKey: FORGED, outcome: 'SUCCESS' }, WRITER),
        409,
        'LEASE_EXPIRED',
      );
    });
  });
}
