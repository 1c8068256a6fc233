/**
 * Build-workflow timers on the Java time-skipping test server: the store check that covers an API
 * that died between starting a build's workflow and storing the build, and a lease that heartbeats
 * move past the armed timer (the timer fires early, finds nothing due and re-arms).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { buildWorkflowId } from '../../src/domain/buildId.ts';
import { scheduledBuild } from '../support/builds.ts';
import { eventually, harness, type Harness } from '../support/temporal.ts';
import { JAVA_TEST_SERVER, registerSearchAttributes } from '../support/verification.ts';
import { buildWorkflow } from '../../workflows/build.ts';

const linux = { project: 'chromium', bucket: 'try', builder: 'linux-rel' };

describe('build timers on the time-skipping server', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  before(async () => {
    env = await TestWorkflowEnvironment.createTimeSkipping({
      server: { executable: { type: 'existing-path', path: JAVA_TEST_SERVER } },
    });
    await registerSearchAttributes(env);
    h = await harness(env);
  });
  after(async () => {
    await h?.storage.close();
    await env?.teardown();
  });

  it('stores a build whose scheduler died before storing it, 30 s after it was scheduled', async () => {
    // What schedule() does up to the crash: the workflow runs with `stored: true`, no row exists.
    const now = new Date(await env.currentTimeMs()).toISOString();
    const build = scheduledBuild('8700000000000000001', linux, now);
    const timeouts = {
      defaultLeaseMs: 60_000,
      maxLeaseMs: 600_000,
      maxLeaseResets: 3,
      schedulingTimeoutMs: 3600_000,
      executionTimeoutMs: 3600_000,
    };
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      await env.client.workflow.start(buildWorkflow, {
        workflowId: buildWorkflowId(build.id),
        taskQueue: h.taskQueue,
        args: [{ build, timeouts, stored: true }],
      });
      await env.sleep(10_000);
      assert.equal(await h.storage.getBuild(build.id), undefined, 'not stored before the check');
      await env.sleep(25_000);
      const stored = await eventually(() => h.storage.getBuild(build.id), 30_000, 'stored by the workflow');
      assert.equal(stored.status, 'SCHEDULED');
      // …and it is a normal build from then on.
      const g = await h.service.lease(build.id, { holder: 'late' });
      assert.equal((await h.service.succeed(build.id, { leaseKey: g.leaseKey })).status, 'SUCCESS');
    });
  });

  it('a lease that heartbeats extend outlives the timer armed for its first expiry, then expires on time', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder: linux });
      const g = await h.service.lease(b.id, { holder: 'r', leaseDurationMs: 20_000 });
      await h.service.start(b.id, { leaseKey: g.leaseKey });
      await env.sleep(15_000);
      await h.service.heartbeat(b.id, { leaseKey: g.leaseKey, leaseDurationMs: 20_000 }); // now expires at ≈35 s
      await env.sleep(10_000); // ≈25 s: past the first expiry
      const alive = await h.service.heartbeat(b.id, { leaseKey: g.leaseKey, leaseDurationMs: 20_000 }); // ≈45 s
      assert.ok(Date.parse(alive.leaseExpiration) > (await env.currentTimeMs()));
      assert.equal((await h.storage.getBuild(b.id))?.leaseResets, 0);
      await env.sleep(25_000); // ≈50 s: past the last expiry
      const reset = await eventually(
        async () => {
          const s = await h.storage.getBuild(b.id);
          return s?.leaseResets === 1 && s;
        },
        30_000,
        'lease reset',
      );
      assert.equal(reset.status, 'SCHEDULED');
    });
  });
});
