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

  it('heartbeats reach the workflow only in the second half of the lease; the lease holds for 6 s, and a cancel is seen at once', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder: builder('short-lease') }); // a 2 s lease
      const g = await h.service.lease(b.id, { holder: 'alive' });
      await h.service.start(b.id, { leaseKey: g.leaseKey });
      const handle = env.client.workflow.getHandle(buildWorkflowId(b.id));
      const heartbeatUpdates = async () =>
        ((await handle.fetchHistory()).events ?? []).filter(
          (e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name === 'heartbeat',
        ).length;
      let sent = 0;
      const started = Date.now();
      while (Date.now() - started < 6000) {
        const [hb] = await h.service.heartbeatBatch([{ buildId: b.id, leaseKey: g.leaseKey }]);
        assert.ok(hb && 'leaseExpiration' in hb, JSON.stringify(hb));
        assert.ok(Date.parse(hb.leaseExpiration) > Date.now(), 'the expiry a runner is told is ahead of it');
        sent++;
        await new Promise((r) => setTimeout(r, 200));
      }
      const reached = await heartbeatUpdates();
      assert.ok(reached >= 3, `the lease was moved (${reached} of ${sent} heartbeats reached the workflow)`);
      assert.ok(reached <= sent / 2, `${reached} of ${sent} heartbeats reached the workflow`);
      assert.equal((await h.storage.getBuild(b.id))?.leaseResets, 0, 'the lease never expired while heartbeats came');
      // Canceled: the next heartbeat says so at once, though the lease is still far from its end.
      const far = await h.service.heartbeat(b.id, { leaseKey: g.leaseKey });
      assert.ok(far.leaseExpiration);
      await h.service.cancel(b.id, 'stop', 'user:test');
      await rejectsWith(h.service.heartbeat(b.id, { leaseKey: g.leaseKey }), 'BUILD_IS_COMPLETED');
    });
  });

  it('a heartbeat on a long lease still reaches the workflow once the last contact is older than the bound', async () => {
    // The bound is 30 s by default; 1 s here, on an hour-long lease the API could answer for 30 minutes.
    const service = h.newService({ workflowContactMs: 1000 });
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await service.schedule({ builder: builder('short-lease') });
      const g = await service.lease(b.id, { holder: 'alive', leaseDurationMs: 3600_000 });
      await service.start(b.id, { leaseKey: g.leaseKey });
      const handle = env.client.workflow.getHandle(buildWorkflowId(b.id));
      let sent = 0;
      const started = Date.now();
      while (Date.now() - started < 3500) {
        await service.heartbeat(b.id, { leaseKey: g.leaseKey, leaseDurationMs: 3600_000 });
        sent++;
        await new Promise((r) => setTimeout(r, 100));
      }
      const reached = ((await handle.fetchHistory()).events ?? []).filter(
        (e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name === 'heartbeat',
      ).length;
      assert.ok(reached >= 2, `${reached} of ${sent} heartbeats reached the workflow in 3.5 s`);
      assert.ok(reached <= sent / 4, `${reached} of ${sent} heartbeats reached the workflow`);
      await service.succeed(b.id, { leaseKey: g.leaseKey });
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
