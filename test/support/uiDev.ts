/**
 * Test support for the web UI: `kiln dev` as a real child process (its own Temporal dev server with
 * the Temporal Web UI, worker, API serving the UI, dev runner) with bucket ACLs, a fake Gerrit at the
 * HTTP level for change verifications fed by tinderboxes over the HTTP API, and headless Chromium
 * (Debian's, from scripts/setup-chromium.sh) driven by playwright-core with a fresh profile.
 * Used by test/e2e/ui.test.ts and by scripts/ui-screenshots.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';
import { type Build } from '../../src/domain/build.ts';
import { FakeGerritServer } from '../fakes/gerritServer.ts';
import { freePort, type KilnProcess, startKiln } from './kilnDev.ts';

/** Tokens of the UI test config. */
export const UI_TOKENS = {
  /** WRITER on every bucket. */
  admin: 'ui-admin-token-0123456789',
  /** READER on demo/ci only. */
  reader: 'ui-reader-token-0123456789',
  /** SCHEDULER on demo/ci. */
  scheduler: 'ui-scheduler-token-0123456789',
} as const;

const GERRIT_PASSWORD = 'kiln-http-password';
export const GERRIT_HOST = 'review.example.org';
const EVENT_SECRET = 'ui-event-secret-0123456789';

/** A running `kiln dev` for UI tests. */
export interface UiDev {
  dir: string;
  api: string;
  temporalUi: string;
  dev: KilnProcess;
  fake: FakeGerritServer;
  /** A JSON call to the API with a token (admin by default). */
  call<T = Build>(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    token?: string,
  ): Promise<{ status: number; body: T }>;
  schedule(builder: string, o?: { tags?: string[]; properties?: Record<string, unknown> }): Promise<Build>;
  /** Leases, starts, and returns the lease key (the test acts as the runner of `demo/ci/manual`). */
  leaseAndStart(id: string, holder: string): Promise<string>;
  uploadLog(id: string, leaseKey: string, offset: number, data: string, complete: boolean): Promise<void>;
  /** A new change on the fake Gerrit and its patchset-created event: starts a verification. */
  newChange(): Promise<{ change: number; patchset: number }>;
  tinderboxGetTask(platform: string, id: string): Promise<{ buildId: string; leaseKey: string } | null>;
  tinderboxReport(buildId: string, leaseKey: string, outcome: 'SUCCESS' | 'FAILURE', log: string): Promise<void>;
  close(): Promise<void>;
}

