/**
 * LUCI builder names ("Infra Win Tester", "linux (dbg)") work everywhere a builder is named: config,
 * schedule, peek, search, the builder route and Temporal visibility; bad names are refused at every edge.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { type FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/server.ts';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { harness, type Harness, startDevEnv, testLogger } from '../support/temporal.ts';

const CONFIG = `
projects:
  - name: infra
    buckets:
      - name: try
        builders:
          - name: Infra Win Tester
          - name: linux (dbg)
`;
const builder = { project: 'infra', bucket: 'try', builder: 'Infra Win Tester' };

describe('LUCI builder names', () => {
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

  const call = async (method: 'GET' | 'POST', url: string, body?: unknown) => {
    const r = await app.inject({
      method,
      url,
      headers: body !== undefined ? { 'content-type': 'application/json' } : {},
      payload: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: r.statusCode, body: r.json() as Record<string, unknown> };
  };

  it('schedules, peeks, searches, leases and finds "Infra Win Tester" in Temporal visibility', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const s = await call('POST', '/api/v1/builds', { builder });
      assert.equal(s.status, 200, JSON.stringify(s.body));
      const id = s.body.id as string;
      assert.ok((s.body.tags as string[]).includes('builder:Infra Win Tester'));

      const peek = await call('POST', '/api/v1/peek', { buckets: ['infra/try'], builders: ['Infra Win Tester'] });
      assert.equal(peek.status, 200, JSON.stringify(peek.body));
      assert.deepEqual(
        (peek.body.builds as { id: string }[]).map((b) => b.id),
        [id],
      );
      const other = await call('POST', '/api/v1/peek', { buckets: ['infra/try'], builders: ['linux (dbg)'] });
      assert.deepEqual(other.body.builds, []);

      const found = await call('GET', `/api/v1/builds?builder=${encodeURIComponent('Infra Win Tester')}`);
      assert.equal(found.status, 200, JSON.stringify(found.body));
      assert.deepEqual(
        (found.body.builds as { id: string }[]).map((b) => b.id),
        [id],
      );
      const route = await call('GET', `/api/v1/builders/infra/try/${encodeURIComponent('Infra Win Tester')}`);
      assert.equal(route.status, 200, JSON.stringify(route.body));
      assert.deepEqual(route.body.builder, builder);

      const lease = await call('POST', `/api/v1/builds/${id}/lease`, { holder: 'bot' });
      assert.equal(lease.status, 200, JSON.stringify(lease.body));

      const visible = await env.client.workflow.count(
        `KilnBuilder = 'Infra Win Tester' AND KilnBuildId = '${id}' AND TaskQueue = '${h.taskQueue}'`,
      );
      assert.equal(visible.count, 1);
      const summary = await (await env.client.workflow.getHandle(`build/${id}`).describe()).staticSummary();
      assert.match(summary ?? '', /^infra\/try\/Infra Win Tester #1/);
    });
  });

  it('gets a build by builder and number, and searches by who scheduled it', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const first = await call('POST', '/api/v1/builds', { builder: { ...builder, builder: 'linux (dbg)' } });
      const second = await call('POST', '/api/v1/builds', { builder: { ...builder, builder: 'linux (dbg)' } });
      assert.deepEqual([first.body.number, second.body.number], [1, 2]);
      const path = `/api/v1/builders/infra/try/${encodeURIComponent('linux (dbg)')}/builds`;
      const got = await call('GET', `${path}/2`);
      assert.equal(got.status, 200, JSON.stringify(got.body));
      assert.equal(got.body.id, second.body.id);
      const missing = await call('GET', `${path}/99`);
      assert.deepEqual([missing.status, missing.body.code], [404, 'BUILD_NOT_FOUND']);
      assert.match(String(missing.body.message), /infra\/try\/linux \(dbg\) #99/);
      const bad = await call('GET', `${path}/0`);
      assert.deepEqual([bad.status, bad.body.code], [400, 'INVALID_ARGUMENT']);
      assert.match(String(bad.body.message), /params\.number/);

      const mine = await call('GET', '/api/v1/builds?createdBy=anonymous&limit=1000');
      assert.ok((mine.body.builds as { id: string }[]).some((b) => b.id === second.body.id));
      const nobody = await call('GET', '/api/v1/builds?createdBy=someone-else');
      assert.deepEqual(nobody.body.builds, []);
    });
  });

  it('refuses names LUCI does not allow, in the API and in the config', async () => {
    for (const name of ['a/b', 'tab\tname', 'x'.repeat(129), '', 'ünïcode']) {
      const r = await call('POST', '/api/v1/builds', { builder: { ...builder, builder: name } });
      assert.equal(r.status, 400, name);
      assert.match(String(r.body.message), /body\.builder\.builder: letters, digits, spaces/);
    }
    const bad = await call('GET', `/api/v1/builds?builder=${encodeURIComponent('a/b')}`);
    assert.deepEqual([bad.status, bad.body.code], [400, 'INVALID_ARGUMENT']);
    assert.throws(
      () =>
        parseConfig('projects: [{name: p, buckets: [{name: b, builders: [{name: "x/y"}]}]}]', 'k.yaml', {
          LOG_LEVEL: 'silent',
        }),
      (e: unknown) =>
        e instanceof ConfigError && /k\.yaml: projects\[0\]\.buckets\[0\]\.builders\[0\]\.name/.test(e.message),
    );
  });
});
