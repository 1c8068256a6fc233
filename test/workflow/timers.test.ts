/**
 * Lease expiry, maxLeaseResets, scheduling and execution timeouts and cancel, on a real dev server
 * with short configured durations (seconds), plus a worker stopped mid-build and replaced.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { buildWorkflowId } from '../../src/domain/buildId.ts';
import { eventually, type Harness, rejectsWith, withDevHarness } from '../support/temporal.ts';

const builder = (name: string) => ({ project: 'chromium', bucket: 'try', builder: name });

describe('build timers and cancel', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  withDevHarness((e, x) => {
    env = e;
    h = x;
  });

  const ended = (id: string) =>
    eventually(
      async () => {
        const b = await h.storage.getBuild(id);
        return b && ['SUCCESS', 'FAILURE', 'INFRA_FAILURE', 'CANCELED'].includes(b.status) && b;
      },
      20_000,
      `build ${id} to end`,
    );

  it('lease expiry returns the build to SCHEDULED with a new generation; the old key is dead', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder: builder('short-lease') });
      const old = await h.service.lease(b.id, { holder: 'dies-soon' });
      await h.service.start(b.id, { leaseKey: old.leaseKey });
      // No heartbeat: the 2 s lease expires and the build is leasable again.
      const again = await eventually(
        async () => {
          const s = await h.storage.getBuild(b.id);
          return s?.status === 'SCHEDULED' && s.leaseResets === 1 && s;
        },
        15_000,
        'lease reset',
      );
      assert.equal(again.leaseHolder, undefined);
      assert.ok(
        (await h.service.peek({ buckets: ['chromium/try'], builders: ['short-lease'] })).some((x) => x.id === b.id),
      );
      await rejectsWith(h.service.heartbeat(b.id, { leaseKey: old.leaseKey }), 'LEASE_EXPIRED');
      await rejectsWith(h.service.succeed(b.id, { leaseKey: old.leaseKey }), 'LEASE_EXPIRED');
      const fresh = await h.service.lease(b.id, { holder: 'second' });
      assert.notEqual(fresh.leaseKey, old.leaseKey);
      assert.ok(Number(fresh.leaseKey.split('.')[0]) > Number(old.leaseKey.split('.')[0]));
      await h.service.start(b.id, { leaseKey: fresh.leaseKey });
      const done = await h.service.succeed(b.id, { leaseKey: fresh.leaseKey });
      assert.equal(done.status, 'SUCCESS');
      // The late report from the first holder was refused and noted in the build's own history.
      assert.ok(done.events.some((e) => e.kind === 'STALE_REPORT_REFUSED'));
      assert.ok(done.events.some((e) => e.kind === 'LEASE_EXPIRED'));
    });
  });

  it('ends INFRA_FAILURE {leaseExpired} once maxLeaseResets is used up', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder: builder('no-resets') });
      await h.service.lease(b.id, {});
      const e = await ended(b.id);
      assert.equal(e.status, 'INFRA_FAILURE');
      assert.deepEqual(e.statusDetails, { leaseExpired: true });
    });
  });

  it('scheduling timeout: never started → INFRA_FAILURE {timeout, resourceExhaustion}', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder: builder('quick-timeouts') });
      const e = await ended(b.id);
      assert.equal(e.status, 'INFRA_FAILURE');
      assert.deepEqual(e.statusDetails, { timeout: true, resourceExhaustion: true });
    });
  });

  it('execution timeout: started too long → INFRA_FAILURE {timeout}, runner told to stop', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder: builder('quick-timeouts') });
      const g = await h.service.lease(b.id, { leaseDurationMs: 60_000 });
      await h.service.start(b.id, { leaseKey: g.leaseKey });
      const e = await ended(b.id);
      assert.equal(e.status, 'INFRA_FAILURE');
      assert.deepEqual(e.statusDetails, { timeout: true });
      await rejectsWith(h.service.heartbeat(b.id, { leaseKey: g.leaseKey }), 'BUILD_IS_COMPLETED');
    });
  });

  it('cancel works from SCHEDULED, leased, and STARTED, is idempotent, and a canceled runner learns it', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const s = await h.service.schedule({ builder: builder('linux-rel') });
      assert.equal((await h.service.cancel(s.id, 'not needed', 'alice')).status, 'CANCELED');
      assert.equal((await h.service.cancel(s.id, 'again', 'alice')).status, 'CANCELED');

      const l = await h.service.schedule({ builder: builder('linux-rel') });
      const gl = await h.service.lease(l.id, {});
      assert.equal((await h.service.cancel(l.id, undefined, 'bob')).status, 'CANCELED');
      await rejectsWith(h.service.start(l.id, { leaseKey: gl.leaseKey }), 'BUILD_IS_COMPLETED');

      const r = await h.service.schedule({ builder: builder('linux-rel') });
      const gr = await h.service.lease(r.id, {});
      await h.service.start(r.id, { leaseKey: gr.leaseKey });
      const c = await h.service.cancel(r.id, 'superseded', 'cq');
      assert.equal(c.status, 'CANCELED');
      assert.equal(c.canceledBy, 'cq');
      await rejectsWith(h.service.heartbeat(r.id, { leaseKey: gr.leaseKey }), 'BUILD_IS_COMPLETED');
      await rejectsWith(h.service.lease(r.id, {}), 'BUILD_IS_COMPLETED');
    });
  });

  it('a worker stopped mid-build and replaced by a new one: the build carries on', async () => {
    let b!: Awaited<ReturnType<Harness['service']['schedule']>>;
    let key!: string;
    const first = await h.newWorker();
    await first.runUntil(async () => {
      b = await h.service.schedule({ builder: builder('linux-rel') });
      key = (await h.service.lease(b.id, { leaseDurationMs: 120_000 })).leaseKey;
      await h.service.start(b.id, { leaseKey: key });
    });
    // No worker now: the build is still STARTED in Temporal and storage; nothing is lost.
    assert.equal((await h.storage.getBuild(b.id))?.status, 'STARTED');
    const second = await h.newWorker();
    await second.runUntil(async () => {
      await h.service.heartbeat(b.id, { leaseKey: key });
      const done = await h.service.succeed(b.id, { leaseKey: key });
      assert.equal(done.status, 'SUCCESS');
    });
    const desc = await env.client.workflow.getHandle(buildWorkflowId(b.id)).describe();
    assert.equal(desc.status.name, 'COMPLETED');
  });
});
