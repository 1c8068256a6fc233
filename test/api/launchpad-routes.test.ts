/**
 * The schedules and promotions routes over HTTP on a real dev server: happy path, bad input,
 * permissions (READER sees, SCHEDULER operates, a token of another bucket sees nothing).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { type FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/server.ts';
import { promotionsResponse } from '../../src/api/routes/promotions.ts';
import { scheduleActionResponse, schedulesResponse } from '../../src/api/routes/schedules.ts';
import { Registry } from '../../src/config/load.ts';
import { GitFixture } from '../support/git.ts';
import { launchpadHarness, type LaunchpadHarness } from '../support/launchpad.ts';
import { startDevEnv, testLogger } from '../support/temporal.ts';

const READER = 'reader-token-0123456789';
const SCHEDULER = 'scheduler-token-0123456789';
const OTHER = 'other-bucket-token-0123456789';

describe('schedules and promotions routes', () => {
  let env: TestWorkflowEnvironment;
  let h: LaunchpadHarness;
  let app: FastifyInstance;
  let fx: GitFixture;
  before(async () => {
    env = await startDevEnv();
    fx = new GitFixture('lp');
    fx.commit('master', 'init');
    fx.branch('stable', 'master');
    h = await launchpadHarness(
      env,
      `
projects:
  - name: launchpad
    buckets:
      - name: ci
        acls:
          - { role: READER, token: ${READER} }
          - { role: SCHEDULER, token: ${SCHEDULER} }
        builders: [{ name: lp-devel }]
  - name: other
    buckets:
      - name: ci
        acls: [{ role: WRITER, token: ${OTHER} }]
repositories: [{ name: launchpad, url: "${fx.url}", bucket: launchpad/ci }]
schedulers:
  - { name: nightly, kind: periodic, cron: "0 3 * * *", builders: [launchpad/ci/lp-devel] }
merges:
  - { name: stable-to-master, repo: launchpad, from: stable, to: master, every: 6h }
`,
    );
    await h.reconcile();
    app = buildApi({ service: h.service, registry: new Registry(h.config), logger: testLogger, launchpad: h.api });
  });
  after(async () => {
    await app?.close();
    await h?.close();
    await env?.teardown();
    fx?.cleanup();
  });

  const call = (method: 'GET' | 'POST', url: string, token?: string, body?: unknown) =>
    app.inject({
      method,
      url,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      ...(body ? { payload: JSON.stringify(body) } : {}),
    });

  it('lists schedules to readers of their buckets only', async () => {
    const r = await call('GET', '/api/v1/schedules', READER);
    assert.equal(r.statusCode, 200);
    const names = schedulesResponse.parse(r.json()).schedules;
    assert.deepEqual(
      names.map((s) => s.name),
      ['nightly', 'stable-to-master'],
    );
    assert.ok(names[0]?.nextRunTime);
    const other = await call('GET', '/api/v1/schedules', OTHER);
    assert.deepEqual(schedulesResponse.parse(other.json()).schedules, []);
    assert.equal((await call('GET', '/api/v1/schedules')).statusCode, 401);
  });

  it('pauses with SCHEDULER, refuses READER and other buckets, names bad input', async () => {
    assert.equal((await call('POST', '/api/v1/schedules/nightly/pause', READER, {})).statusCode, 403);
    assert.equal((await call('POST', '/api/v1/schedules/nightly/pause', OTHER, {})).statusCode, 403);
    const ok = await call('POST', '/api/v1/schedules/nightly/pause', SCHEDULER, { note: 'freeze' });
    assert.equal(ok.statusCode, 200, ok.body);
    assert.deepEqual(scheduleActionResponse.parse(ok.json()), { ok: true, name: 'nightly', action: 'pause' });
    const listed = schedulesResponse.parse((await call('GET', '/api/v1/schedules', READER)).json());
    assert.deepEqual(
      listed.schedules.find((s) => s.name === 'nightly'),
      { ...listed.schedules.find((s) => s.name === 'nightly'), paused: true, note: 'freeze' },
    );
    const bad = await call('POST', '/api/v1/schedules/nightly/explode', SCHEDULER, {});
    assert.equal(bad.statusCode, 400);
    assert.match((bad.json() as { message: string }).message, /^params\.action: /);
    const none = await call('POST', '/api/v1/schedules/nope/trigger', SCHEDULER, {});
    assert.equal(none.statusCode, 404);
    assert.equal((none.json() as { code: string }).code, 'NOT_FOUND');
    const note = await call('POST', '/api/v1/schedules/nightly/unpause', SCHEDULER, { note: 'x'.repeat(501) });
    assert.equal(note.statusCode, 400);
    assert.match((note.json() as { message: string }).message, /^body\.note: /);
  });

  it('lists promotion attempts and refuses a bad build id', async () => {
    const r = await call('GET', '/api/v1/promotions?repo=launchpad', READER);
    assert.equal(r.statusCode, 200);
    assert.deepEqual(promotionsResponse.parse(r.json()), { promotions: [] });
    const bad = await call('GET', '/api/v1/promotions?build=abc', READER);
    assert.equal(bad.statusCode, 400);
    assert.match((bad.json() as { message: string }).message, /^query\.build: a build id/);
  });
});
