/**
 * A build whose workflow stopped on a nondeterminism error is restarted from storage (src/builds/repair.ts):
 * its held lease is reset, the old key is refused, and the build then runs to its end as usual; a
 * working build is never touched.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../../activities/index.ts';
import { type BuildRepairOptions, BuildRepairer } from '../../src/builds/repair.ts';
import { buildWorkflowId, newBuildId } from '../../src/domain/buildId.ts';
import { type Build } from '../../src/domain/build.ts';
import { replayFailure } from '../../workers/replay.ts';
import { workflowBundle } from '../../workers/worker.ts';
import { scheduledBuild } from '../support/builds.ts';
import { eventually, type Harness, rejectsWith, testLogger, withDevHarness } from '../support/temporal.ts';

const WORKFLOWS = fileURLToPath(new URL('../../workflows/index.ts', import.meta.url));
const DIVERGENT = fileURLToPath(new URL('../fixtures/divergentInterceptors.ts', import.meta.url));
const builder = (name: string) => ({ project: 'chromium', bucket: 'try', builder: name });

describe('repair of a build whose workflow cannot go on', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  withDevHarness((e, x) => {
    env = e;
    h = x;
  });

  /** A repairer on the harness, with `o` changed. */
  const repairerWith = (o: Partial<BuildRepairOptions> = {}) =>
    new BuildRepairer({ client: env.client, storage: h.storage, taskQueue: h.taskQueue, logger: testLogger, ...o });

  /** A worker whose workflows drift from Kiln's code: each build's history gets an extra timer. */
  const divergentWorker = () =>
    Worker.create({
      connection: env.nativeConnection,
      taskQueue: h.taskQueue,
      workflowsPath: WORKFLOWS,
      interceptors: { workflowModules: [DIVERGENT] },
      activities: createActivities({ storage: h.storage, logger: testLogger }),
    });

  /** A build leased and started on the divergent worker (its history no longer replays), then stopped. */
  const driftedStartedBuild = async (): Promise<Build> => {
    const divergent = await divergentWorker();
    return divergent.runUntil(async () => {
      const b = await h.service.schedule({ builder: builder('linux-rel') });
      const { leaseKey } = await h.service.lease(b.id, { holder: 'drifted', leaseDurationMs: 600_000 });
      await h.service.start(b.id, { leaseKey });
      return b;
    });
  };

  /** Storage takes the build's end, as when the server lost the task that wrote it. */
  const endInStorageOnly = async (id: string): Promise<void> => {
    const started = await h.storage.getBuild(id);
    assert.ok(started);
    const { leaseExpiration: _, leaseHolder: __, ...unleased } = started;
    await h.storage.recordBuild({
      ...unleased,
      status: 'SUCCESS',
      version: started.version + 1,
      endTime: started.updateTime,
    });
  };

  it('restarts it from storage: the lease is reset, the old key refused, and the build ends normally', async () => {
    const repairer = repairerWith({ overdueSecs: 1, minAttempts: 2 });
    // On a worker whose workflows drift from Kiln's code: the build's history gets an extra timer.
    const divergent = await divergentWorker();
    let b!: Build;
    let key!: string;
    await divergent.runUntil(async () => {
      b = await h.service.schedule({ builder: builder('short-lease') });
      key = (await h.service.lease(b.id, { holder: 'drifted' })).leaseKey;
      await h.service.start(b.id, { leaseKey: key });
    });
    assert.equal((await h.storage.getBuild(b.id))?.status, 'STARTED');

    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const handle = env.client.workflow.getHandle(buildWorkflowId(b.id));
      const brokenRunId = (await handle.describe()).runId;
      // The lease (2 s) expires; Kiln's code cannot replay the timer: the task fails, again and again.
      const repair = await eventually(
        async () => (await repairer.sweep()).find((r) => r.buildId === b.id),
        60_000,
        'the sweep to repair the build',
      );
      assert.equal(repair.brokenRunId, brokenRunId);
      assert.equal(repair.storedStatus, 'STARTED');
      assert.equal(repair.leaseReset, true);
      const broken = await env.client.workflow.getHandle(buildWorkflowId(b.id), brokenRunId).describe();
      assert.equal(broken.status.name, 'TERMINATED');

      // The new run reset the lease at once: offered again, one reset used, the old key dead.
      const again = await eventually(
        async () => {
          const s = await h.storage.getBuild(b.id);
          return s?.status === 'SCHEDULED' && s.leaseResets === 1 && s;
        },
        15_000,
        'the lease reset by the new run',
      );
      assert.ok(again.version > b.version);
      assert.ok(again.leaseGeneration > 1, `generation ${again.leaseGeneration}`);
      await rejectsWith(h.service.heartbeat(b.id, { leaseKey: key }), 'LEASE_EXPIRED');
      assert.ok(
        (await h.service.peek({ buckets: ['chromium/try'], builders: ['short-lease'] })).some((x) => x.id === b.id),
      );

      const fresh = await h.service.lease(b.id, { holder: 'second' });
      await h.service.start(b.id, { leaseKey: fresh.leaseKey });
      const done = await h.service.succeed(b.id, { leaseKey: fresh.leaseKey });
      assert.equal(done.status, 'SUCCESS');
      assert.equal(((await handle.result()) as Build).status, 'SUCCESS');
      assert.equal((await h.storage.getBuild(b.id))?.status, 'SUCCESS');
      // The new run's history is Kiln's own: it replays.
      await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, await handle.fetchHistory(), b.id);
      // Nothing left to repair, and a second look changes nothing.
      assert.equal(await repairer.repairIfBroken(buildWorkflowId(b.id)), undefined);
    });
  });

  it('repairs a broken run that has no task to fail yet: a query on it fails on replay', async () => {
    const repairer = repairerWith();
    const divergent = await divergentWorker();
    let b!: Build;
    let key!: string;
    await divergent.runUntil(async () => {
      b = await h.service.schedule({ builder: builder('linux-rel') });
      key = (await h.service.lease(b.id, { holder: 'drifted', leaseDurationMs: 600_000 })).leaseKey;
      await h.service.start(b.id, { leaseKey: key });
    });
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      // Nothing is due for 10 minutes, so no task fails; a call that went unanswered makes the API look.
      const repair = await repairer.repairIfBroken(buildWorkflowId(b.id));
      assert.ok(repair, 'repaired');
      assert.equal(repair.leaseReset, true);
      await eventually(async () => (await h.storage.getBuild(b.id))?.status === 'SCHEDULED', 15_000, 'lease reset');
      await rejectsWith(h.service.succeed(b.id, { leaseKey: key }), 'LEASE_EXPIRED');
      const fresh = await h.service.lease(b.id, { holder: 'second' });
      assert.equal((await h.service.succeed(b.id, { leaseKey: fresh.leaseKey })).status, 'SUCCESS');
    });
  });

  it('repairs a run whose failures the history does not record, once its history fails to replay', async () => {
    // After a task timed out, the server records none of the failed attempts that follow and refuses
    // queries ("Workflow Task in failed state"). Here no worker answers the query at all: only the
    // replay (minAttempts 0: the attempts are not what is tested) can tell a broken run from a waiting one.
    const repairer = repairerWith({ minAttempts: 0, replayFailure });
    const drifted = await driftedStartedBuild();
    const working = await h.service.schedule({ builder: builder('linux-rel') });
    assert.equal(await repairer.repairIfBroken(buildWorkflowId(working.id)), undefined, 'a history that replays');
    const repair = await repairer.repairIfBroken(buildWorkflowId(drifted.id));
    assert.ok(repair, 'repaired');
    assert.match(repair.why, /does not replay/);
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      await eventually(
        async () => (await h.storage.getBuild(drifted.id))?.status === 'SCHEDULED',
        15_000,
        'lease reset',
      );
      const fresh = await h.service.lease(drifted.id, { holder: 'second' });
      assert.equal((await h.service.succeed(drifted.id, { leaseKey: fresh.leaseKey })).status, 'SUCCESS');
      await h.service.cancel(working.id, undefined, undefined);
    });
  });

  it('finds a broken run of a build storage holds as ended (no lease, no call) and ends it with that result', async () => {
    const repairer = repairerWith({ overdueSecs: 0 });
    const b = await driftedStartedBuild();
    await repairer.sweep(); // the first sweep starts reading storage's change feed here
    await endInStorageOnly(b.id);
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const repair = await eventually(
        async () => (await repairer.sweep()).find((r) => r.buildId === b.id),
        30_000,
        'the sweep to repair the ended build',
      );
      assert.equal(repair.storedStatus, 'SUCCESS');
      assert.equal(repair.leaseReset, false);
      const result = (await env.client.workflow.getHandle(buildWorkflowId(b.id)).result()) as Build;
      assert.equal(result.status, 'SUCCESS');
      assert.deepEqual(await h.storage.getBuild(b.id), result);
    });
  });

  it('finds a broken run whose build ended in storage before the repairer started (no feed saw it)', async () => {
    const b = await driftedStartedBuild();
    // Storage took the build's end while no repairer followed the change feed.
    await endInStorageOnly(b.id);
    await new Promise((r) => setTimeout(r, 1100)); // visibility filters on whole seconds
    // A repairer started now reads the feed from here on: only its full pass over running workflows can find the build.
    const repairer = repairerWith({ overdueSecs: 0, fullPassEvery: 1_000_000 });
    assert.ok((await repairer.candidates()).includes(buildWorkflowId(b.id)), 'the first sweep makes a full pass');
    assert.ok(!(await repairer.candidates()).includes(buildWorkflowId(b.id)), 'the next one reads only the feed');
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const repair = await repairer.repairIfBroken(buildWorkflowId(b.id));
      assert.equal(repair?.storedStatus, 'SUCCESS');
      const result = (await env.client.workflow.getHandle(buildWorkflowId(b.id)).result()) as Build;
      assert.equal(result.status, 'SUCCESS');
    });
  });

  it('looks at a build whose lease ran out long ago in storage, though visibility never saw the lease', async () => {
    const repairer = repairerWith({ overdueSecs: 30 });
    const id = newBuildId(Date.now(), 7);
    const ago = (ms: number) => new Date(Date.now() - ms).toISOString();
    // As a run leaves it when it stops right after its lease write: no search attribute was upserted.
    await h.storage.recordBuild(
      scheduledBuild(id, builder('linux-rel'), ago(120_000), { leaseHolder: 'gone', leaseExpiration: ago(60_000) }),
    );
    assert.ok((await repairer.candidates()).includes(buildWorkflowId(id)), 'a candidate from storage');
    assert.ok(!(await repairerWith({ overdueSecs: 120 }).candidates()).includes(buildWorkflowId(id)), 'not yet');
    // No such workflow: the sweep logs it and goes on.
    assert.deepEqual(
      (await repairer.sweep()).filter((r) => r.buildId === id),
      [],
    );
  });

  it('leaves a working build alone, even one whose lease ran out long ago in visibility', async () => {
    const repairer = repairerWith({ overdueSecs: 0, minAttempts: 1 });
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder: builder('linux-rel') });
      const { leaseKey } = await h.service.lease(b.id, { leaseDurationMs: 120_000 });
      await h.service.start(b.id, { leaseKey });
      const runId = (await env.client.workflow.getHandle(buildWorkflowId(b.id)).describe()).runId;
      assert.equal(await repairer.repairIfBroken(buildWorkflowId(b.id)), undefined);
      await repairer.sweep();
      const d = await env.client.workflow.getHandle(buildWorkflowId(b.id)).describe();
      assert.equal(d.runId, runId);
      assert.equal(d.status.name, 'RUNNING');
      assert.equal((await h.service.succeed(b.id, { leaseKey })).status, 'SUCCESS');
    });
  });
});
