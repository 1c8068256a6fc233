/**
 * Stuck builds in Temporal visibility and the Web UI: README's list filters, run against a real dev
 * server's visibility API, find exactly the stuck builds this test made; `findStuck` (what
 * `kiln stuck` prints) agrees; and the Web UI page of a stuck build, loaded in headless Chromium,
 * shows its search attributes.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { type Worker } from '@temporalio/worker';
import { chromium } from 'playwright-core';
import { type Build } from '../../src/domain/build.ts';
import { KILN_SEARCH_ATTRIBUTE_KEYS } from '../../src/domain/searchAttributes.ts';
import {
  STUCK_CATEGORIES,
  type StuckCategory,
  stuckFilters,
  type StuckThresholds,
  uiListUrl,
} from '../../src/stuck/filters.ts';
import { findStuck } from '../../src/stuck/find.ts';
import { freePort } from '../support/kilnDev.ts';
import { harness, type Harness, TEMPORAL_CLI } from '../support/temporal.ts';

const README = resolve(import.meta.dirname, '../../README.md');
const TIME = /'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ'/;

/** The filters in README's "Inspecting stuck builds" block, in order. */
function readmeFilters(): string[] {
  const text = readFileSync(README, 'utf8');
  const section = text.slice(text.indexOf('## Inspecting stuck builds'));
  const block = /```text\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  return block.split('\n').filter((l) => l.trim() && !l.startsWith('#'));
}

const config = `
projects:
  - name: stuck
    buckets:
      - name: ci
        builders:
          - name: b
            maxLeaseDurationSecs: 7200
`;
const builder = { project: 'stuck', bucket: 'ci', builder: 'b' };

describe('stuck builds in Temporal visibility and the Web UI', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  let worker: Worker;
  let running: Promise<void>;
  let uiPort: number;
  const made: Partial<Record<StuckCategory | 'fine', string[]>> = {};
  let stuckStarted: Build;

  before(async () => {
    uiPort = await freePort();
    env = await TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path: TEMPORAL_CLI },
        ip: '127.0.0.1',
        uiPort,
        searchAttributes: [...KILN_SEARCH_ATTRIBUTE_KEYS],
        log: { format: 'pretty', level: 'error' },
      },
    });
    // Thresholds of seconds here: every heartbeat goes to the workflow (in production the API answers
    // some itself, but lets one through at least every 30 s, within `kiln stuck`'s default 60 s).
    h = await harness(env, config, { answerHeartbeatsFromLeases: false });
    worker = await h.newWorker();
    running = worker.run();
    const s = h.service;
    const leaseAndStart = async (holder: string, leaseSecs: number) => {
      const b = await s.schedule({ builder });
      const g = await s.lease(b.id, { holder, leaseDurationMs: leaseSecs * 1000 });
      await s.start(b.id, { leaseKey: g.leaseKey });
      return { b, key: g.leaseKey };
    };
    // Fine: started first, and heartbeats after the 15 s visibility refresh interval (below).
    const healthy = await leaseAndStart('runner-healthy', 3600);
    const healthySince = Date.now();
    // Never leased: scheduled too long once the threshold passes.
    const pending = await s.schedule({ builder });
    // Started, lease ends within the threshold, never heartbeats: its last contact is its start.
    // Its lease must outlast the whole suite (a build whose lease ran out is no longer running):
    // on a loaded CI machine a 30 s lease once ran out before the Web UI test looked for it.
    const expiring = await leaseAndStart('runner-expiring', 300);
    // Started with a long lease, one heartbeat that then gets old.
    const silent = await leaseAndStart('runner-silent', 3600);
    await s.heartbeat(silent.b.id, { leaseKey: silent.key, leaseDurationMs: 3600_000 });
    // Fine: one that ended.
    const ended = await leaseAndStart('runner-done', 3600);
    await s.succeed(ended.b.id, { leaseKey: ended.key });
    await sleep(Math.max(3500, healthySince + 16_000 - Date.now()));
    await s.heartbeat(healthy.b.id, { leaseKey: healthy.key, leaseDurationMs: 3600_000 });
    made['scheduled-too-long'] = [pending.id];
    made['lease-expiring'] = [expiring.b.id];
    made['heartbeat-old'] = [expiring.b.id, silent.b.id].sort();
    made.fine = [healthy.b.id, ended.b.id];
    stuckStarted = await s.get(expiring.b.id);
  });

  after(async () => {
    if (worker?.getState() === 'RUNNING') worker.shutdown();
    await running?.catch(() => undefined);
    await h?.storage.close();
    await env?.teardown();
  });

  const thresholds: StuckThresholds = { scheduledForSecs: 2, leaseExpiresWithinSecs: 900, heartbeatOlderThanSecs: 2 };

  it("README's list filters find exactly the stuck builds, category by category", async () => {
    const lines = readmeFilters();
    assert.equal(lines.length, STUCK_CATEGORIES.length, 'one README filter per category');
    const now = Date.now();
    const fromCode = stuckFilters(now, thresholds);
    for (const [i, category] of STUCK_CATEGORIES.entries()) {
      const readme = lines[i] ?? '';
      const code = fromCode[category];
      // README shows the same filter kiln stuck prints, up to the example time.
      assert.equal(readme.replace(TIME, 'T'), code.replace(TIME, 'T'), `README filter for ${category}`);
      const query = readme.replace(TIME, TIME.exec(code)?.[0] ?? '');
      const expected = [...(made[category] ?? [])].sort();
      let found: string[] = [];
      for (let attempt = 0; attempt < 50; attempt++) {
        found = [];
        for await (const w of env.client.workflow.list({ query })) found.push(w.workflowId.replace('build/', ''));
        found.sort();
        if (JSON.stringify(found) === JSON.stringify(expected)) break;
        await sleep(200);
      }
      assert.deepEqual(found, expected, `${category}: ${query}`);
    }
  });

  it('findStuck (kiln stuck) reports the same builds with their filters', async () => {
    const report = await findStuck(env.client, thresholds);
    for (const c of report.categories) {
      assert.deepEqual(c.builds.map((b) => b.buildId).sort(), [...(made[c.category] ?? [])].sort(), c.category);
    }
    const expiring = report.categories.find((c) => c.category === 'lease-expiring')?.builds[0];
    assert.equal(expiring?.leaseHolder, 'runner-expiring');
    assert.equal(expiring?.builder, 'stuck/ci/b');
    assert.deepEqual(report.verifications.runs, []);
  });

  it("shows a stuck build's search attributes on its Temporal Web UI page (headless Chromium)", async () => {
    // A fresh profile per run; Debian's chromium from scripts/setup-chromium.sh.
    const profile = mkdtempSync(join(tmpdir(), 'kiln-chromium-'));
    const browser = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
    try {
      const page = await browser.newPage();
      const base = `http://127.0.0.1:${uiPort}`;
      // The README filter in the UI's workflow list shows the build ...
      const filter = stuckFilters(Date.now(), thresholds)['lease-expiring'];
      await page.goto(uiListUrl(base, 'default', filter));
      await page.getByText(`build/${stuckStarted.id}`).first().waitFor({ timeout: 60_000 });
      // ... and its page shows Kiln's search attributes.
      const d = await env.client.workflow.getHandle(`build/${stuckStarted.id}`).describe();
      await page.goto(
        `${base}/namespaces/default/workflows/${encodeURIComponent(`build/${stuckStarted.id}`)}/${d.runId}/history`,
      );
      await page.getByText('Search Attributes', { exact: true }).first().click({ timeout: 60_000 });
      await page.getByText('KilnLeaseHolder').first().waitFor({ timeout: 30_000 });
      const text = await page.locator('body').innerText();
      assert.match(text, new RegExp(`"KilnBuildId": "${stuckStarted.id}"`));
      assert.match(text, /"KilnStatus": "STARTED"/);
      assert.match(text, /"KilnLeaseHolder": "runner-expiring"/);
      assert.match(text, /"KilnBuilder": "b"/);
      assert.match(text, /"KilnLeaseExpiresAt": "\d{4}-/);
    } finally {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    }
  });
});
