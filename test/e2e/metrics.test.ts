/**
 * Prometheus metrics, scraped as Prometheus would: `kiln dev` (a real dev server, worker, API and
 * runner in one process) and a separate `kiln worker`. Builds pass, wait in the queue, lose their
 * lease twice and get a late report refused; the scrapes before and after must show each of those,
 * plus API latency and codes, the API's Temporal calls and the Temporal SDK's worker metrics.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { KilnApiError, KilnClient } from '../../src/client/kilnClient.ts';
import { startMetricsServer } from '../../src/metrics/server.ts';
import { kilnMetrics } from '../../src/metrics/registry.ts';
import { freePort, kiln, type KilnProcess, startKiln } from '../support/kilnDev.ts';

const OPS_TOKEN = 'ops-token-0123456789abcdef';
const METRICS_TOKEN = 'metrics-token-0123456789abcdef';

/** Sum of the samples of `name` whose labels include `labels`, from Prometheus text. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

describe('metrics, scraped from kiln dev and kiln worker', () => {
  let dir: string;
  let api: string;
  let tPort: number;
  let dev: KilnProcess;
  let worker: KilnProcess | undefined;
  let client: KilnClient;

  const scrape = async (url: string, token?: string) =>
    fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const metrics = async () => {
    const r = await scrape(`${api}/metrics`, METRICS_TOKEN);
    assert.equal(r.status, 200);
    return r.text();
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-e2e-metrics-'));
    const [apiPort, temporalPort, uiPort] = [await freePort(), await freePort(), await freePort()];
    tPort = temporalPort;
    api = `http://127.0.0.1:${apiPort}`;
    client = new KilnClient({ baseUrl: api, token: OPS_TOKEN });
    writeFileSync(
      join(dir, 'kiln.yaml'),
      `
dataDir: ${join(dir, 'data')}
api: { host: 127.0.0.1, port: ${apiPort} }
temporal: { taskQueue: e2e-metrics, devServer: { port: ${tPort}, uiPort: ${uiPort} } }
metrics: { tokenEnv: KILN_TEST_METRICS_TOKEN }
devRunner:
  token: ${OPS_TOKEN}
  serve: [{ bucket: m/ci, builders: [pass] }]
  dimensions: []
  peekIntervalSecs: 1
  logFlushIntervalSecs: 1
projects:
  - name: m
    buckets:
      - name: ci
        acls: [{ role: WRITER, name: ops, token: ${OPS_TOKEN} }]
        builders:
          - name: pass
            command: ["sh", "-c", "echo ok"]
          - name: queued
            dimensions: ["pool:nobody"]
          - name: expiring
            dimensions: ["pool:nobody"]
            leaseDurationSecs: 2
            maxLeaseResets: 1
`,
    );
    dev = startKiln(['dev', '-c', join(dir, 'kiln.yaml')], { KILN_TEST_METRICS_TOKEN: METRICS_TOKEN });
    await dev.waitFor('Kiln is running', 180_000);
  });

  after(async () => {
    await worker?.stop('SIGTERM');
    await dev?.stop('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers /metrics only with the metrics token once the API has ACLs', async () => {
    assert.equal((await scrape(`${api}/metrics`)).status, 401);
    // A bucket token is not enough: metrics name every bucket and builder.
    assert.equal((await scrape(`${api}/metrics`, OPS_TOKEN)).status, 401);
    const ok = await scrape(`${api}/metrics`, METRICS_TOKEN);
    assert.equal(ok.status, 200);
    assert.match(ok.headers.get('content-type') ?? '', /text\/plain/);
  });

  it('moves with builds: status changes, the pending queue, lease expiries, a refused late report, API and Temporal calls', async () => {
    const m0 = await metrics();
    const pass = { project: 'm', bucket: 'ci', builder: 'pass' };
    const queued = { project: 'm', bucket: 'ci', builder: 'queued' };
    const expiring = { project: 'm', bucket: 'ci', builder: 'expiring' };

    const r = await kiln(['schedule', 'm/ci/pass', '--wait', '--api', api], { KILN_TOKEN: OPS_TOKEN });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    await client.schedule({ builder: { project: 'm', bucket: 'ci', builder: 'queued' } });

    // A lease that expires (reset), a late report with the dead key (refused), a second lease that expires (ended).
    const b = await client.schedule({ builder: { project: 'm', bucket: 'ci', builder: 'expiring' } });
    const first = await client.lease(b.id, { holder: 'metrics-test' });
    await client.start(b.id, { leaseKey: first.leaseKey });
    await until('the lease to expire and the build to be rescheduled', async () => {
      const now = await client.get(b.id);
      return now.status === 'SCHEDULED' && now.leaseResets === 1;
    });
    await assert.rejects(
      client.succeed(b.id, { leaseKey: first.leaseKey }),
      (e: unknown) => e instanceof KilnApiError && e.code === 'LEASE_EXPIRED',
    );
    await client.lease(b.id, { holder: 'metrics-test' });
    await until('the second expiry to end the build', async () => (await client.get(b.id)).status === 'INFRA_FAILURE');

    const m1 = await until('the counters of the last transitions', async () => {
      const t = await metrics();
      return sample(t, 'kiln_lease_expiries_total', { ...expiring, outcome: 'ended' }) >= 1 && t;
    });
    const delta = (name: string, labels: Record<string, string> = {}) =>
      sample(m1, name, labels) - sample(m0, name, labels);

    assert.equal(delta('kiln_build_status_changes_total', { ...pass, status: 'SUCCESS' }), 1);
    assert.equal(delta('kiln_build_status_changes_total', { ...pass, status: 'STARTED' }), 1);
    assert.equal(delta('kiln_build_status_changes_total', { ...expiring, status: 'INFRA_FAILURE' }), 1);
    assert.equal(
      delta('kiln_build_status_changes_total', { ...expiring, status: 'SCHEDULED' }),
      2,
      'scheduled, then reset',
    );
    assert.equal(sample(m1, 'kiln_builds_open', { ...queued, status: 'SCHEDULED' }), 1);
    assert.equal(sample(m1, 'kiln_builds_open', { ...pass, status: 'SCHEDULED' }), 0);
    assert.ok(sample(m1, 'kiln_builds_pending_oldest_age_seconds', queued) > 0);
    assert.equal(delta('kiln_lease_expiries_total', { ...expiring, outcome: 'reset' }), 1);
    assert.equal(delta('kiln_lease_expiries_total', { ...expiring, outcome: 'ended' }), 1);
    assert.equal(delta('kiln_stale_reports_refused_total', expiring), 1);
    assert.equal(delta('kiln_api_errors_total', { route: '/api/v1/builds/:id/succeed', code: 'LEASE_EXPIRED' }), 1);
    assert.ok(delta('kiln_api_requests_total', { method: 'POST', route: '/api/v1/builds', status: '200' }) >= 3);
    assert.ok(delta('kiln_api_request_duration_seconds_count', { method: 'POST', route: '/api/v1/builds' }) >= 3);
    assert.ok(delta('kiln_temporal_client_requests_total', { method: 'UpdateWorkflowExecution', code: 'OK' }) > 0);
    // The Temporal SDK's own worker metrics, appended from its Runtime's exporter.
    // (the SDK's exporter may lag its workers by a moment: ask again until it shows both)
    await until(
      'the SDK to count the two completed build workflows',
      async () => {
        const t = await metrics();
        const completed = (x: string) => sample(x, 'temporal_workflow_completed', { workflow_type: 'buildWorkflow' });
        return completed(t) - completed(m0) >= 2;
      },
      30_000,
    );
    assert.ok(sample(m1, 'temporal_worker_task_slots_available', { worker_type: 'WorkflowWorker' }) > 0);

    // The queued build ends: it leaves the pending queue.
    const q = (await client.search({ project: 'm', bucket: 'ci', builder: 'queued', status: 'SCHEDULED' })).builds[0];
    assert.ok(q);
    await client.cancel(q.id);
    const m2 = await until('the queue to drain', async () => {
      const t = await metrics();
      return sample(t, 'kiln_builds_open', { ...queued, status: 'SCHEDULED' }) === 0 && t;
    });
    assert.equal(sample(m2, 'kiln_builds_pending_oldest_age_seconds', queued), 0);
  });

  it('serves kiln worker its own /metrics, with the Temporal SDK metrics, behind the token', async () => {
    const port = await freePort();
    writeFileSync(
      join(dir, 'worker.yaml'),
      `
dataDir: ${join(dir, 'worker-data')}
temporal: { address: 127.0.0.1:${tPort}, taskQueue: e2e-metrics-idle }
metrics: { tokenEnv: KILN_TEST_METRICS_TOKEN, worker: { host: 127.0.0.1, port: ${port} } }
`,
    );
    worker = startKiln(['worker', '-c', join(dir, 'worker.yaml')], { KILN_TEST_METRICS_TOKEN: METRICS_TOKEN });
    await worker.waitFor('worker running', 180_000);
    const url = `http://127.0.0.1:${port}/metrics`;
    assert.equal((await scrape(url)).status, 401);
    const text = await until('the SDK metrics on the worker endpoint', async () => {
      const res = await scrape(url, METRICS_TOKEN);
      const t = res.status === 200 && (await res.text());
      return t && sample(t, 'temporal_num_pollers', { task_queue: 'e2e-metrics-idle' }) > 0 && t;
    });
    assert.ok(sample(text, 'process_cpu_seconds_total') > 0);
    assert.match(text, /# TYPE kiln_build_status_changes_total counter/);
  });

  it('refuses to serve worker metrics beyond loopback without a token', async () => {
    await assert.rejects(
      startMetricsServer({ m: kilnMetrics(), host: '0.0.0.0', port: 0 }),
      /metrics\.worker\.host: refusing to serve metrics on 0\.0\.0\.0 without metrics\.tokenEnv/,
    );
  });
});
