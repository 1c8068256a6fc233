/**
 * Steps and output properties (Buildbucket v2 `steps[]`, `output.properties`) on a real dev server: the lease holder
 * reports them mid-build with its lease key (`POST /api/v1/builds/:id/update`, each replaced as a whole), GET and
 * `kiln get` show them, oversized or malformed ones are refused naming the field with nothing half-stored, and
 * `kiln runner` sends what the build command writes to `$KILN_STEPS_FILE` / `$KILN_OUTPUT_PROPERTIES_FILE` while it
 * runs and when it exits (and hands the command its whole input in `$KILN_INPUT_FILE`).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { type FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/server.ts';
import { buildDetails } from '../../src/cli/format.ts';
import { type Build } from '../../src/domain/build.ts';
import { Runner } from '../../src/runner/runner.ts';
import { eventually, harness, type Harness, startDevEnv, testLogger } from '../support/temporal.ts';

const CONFIG = `
projects:
  - name: chromium
    buckets:
      - name: try
        builders:
          - name: linux-rel
          - name: steps
            dimensions: ["pool:steps"]
            command:
              - sh
              - -c
              - |
                printf '[{"name":"compile","status":"SUCCESS"},{"name":"test","status":"STARTED"}]' > "$KILN_STEPS_FILE"
                sleep 4
                printf '[{"name":"compile","status":"SUCCESS"},{"name":"test","status":"SUCCESS","summaryMarkdown":"42 passed"}]' > "$KILN_STEPS_FILE"
                { printf '{"got_revision":"abc123","input":'; cat "$KILN_INPUT_FILE"; printf '}'; } > "$KILN_OUTPUT_PROPERTIES_FILE"
`;

const builder = { project: 'chromium', bucket: 'try', builder: 'linux-rel' };
type Answer = Build & { code?: string; message?: string };

describe('build steps and output properties', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  let app: FastifyInstance;
  let url: string;

  before(async () => {
    env = await startDevEnv();
    h = await harness(env, CONFIG);
    app = buildApi({ service: h.service, registry: h.registry, logger: testLogger, logs: h.storage.logs });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const addr = app.server.address();
    assert.ok(addr && typeof addr === 'object');
    url = `http://127.0.0.1:${addr.port}`;
  });
  after(async () => {
    await app?.close();
    await h?.storage.close();
    await env?.teardown();
  });

  const call = async (method: 'GET' | 'POST', path: string, body?: unknown) => {
    const r = await app.inject({
      method,
      url: path,
      headers: body !== undefined ? { 'content-type': 'application/json' } : {},
      payload: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: r.statusCode, body: r.json() as Answer };
  };
  const update = (id: string, body: unknown) => call('POST', `/api/v1/builds/${id}/update`, body);

  it('the lease holder reports steps and output mid-build; each replaces the stored one; refusals store nothing', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder });
      const { leaseKey } = await h.service.lease(b.id, { holder: 'runner-1' });
      await h.service.start(b.id, { leaseKey });

      const steps = [
        { name: 'compile', status: 'SUCCESS', startTime: '2026-12-01T10:00:00Z', endTime: '2026-12-01T10:05:00Z' },
        { name: 'test', status: 'STARTED', startTime: '2026-12-01T10:05:00Z' },
        {
          name: 'test|unit',
          status: 'STARTED',
          summaryMarkdown: '3 of 10',
          logs: [{ name: 'stdout', url: 'https://logs.example.org/1' }],
        },
      ];
      const r = await update(b.id, { leaseKey, steps, output: { properties: { got_revision: 'abc' } } });
      assert.equal(r.status, 200, r.body.message);
      assert.deepEqual(r.body.steps, steps);
      const got = (await call('GET', `/api/v1/builds/${b.id}`)).body;
      assert.deepEqual(got.steps, steps);
      assert.deepEqual(got.output?.properties, { got_revision: 'abc' });
      assert.equal(got.status, 'STARTED');

      // Steps replaced as a whole; output left alone when not given.
      const r2 = await update(b.id, { leaseKey, steps: [{ name: 'compile', status: 'SUCCESS' }] });
      assert.deepEqual(r2.body.steps, [{ name: 'compile', status: 'SUCCESS' }]);
      assert.deepEqual(r2.body.output?.properties, { got_revision: 'abc' });

      // Refused: nothing of the request is stored, not even its valid part.
      const big = 'x'.repeat(4000);
      const bad: [unknown, number, string, RegExp][] = [
        [
          Array.from({ length: 70 }, (_, i) => ({ name: `s${i}`, status: 'SUCCESS', summaryMarkdown: big })),
          413,
          'PAYLOAD_TOO_LARGE',
          /^body\.steps: \d+ bytes of JSON, over the limit of 262144 bytes/,
        ],
        [
          [
            { name: 'a', status: 'SUCCESS' },
            { name: 'a', status: 'FAILURE' },
          ],
          400,
          'INVALID_ARGUMENT',
          /^body\.steps\[1\]\.name: duplicate step name "a"/,
        ],
        [[{ name: 'a|b', status: 'SUCCESS' }], 400, 'INVALID_ARGUMENT', /^body\.steps\[0\]\.name: parent step "a"/],
        [[{ name: 'a', status: 'DONE' }], 400, 'INVALID_ARGUMENT', /^body\.steps\[0\]\.status: /],
        [[{ name: '', status: 'SUCCESS' }], 400, 'INVALID_ARGUMENT', /^body\.steps\[0\]\.name: /],
      ];
      for (const [s, status, code, msg] of bad) {
        const x = await update(b.id, { leaseKey, steps: s, output: { properties: { got_revision: 'new' } } });
        assert.deepEqual([x.status, x.body.code], [status, code], JSON.stringify(s).slice(0, 100));
        assert.match(String(x.body.message), msg);
      }
      const tooBigOutput = await update(b.id, {
        leaseKey,
        steps: [{ name: 'other', status: 'SUCCESS' }],
        output: { properties: { blob: 'y'.repeat(300 * 1024) } },
      });
      assert.deepEqual([tooBigOutput.status, tooBigOutput.body.code], [413, 'PAYLOAD_TOO_LARGE']);
      assert.match(String(tooBigOutput.body.message), /^body\.output\.properties: /);
      const unchanged = (await call('GET', `/api/v1/builds/${b.id}`)).body;
      assert.deepEqual(unchanged.steps, [{ name: 'compile', status: 'SUCCESS' }]);
      assert.deepEqual(unchanged.output?.properties, { got_revision: 'abc' });

      // Only the lease key is the credential.
      const wrong = await update(b.id, { leaseKey: `${leaseKey}x`, steps: [] });
      assert.deepEqual([wrong.status, wrong.body.code], [409, 'LEASE_EXPIRED']);
      const none = await update(b.id, { steps: [] });
      assert.deepEqual([none.status, none.body.code], [400, 'INVALID_ARGUMENT']);
      assert.match(String(none.body.message), /^body\.leaseKey: /);

      // After the end: shown with the build (and by `kiln get`).
      await h.service.succeed(b.id, { leaseKey });
      const ended = (await call('GET', `/api/v1/builds/${b.id}`)).body;
      assert.equal(ended.status, 'SUCCESS');
      assert.deepEqual(ended.output?.properties, { got_revision: 'abc' });
      const text = buildDetails(ended);
      assert.match(text, /^steps:\n {2}compile {2}SUCCESS$/m);
      assert.match(text, /^output:\n {2}got_revision = "abc"$/m);
      const byNumber = (await call('GET', `/api/v1/builders/chromium/try/linux-rel/builds/${b.number}`)).body;
      assert.deepEqual(byNumber.steps, [{ name: 'compile', status: 'SUCCESS' }]);
    });
  });

  it('a later attempt replaces what an earlier one reported, and the earlier one cannot write again', async () => {
    const b = await h.service.schedule({ builder });
    assert.equal(
      await h.storage.recordBuildProgress({
        buildId: b.id,
        attempt: 1,
        steps: [{ name: 'a', status: 'STARTED' }],
        outputProperties: { x: 1 },
      }),
      true,
    );
    assert.equal(
      await h.storage.recordBuildProgress({ buildId: b.id, attempt: 2, steps: [{ name: 'b', status: 'STARTED' }] }),
      true,
    );
    const p = await h.storage.getBuildProgress(b.id);
    assert.deepEqual([p?.attempt, p?.steps, p?.outputProperties], [2, [{ name: 'b', status: 'STARTED' }], undefined]);
    assert.equal(
      await h.storage.recordBuildProgress({ buildId: b.id, attempt: 1, outputProperties: { late: true } }),
      false,
    );
    assert.equal((await h.storage.getBuildProgress(b.id))?.outputProperties, undefined);
  });

  it('kiln runner sends what the command writes to $KILN_STEPS_FILE and $KILN_OUTPUT_PROPERTIES_FILE', async () => {
    const workDir = mkdtempSync(join(tmpdir(), 'kiln-steps-runner-'));
    const worker = await h.newWorker();
    const runner = new Runner(
      {
        api: url,
        name: 'steps-runner',
        serve: [{ bucket: 'chromium/try', builders: ['steps'] }],
        dimensions: ['pool:steps'],
        capacity: 1,
        peekIntervalSecs: 1,
        heartbeatIntervalSecs: 30,
        logFlushIntervalSecs: 1,
        gracePeriodSecs: 5,
        killTimeoutSecs: 1,
        workDir,
        keepBuildDirs: false,
      },
      testLogger,
    );
    try {
      await worker.runUntil(async () => {
        const changes = [{ id: 'c1', author: { email: 'alice@example.org' } }];
        const b = await h.service.schedule({ builder: { ...builder, builder: 'steps' }, changes });
        runner.start();
        // Mid-build: the first steps arrive while the command still runs.
        const mid = await eventually(
          async () => {
            const x = await h.service.get(b.id);
            return x.status === 'STARTED' && x.steps?.length === 2 && x;
          },
          60_000,
          'steps while the build runs',
        );
        assert.deepEqual(mid.steps?.[1], { name: 'test', status: 'STARTED' });
        const done = await eventually(
          async () => {
            const x = await h.service.get(b.id);
            return x.status !== 'STARTED' && x.status !== 'SCHEDULED' && x;
          },
          60_000,
          'the build to end',
        );
        assert.equal(done.status, 'SUCCESS', done.summaryMarkdown);
        assert.deepEqual(done.steps, [
          { name: 'compile', status: 'SUCCESS' },
          { name: 'test', status: 'SUCCESS', summaryMarkdown: '42 passed' },
        ]);
        const out = done.output?.properties ?? {};
        assert.equal(out['got_revision'], 'abc123');
        // The command had its whole input: properties (with the derived blamelist) and changes.
        assert.deepEqual(out['input'], { properties: { blamelist: ['alice@example.org'] }, changes });
      });
    } finally {
      await runner.stop();
      rmSync(workDir, { recursive: true, force: true });
    }
  });
});
