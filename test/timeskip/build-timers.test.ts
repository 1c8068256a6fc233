/**
 * Build-workflow timers on the Java time-skipping test server: a lease that heartbeats move past
 * the armed timer (the timer fires early, finds nothing due and re-arms), and a lease in storage read
 * every 30 s. Here heartbeats go to the workflows, which write them to storage with their own clock.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { KilnLastHeartbeatAt } from '../../src/domain/searchAttributes.ts';
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

  it('a lease in storage is read every 30 s: storage and search attributes show the last heartbeat, not the lease time', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder: linux });
      const g = await h.service.lease(b.id, { holder: 'r' }); // the builder's 60 s lease
      await h.service.start(b.id, { leaseKey: g.leaseKey });
      const handle = env.client.workflow.getHandle(`build/${b.id}`);
      const leasedAt = (await handle.describe()).typedSearchAttributes.get(KilnLastHeartbeatAt);
      let last = 0;
      for (let t = 0; t < 4; t++) {
        await env.sleep(10_000);
        await h.service.heartbeat(b.id, { leaseKey: g.leaseKey });
        last = await env.currentTimeMs();
      }
      await env.sleep(5_000); // ≈45 s: one read at 30 s, before the lease's first 60 s
      const seen = await eventually(
        async () => {
          const at = (await handle.describe()).typedSearchAttributes.get(KilnLastHeartbeatAt);
          return at && leasedAt && at.getTime() > leasedAt.getTime() && at;
        },
        30_000,
        'KilnLastHeartbeatAt refreshed from storage',
      );
      assert.ok(seen.getTime() <= last);
      const stored = await h.storage.getBuild(b.id);
      assert.ok(
        Date.parse(stored?.leaseExpiration ?? '') > Date.parse(g.leaseExpiration),
        'the moved expiry is stored',
      );
      assert.equal(stored?.leaseResets, 0);
      await h.service.succeed(b.id, { leaseKey: g.leaseKey });
    });
  });
});
