/**
 * The setup every route test file shares: one real Temporal dev server, real embedded storage (and
 * its log store), one worker and one API per file, with tokens for each bucket role. `call` sends a
 * request through the real Fastify app; `answer` checks a 2xx body against the route's own response
 * schema (the contract the client is typed by); `refused` checks a 4xx's code and the field its
 * message names.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { type Worker } from '@temporalio/worker';
import { type FastifyInstance } from 'fastify';
import { type z } from 'zod';
import { buildApi } from '../../../src/api/server.ts';
import { type ScheduleBuildRequest, scheduleBuildResponse } from '../../../src/api/routes/scheduleBuild.ts';
import { type LeaseBuildResponse, leaseBuildResponse } from '../../../src/api/routes/leaseBuild.ts';
import { type BuildOut } from '../../../src/api/uiSchemas.ts';
import { GerritIntake } from '../../../src/gerrit/intake.ts';
import { resolveGerritSettings } from '../../../src/gerrit/settings.ts';
import { harness, type Harness, startDevEnv, testLogger } from '../../support/temporal.ts';

export const READER = 'reader-token-0123456789';
export const SCHEDULER = 'scheduler-token-0123456789';
export const WRITER = 'writer-token-0123456789';
/** WRITER on chromium/ci only: no role at all on chromium/try. */
export const OTHER = 'other-bucket-token-0123';
export const GERRIT_SECRET = 'test-event-secret-0123456789';
export const NOTIFY_TOKEN = 'notify-token-0123456789';
export const linux = { project: 'chromium', bucket: 'try', builder: 'linux-rel' };
export const ciMac = { project: 'chromium', bucket: 'ci', builder: 'mac' };
/** Only the tinderbox test schedules on it, so get-task hands out its builds and no other file's. */
export const tinderboxLinux = { project: 'chromium', bucket: 'try', builder: 'tinderbox-linux' };

function config(templateFile: string): string {
  return `
projects:
  - name: chromium
    buckets:
      - name: try
        acls:
          - { role: READER, name: viewer, token: ${READER} }
          - { role: SCHEDULER, name: cq, token: ${SCHEDULER} }
          - { role: WRITER, name: runner, token: ${WRITER} }
        builders:
          - name: linux-rel
            dimensions: ["os:Linux"]
            command: ["make", "check"]
            checkout: { repo: "https://example.org/src.git", ref: main }
          - name: tinderbox-linux
      - name: ci
        acls:
          - { role: WRITER, name: other, token: ${OTHER} }
        builders:
          - name: mac
gerrit:
  hosts: [{ host: review.example.org }]
  eventSecret: ${GERRIT_SECRET}
swarming:
  taskTemplate: ${templateFile}
  notifyToken: ${NOTIFY_TOKEN}
`;
}

/** One HTTP answer. */
export interface Answer {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | number | undefined>;
  text: string;
}

/** What a route test file gets; filled in by its `before`. */
export interface RouteWorld {
  env: TestWorkflowEnvironment;
  h: Harness;
  app: FastifyInstance;
  call(
    method: 'GET' | 'POST',
    url: string,
    o?: { token?: string; body?: unknown; headers?: Record<string, string> },
  ): Promise<Answer>;
  /** Workflows started on this file's task queue (a refused request must start none). */
  workflowCount(): Promise<number>;
  /** Schedules a build of `builder` (SCHEDULER) and returns it. */
  schedule(req?: Partial<ScheduleBuildRequest>): Promise<BuildOut>;
  /** Schedules and leases a build (WRITER) and returns the grant. */
  leased(req?: Partial<ScheduleBuildRequest>): Promise<LeaseBuildResponse>;
}

/** Registers the file's before/after hooks and returns the world they fill in. */
export function routeWorld(): RouteWorld {
  const w = {} as RouteWorld;
  let worker: Worker | undefined;
  let running: Promise<void> | undefined;
  let dir: string | undefined;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-routes-'));
    const template = join(dir, 'template.json');
    writeFileSync(template, JSON.stringify({ revision: 'r1', template: { task_slices: [{ properties: {} }] } }));
    w.env = await startDevEnv();
    w.h = await harness(w.env, config(template));
    const settings = resolveGerritSettings(w.h.registry.config.gerrit, w.h.registry);
    assert.ok(settings);
    w.app = buildApi(
      {
        service: w.h.service,
        registry: w.h.registry,
        logger: testLogger,
        storage: w.h.storage,
        logs: w.h.storage.logs,
        gerrit: new GerritIntake({
          client: w.env.client,
          registry: w.h.registry,
          settings,
          taskQueue: w.h.taskQueue,
          logger: testLogger,
        }),
      },
      { bodyLimitBytes: 64 * 1024, ui: false },
    );
    worker = await w.h.newWorker();
    running = worker.run();
  });
  after(async () => {
    await w.app?.close();
    worker?.shutdown();
    await running;
    await w.h?.storage.close();
    await w.env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  w.call = async (method, url, o = {}) => {
    const r = await w.app.inject({
      method,
      url,
      headers: {
        ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
        ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...o.headers,
      },
      payload: o.body === undefined ? undefined : typeof o.body === 'string' ? o.body : JSON.stringify(o.body),
    });
    let body: Record<string, unknown> = {};
    try {
      body = r.body === '' ? {} : (JSON.parse(r.body) as Record<string, unknown>);
    } catch {
      // text answers (logs)
    }
    return { status: r.statusCode, body, headers: r.headers, text: r.body };
  };
  w.workflowCount = async () => (await w.env.client.workflow.count(`TaskQueue = '${w.h.taskQueue}'`)).count;
  w.schedule = async (req = {}) =>
    answer(
      scheduleBuildResponse,
      await w.call('POST', '/api/v1/builds', { token: SCHEDULER, body: { builder: linux, ...req } }),
    );
  w.leased = async (req = {}) => {
    const b = await w.schedule(req);
    return answer(
      leaseBuildResponse,
      await w.call('POST', `/api/v1/builds/${b.id}/lease`, { token: WRITER, body: { holder: 'bot-1' } }),
    );
  };
  return w;
}

/**
 * Asserts a 2xx answer and parses its body with the route's response schema. The parse must keep
 * the body as it is: a field the schema does not know (which parsing strips) fails too.
 */
export function answer<S extends z.ZodType>(schema: S, r: Answer, status = 200): z.infer<S> {
  assert.equal(r.status, status, r.text);
  const parsed = schema.safeParse(r.body);
  assert.ok(parsed.success, `answer does not match the route's schema: ${parsed.error?.message}`);
  assert.deepEqual(parsed.data, r.body, 'the answer carries fields its schema does not declare');
  return parsed.data;
}

/** Asserts a refusal: status, code, and (when given) that the message names `field`. */
export function refused(r: Answer, status: number, code: string, field?: RegExp): void {
  assert.deepEqual([r.status, r.body.code], [status, code], r.text);
  assert.equal(typeof r.body.message, 'string');
  if (field) assert.match(String(r.body.message), field);
}
