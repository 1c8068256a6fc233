/**
 * Build-workflow timers on the Java time-skipping test server: a lease that heartbeats move past
 * the armed timer (the timer fires early, finds nothing due and re-arms).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { eventually, harness, type Harness } from '../support/temporal.ts';
import { startTimeSkippingEnv } from '../support/verification.ts';

const linux = { project: 'chromium', bucket: 'try', builder: 'linux-rel' };

describe('build timers on the time-skipping server', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  before(async () => {
    env = await startTimeSkippingEnv();
    h = await harness(env);
  });
  after(async () => {
    await h?.storage.close();
    await env?.teardown();
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
