/**
 * The Buildbot Gerrit Plugin's 4 h rule on the Java time-skipping test server: a tinderbox that
 * takes a verification task and goes silent for 4 h loses it; the task is rescheduled once, the
 * first tinderbox's late report is refused (and noted in the build), and the second one's counts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { eventually } from '../support/temporal.ts';
import {
  eventFactory,
  PUBLIC_URL,
  startTimeSkippingEnv,
  verificationHarness,
  type VerificationHarness,
} from '../support/verification.ts';

describe('verification lease on the time-skipping server', () => {
  let env: TestWorkflowEnvironment;
  let h: VerificationHarness;
  before(async () => {
    env = await startTimeSkippingEnv();
    h = await verificationHarness(env, { idleTimeoutSecs: 24 * 3600 });
  });
  after(async () => {
    await h?.close();
    await env?.teardown();
  });

  it("silent for 4 h → rescheduled once; the first tinderbox's late report is refused; the second one's counts", async () => {
    const online = eventFactory('online');
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const c = h.fake.createChange({ project: 'online', owner: 1 });
      assert.equal((await h.sendEvent(online.patchsetCreated(c.number, c.patchset))).status, 202);
      const first = await eventually(
        async () => (await h.getTask('LINUX', 'tb-silent')) ?? false,
        60_000,
        'first task',
      );
      await eventually(async () => h.kilnReviews(c.number).length >= 1, 60_000, 'taken message');
      await env.sleep(4 * 3600_000 + 60_000);
      await eventually(async () => h.kilnReviews(c.number).length >= 2, 60_000, 'rescheduled message');
      const second = await eventually(async () => (await h.getTask('LINUX', 'tb-2')) ?? false, 60_000, 'second task');
      assert.equal(second.buildId, first.buildId);
      assert.notEqual(second.leaseKey, first.leaseKey);
      const late = await h.report(first, 'SUCCESS');
      assert.equal(late.status, 409);
      assert.equal(late.body.code, 'LEASE_EXPIRED');
      const done = await h.report(second, 'SUCCESS');
      assert.equal(done.status, 200);
      assert.ok(
        done.body.events.some((e) => e.kind === 'STALE_REPORT_REFUSED'),
        'late report noted in the build',
      );
      assert.equal(done.body.leaseResets, 1);
      const r = await h.result(c.number, 1);
      assert.equal(r.vote, 1);
      assert.deepEqual(h.kilnReviews(c.number), [
        { message: `LINUX: taken by tb-silent (build ${first.buildId}).`, patchset: 1 },
        { message: 'LINUX: tb-silent went silent and its lease expired; the task was rescheduled.', patchset: 1 },
        { message: `LINUX: taken by tb-2 (build ${first.buildId}).`, patchset: 1 },
        { message: `LINUX: SUCCESS on tb-2. Log: ${PUBLIC_URL}/api/v1/builds/${first.buildId}/log`, patchset: 1 },
        { message: 'Verified +1: all platforms passed (LINUX).', labels: { Verified: 1 }, patchset: 1 },
      ]);
    });
  });
});
