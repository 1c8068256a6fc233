/**
 * Schedule inputs beyond properties, over the HTTP API on a real dev server: Buildbot-buildbucket's `changes`
 * (seed 000), Buildbucket v2's `gerritChanges` and `gitilesCommit` — stored, tagged, searchable, shown by
 * `kiln get`, and `blamelist` derived from the change authors; a malformed entry is refused naming its index
 * and field, and starts no workflow.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { type FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/server.ts';
import { buildDetails } from '../../src/cli/format.ts';
import { type Build } from '../../src/domain/build.ts';
import { harness, type Harness, startDevEnv, testLogger } from '../support/temporal.ts';

const builder = { project: 'chromium', bucket: 'try', builder: 'linux-rel' };
const SHA = '0123456789abcdef0123456789abcdef01234567';

/** Seed 000's change dict, every key. */
const change = {
  id: 'c-1',
  revision: SHA,
  author: { email: 'alice@example.org', name: 'Alice' },
  create_ts: 1_472_083_514_000_000,
  files: [{ path: 'src/main.cc' }, { path: 'README.md' }],
  message: 'Fix the build',
  branch: 'main',
  url: 'https://review.example.org/c/1',
  project: 'chromium/src',
};

describe('schedule inputs: changes, gerritChanges, gitilesCommit', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  let app: FastifyInstance;

  before(async () => {
    env = await startDevEnv();
    h = await harness(env);
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
    return { status: r.statusCode, body: r.json() as Build & { builds?: Build[]; code?: string; message?: string } };
  };
  const workflowCount = async () => (await env.client.workflow.count(`TaskQueue = '${h.taskQueue}'`)).count;

  it('stores them, tags a buildset for each, derives blamelist, finds the build by Gerrit change, shows them', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const r = await call('POST', '/api/v1/builds', {
        builder,
        changes: [change, { author: { email: 'bob@example.org' } }, { author: { email: 'alice@example.org' } }],
        gerritChanges: [{ host: 'review.example.org', project: 'chromium/src', change: 1234, patchset: 5 }],
        gitilesCommit: { host: 'git.example.org', project: 'chromium/src', ref: 'refs/heads/main', id: SHA },
        tags: ['team:infra'],
      });
      assert.equal(r.status, 200, r.body.message);
      const got = await call('GET', `/api/v1/builds/${r.body.id}`);
      assert.equal(got.status, 200);
      const b = got.body;
      assert.deepEqual(b.input.changes?.[0], change);
      assert.equal(b.input.changes?.length, 3);
      assert.deepEqual(b.input.gerritChanges, [
        { host: 'review.example.org', project: 'chromium/src', change: 1234, patchset: 5 },
      ]);
      assert.deepEqual(b.input.gitilesCommit, {
        host: 'git.example.org',
        project: 'chromium/src',
        ref: 'refs/heads/main',
        id: SHA,
      });
      assert.deepEqual(b.input.properties['blamelist'], ['alice@example.org', 'bob@example.org']);
      for (const t of [
        'team:infra',
        'buildset:patch/gerrit/review.example.org/1234/5',
        `buildset:commit/gitiles/git.example.org/chromium/src/+/${SHA}`,
        'builder:linux-rel',
      ]) {
        assert.ok(b.tags.includes(t), `tag ${t} in ${b.tags.join(', ')}`);
      }
      const found = await call('GET', '/api/v1/builds?gerritChange=review.example.org/1234/5');
      assert.deepEqual(
        found.body.builds?.map((x) => x.id),
        [b.id],
      );
      const other = await call('GET', '/api/v1/builds?gerritChange=review.example.org/1234/6');
      assert.deepEqual(other.body.builds, []);
      // A blamelist the request names is kept.
      const own = await call('POST', '/api/v1/builds', {
        builder,
        changes: [change],
        properties: { blamelist: ['someone@example.org'] },
      });
      assert.deepEqual(own.body.input.properties['blamelist'], ['someone@example.org']);
      // `kiln get` shows them.
      const text = buildDetails(b);
      assert.match(text, /^gerrit: {3}review\.example\.org\/1234\/5 \(chromium\/src\)$/m);
      assert.match(
        text,
        new RegExp(`^change: {3}c-1 ${SHA} chromium/src https://review.example.org/c/1 by alice@example.org$`, 'm'),
      );
      assert.match(text, /^change: {3}\(no id\) by bob@example\.org$/m);
      assert.match(text, new RegExp(`^commit: {3}git.example.org/chromium/src refs/heads/main ${SHA}$`, 'm'));
    });
  });

  it('refuses a malformed entry naming its index and field, and starts no workflow', async () => {
    const before = await workflowCount();
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ changes: [change, { author: { email: 42 } }] }, /^body\.changes\[1\]\.author\.email: /],
      [{ changes: [{ ...change, surprise: 1 }] }, /^body\.changes\[0\]: Unrecognized key: "surprise"/],
      [{ changes: [change, change, { files: [{ path: '' }] }] }, /^body\.changes\[2\]\.files\[0\]\.path: /],
      [{ changes: [{ create_ts: -1 }] }, /^body\.changes\[0\]\.create_ts: /],
      [{ changes: [{ id: 'nul\u0000' }] }, /^body\.changes\[0\]\.id: contains a NUL character/],
      [
        { gerritChanges: [{ host: 'review.example.org', project: 'p', change: 1, patchset: 0 }] },
        /^body\.gerritChanges\[0\]\.patchset: /,
      ],
      [
        { gerritChanges: [{ host: 'https://review.example.org', project: 'p', change: 1, patchset: 1 }] },
        /^body\.gerritChanges\[0\]\.host: a host name without scheme or path/,
      ],
      [
        { gitilesCommit: { host: 'git.example.org', project: 'p', ref: 'refs/heads/main', id: 'abc' } },
        /^body\.gitilesCommit\.id: a full commit SHA/,
      ],
      [
        { gitilesCommit: { host: 'git.example.org', project: 'p', ref: 'main', id: SHA } },
        /^body\.gitilesCommit\.ref: a full ref/,
      ],
    ];
    for (const [extra, msg] of cases) {
      const r = await call('POST', '/api/v1/builds', { builder, ...extra });
      assert.equal(r.status, 400, JSON.stringify(extra));
      assert.equal(r.body.code, 'INVALID_ARGUMENT');
      assert.match(String(r.body.message), msg);
    }
    const q = await call('GET', '/api/v1/builds?gerritChange=review.example.org/x/1');
    assert.deepEqual([q.status, q.body.code], [400, 'INVALID_ARGUMENT']);
    assert.match(String(q.body.message), /^query\.gerritChange\[0\]: host\/change\/patchset/);
    assert.equal(await workflowCount(), before, 'no workflow started by a refused request');
  });
});