/** Starts `kiln dev` with the UI test config (first run of a machine: up to a few minutes). */
export async function startUiDev(): Promise<UiDev> {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-ui-'));
  const [apiPort, tPort, uiPort] = [await freePort(), await freePort(), await freePort()];
  const api = `http://127.0.0.1:${apiPort}`;
  const fake = await FakeGerritServer.start();
  fake.addAccount({
    _account_id: 1000,
    username: 'kiln',
    name: 'Kiln',
    email: 'kiln@example.org',
    password: GERRIT_PASSWORD,
  });
  fake.addAccount({ _account_id: 1, username: 'alice', name: 'Alice', email: 'alice@example.org' });
  const acls = (reader: boolean) => `
        acls:
          - { role: WRITER, name: admin, token: ${UI_TOKENS.admin} }
          - { role: SCHEDULER, name: scheduler, token: ${UI_TOKENS.scheduler} }${
            reader ? `\n          - { role: READER, name: reader, token: ${UI_TOKENS.reader} }` : ''
          }`;
  const tinderbox = (name: string) => `
          - name: ${name}
            leaseDurationSecs: 14400
            maxLeaseDurationSecs: 14400
            maxLeaseResets: 1
            executionTimeoutSecs: 20000`;
  writeFileSync(
    join(dir, 'kiln.yaml'),
    `
dataDir: ${join(dir, 'data')}
api: { host: 127.0.0.1, port: ${apiPort}, publicUrl: "${api}" }
temporal: { taskQueue: ui-e2e, devServer: { port: ${tPort}, uiPort: ${uiPort} } }
ui: { liveIntervalMs: 300 }
devRunner:
  name: dev-runner
  token: ${UI_TOKENS.admin}
  serve: [{ bucket: demo/ci, builders: [pass, fail, long] }]
  dimensions: []
  peekIntervalSecs: 1
  heartbeatIntervalSecs: 2
  logFlushIntervalSecs: 1
  killTimeoutSecs: 1
projects:
  - name: demo
    buckets:
      - name: ci${acls(true)}
        builders:
          - name: pass
            command: ["sh", "-c", "echo building $KILN_BUILDER number $KILN_BUILD_NUMBER; sleep 1; printf '\\\\033[32mall tests passed\\\\033[0m\\\\n'"]
          - name: fail
            command: ["sh", "-c", "echo running tests; printf '\\\\033[31m1 test failed\\\\033[0m\\\\n' >&2; exit 1"]
          - name: long
            command: ["sh", "-c", "for i in $(seq 1 120); do echo step $i; sleep 1; done"]
          - name: manual
            dimensions: ["pool:manual"]
  - name: lo
    buckets:
      - name: gerrit${acls(false)}
        builders:${tinderbox('LINUX')}${tinderbox('WINDOWS')}
gerrit:
  hosts:
    - host: ${GERRIT_HOST}
      baseUrl: ${fake.url}
      auth: { kind: basic, username: kiln, passwordEnv: KILN_UI_GERRIT_PASSWORD }
  eventSecret: ${EVENT_SECRET}
  self: { username: kiln }
  projects:
    - { host: ${GERRIT_HOST}, project: online, trigger: patchset-created, builders: [lo/gerrit/LINUX, lo/gerrit/WINDOWS] }
`,
  );
  const dev = startKiln(['dev', '-c', join(dir, 'kiln.yaml')], { KILN_UI_GERRIT_PASSWORD: GERRIT_PASSWORD });
  try {
    await dev.waitFor('Kiln is running', 300_000);
  } catch (e) {
    await dev.stop('SIGKILL');
    await fake.close();
    throw e;
  }
  const call: UiDev['call'] = async (method, path, body, token = UI_TOKENS.admin) => {
    const res = await fetch(`${api}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as never };
  };
  const ok = async <T>(p: Promise<{ status: number; body: T }>, what: string): Promise<T> => {
    const r = await p;
    if (r.status !== 200) throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  let nextChange = 100;
  return {
    dir,
    api,
    temporalUi: `http://127.0.0.1:${uiPort}`,
    dev,
    fake,
    call,
    schedule: (builder, o = {}) => {
      const [project, bucket, name] = builder.split('/');
      return ok(call('POST', '/api/v1/builds', { builder: { project, bucket, builder: name }, ...o }), 'schedule');
    },
    leaseAndStart: async (id, holder) => {
      const g = await ok(
        call<{ leaseKey: string }>('POST', `/api/v1/builds/${id}/lease`, { holder, leaseDurationSecs: 600 }),
        'lease',
      );
      await ok(call('POST', `/api/v1/builds/${id}/start`, { leaseKey: g.leaseKey }), 'start');
      return g.leaseKey;
    },
    uploadLog: async (id, leaseKey, offset, data, complete) => {
      await ok(call('POST', `/api/v1/builds/${id}/log`, { leaseKey, offset, data, complete }), 'log');
    },
    newChange: async () => {
      const c = fake.createChange({ project: 'online', owner: 1, number: ++nextChange });
      const acct = { name: 'Alice', email: 'alice@example.org', username: 'alice' };
      const event = {
        type: 'patchset-created',
        change: {
          project: 'online',
          branch: 'master',
          id: c.changeId,
          number: c.number,
          subject: `Change ${c.number}`,
          owner: acct,
          url: `${fake.url}/c/online/+/${c.number}`,
          status: 'NEW',
        },
        patchSet: { number: c.patchset.number, revision: c.patchset.revision, ref: c.patchset.ref, uploader: acct },
        uploader: acct,
        eventCreatedOn: Math.floor(Date.now() / 1000),
      };
      const res = await fetch(`${api}/api/v1/gerrit/events?host=${GERRIT_HOST}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-kiln-gerrit-secret': EVENT_SECRET },
        body: JSON.stringify(event),
      });
      if (res.status >= 300) throw new Error(`gerrit event: HTTP ${res.status} ${await res.text()}`);
      return { change: c.number, patchset: c.patchset.number };
    },
    tinderboxGetTask: async (platform, id) => {
      const r = await ok(
        call<{ task: { buildId: string; leaseKey: string } | null }>('POST', '/api/v1/tinderbox/get-task', {
          platform,
          tinderboxId: id,
          capabilities: [],
        }),
        'get-task',
      );
      return r.task;
    },
    tinderboxReport: async (buildId, leaseKey, outcome, log) => {
      await ok(call('POST', '/api/v1/tinderbox/report', { buildId, leaseKey, outcome, log }), 'report');
    },
    close: async () => {
      await dev.stop('SIGTERM');
      await fake.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Headless Debian Chromium with a fresh profile; `close()` removes the profile too. */
export async function launchBrowser(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'kiln-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 860 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Polls `fn` until it returns a truthy value. */
export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
