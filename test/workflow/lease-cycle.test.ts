/**
 * The lease-mode life of a build on a real Temporal dev server: schedule → lease → start →
 * heartbeat → succeed/fail, racing leasers, requestId idempotency, priority changes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { buildWorkflowId } from '../../src/domain/buildId.ts';
import { KilnError } from '../../src/domain/errors.ts';
import { KilnLastHeartbeatAt, KilnStatus } from '../../src/domain/searchAttributes.ts';
import { losingScheduleWrites } from '../support/builds.ts';
import { eventually, type Harness, rejectsWith, testLogger, withDevHarness } from '../support/temporal.ts';
import { createKilnWorker } from '../../workers/worker.ts';

const linux = { project: 'chromium', bucket: 'try', builder: 'linux-rel' };

describe('lease cycle', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  withDevHarness((e, x) => {
    env = e;
    h = x;
  });

  it('runs schedule → lease → start → heartbeat → succeed, visible in storage at each step', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder: linux, tags: ['buildset:commit/abc'], properties: { a: 1 } });
      assert.equal(b.status, 'SCHEDULED');
      assert.equal(b.number, 1);
      const peeked = await eventually(async () => {
        const p = await h.service.peek({ buckets: ['chromium/try'], dimensions: ['os:Linux'] });
        return p.some((x) => x.id === b.id) && p;
      });
      assert.ok(peeked);
      // A runner without the build's dimensions does not see it.
      assert.equal((await h.service.peek({ buckets: ['chromium/try'], dimensions: ['os:Mac'] })).length, 0);

      const grant = await h.service.lease(b.id, { holder: 'runner-1', leaseDurationMs: 30_000 });
      assert.match(grant.leaseKey, /^1\./);
      assert.equal((await h.service.peek({ buckets: ['chromium/try'], dimensions: ['os:Linux'] })).length, 0);

      const started = await h.service.start(b.id, { leaseKey: grant.leaseKey, url: 'http://runner/1' });
      assert.equal(started.status, 'STARTED');
      assert.equal((await h.storage.getBuild(b.id))?.status, 'STARTED');

      const hb = await h.service.heartbeat(b.id, { leaseKey: grant.leaseKey, leaseDurationMs: 60_000 });
      assert.ok(Date.parse(hb.leaseExpiration) > Date.parse(grant.leaseExpiration));

      const done = await h.service.succeed(b.id, { leaseKey: grant.leaseKey, output: { properties: { got: 'x' } } });
      assert.equal(done.status, 'SUCCESS');
      const stored = await h.storage.getBuild(b.id);
      assert.equal(stored?.status, 'SUCCESS');
      assert.deepEqual(stored?.output?.properties, { got: 'x' });
      // A retried succeed with the same key answers the same; a heartbeat tells the runner to stop.
      assert.equal((await h.service.succeed(b.id, { leaseKey: grant.leaseKey })).status, 'SUCCESS');
      await rejectsWith(h.service.heartbeat(b.id, { leaseKey: grant.leaseKey }), 'BUILD_IS_COMPLETED');
      await rejectsWith(h.service.fail(b.id, { leaseKey: grant.leaseKey }), 'BUILD_IS_COMPLETED');
      // Search finds it by tag and by buildset, newest first.
      const page = await h.service.search({ buildset: 'commit/abc' });
      assert.deepEqual(
        page.builds.map((x) => x.id),
        [b.id],
      );
      // The store that first held the ended build also announced its end: no local activity of its own.
      const history = await env.client.workflow.getHandle(buildWorkflowId(b.id)).fetchHistory();
      const markers = (history.events ?? []).flatMap((e) => {
        const m = e.markerRecordedEventAttributes;
        const data = m?.details?.['data']?.payloads?.[0]?.data ?? m?.details?.['patch-data']?.payloads?.[0]?.data;
        return m && data ? [JSON.parse(Buffer.from(data).toString()) as { activity_type?: string; id?: string }] : [];
      });
      assert.deepEqual(
        markers.filter((x) => x.activity_type !== undefined).map((x) => x.activity_type),
        ['recordBuild', 'recordBuild', 'recordBuild', 'recordBuild'],
      );
      // One patch marker (the patch set) stands for every earlier patch: no marker, no upsert each.
      assert.deepEqual(
        markers.filter((x) => x.activity_type === undefined).map((x) => x.id),
        ['kiln-patch-set-1'],
      );
      const upserts = (history.events ?? []).filter((e) => e.upsertWorkflowSearchAttributesEventAttributes);
      // The patch set's, then one per stored transition that changed one (not the schedule's: the start set those).
      assert.deepEqual(
        upserts.map((e) =>
          Object.keys(e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields ?? {}).sort(),
        ),
        [
          ['TemporalChangeVersion'],
          ...Array.from({ length: 3 }, () => [
            'KilnLastHeartbeatAt',
            'KilnLeaseExpiresAt',
            'KilnLeaseHolder',
            'KilnStatus',
          ]),
        ],
      );
      const visible = (await env.client.workflow.getHandle(buildWorkflowId(b.id)).describe()).typedSearchAttributes;
      assert.equal(visible.get(KilnStatus), 'SUCCESS');
    });
  });

  it("puts the holder's last contact in visibility on lease and start; heartbeats refresh it at most every 15 s", async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder: linux });
      const handle = env.client.workflow.getHandle(buildWorkflowId(b.id));
      const contact = async () => (await handle.describe()).typedSearchAttributes.get(KilnLastHeartbeatAt);
      const upserts = async () =>
        ((await handle.fetchHistory()).events ?? []).filter((e) => e.upsertWorkflowSearchAttributesEventAttributes)
          .length;
      const g = await h.service.lease(b.id, { holder: 'r' });
      const leasedAt = await eventually(contact, 15_000, 'KilnLastHeartbeatAt after lease');
      await h.service.start(b.id, { leaseKey: g.leaseKey });
      const before = await upserts();
      for (let i = 0; i < 3; i++) await h.service.heartbeat(b.id, { leaseKey: g.leaseKey });
      assert.equal(await upserts(), before, 'heartbeats within 15 s of the last contact add no upsert');
      const startedAt = await contact();
      assert.ok(startedAt && startedAt.getTime() >= leasedAt.getTime());
      await h.service.succeed(b.id, { leaseKey: g.leaseKey });
    });
  });

  it('answers schedule once the build is stored, with or without a worker; a lost API write is made good by the workflow', async () => {
    const visible = async (id: string) =>
      (await h.service.peek({ buckets: ['chromium/try'], dimensions: ['os:Linux'] })).some((x) => x.id === id);
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder: linux });
      assert.equal((await h.storage.getBuild(b.id))?.status, 'SCHEDULED', 'stored before schedule returned');
      assert.ok(await visible(b.id), 'leasable before schedule returned');
      const g = await h.service.lease(b.id, { holder: 'r' });
      await h.service.succeed(b.id, { leaseKey: g.leaseKey });
    });
    // No worker: schedule stores the build all the same (its workflow exists, so it is not lost)…
    const late = await h.service.schedule({ builder: linux });
    assert.deepEqual(await h.storage.getBuild(late.id), JSON.parse(JSON.stringify(late)), 'stored by schedule itself');
    assert.ok(await visible(late.id), 'leasable with no worker running');
    // …and an API that dies between starting the workflow and its write (here: the write fails) loses
    // nothing either: the workflow's first write stores the build once a worker runs it.
    const unstored = await h.newService({ storage: losingScheduleWrites(h.storage) }).schedule({ builder: linux });
    assert.equal(await h.storage.getBuild(unstored.id), undefined);
    await rejectsWith(h.service.get(unstored.id), 'UNAVAILABLE'); // a clear answer, not a hang
    const again = await h.newWorker();
    await again.runUntil(async () => {
      await eventually(() => visible(unstored.id), 15_000, 'stored once a worker runs');
      for (const id of [late.id, unstored.id]) {
        const g = await h.service.lease(id, { holder: 'r' });
        assert.equal((await h.service.succeed(id, { leaseKey: g.leaseKey })).status, 'SUCCESS');
      }
    });
    const events = (await env.client.workflow.getHandle(buildWorkflowId(late.id)).fetchHistory()).events ?? [];
    assert.equal(
      events.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes).length,
      2,
      'lease and succeed: schedule sends the workflow no update',
    );
  });

  it('waits for the workers once first tasks pile up on the task queue, instead of growing the pile', async () => {
    // A queue of its own, with no worker yet: every schedule leaves one first task on it. 64: the
    // builds a process may answer for ahead of their first task (SCHEDULE_AHEAD_LIMIT).
    const queue = `${h.taskQueue}-backlog`;
    const service = h.newService({ taskQueue: queue });
    const piled: string[] = [];
    for (let i = 0; i < 64; i++) piled.push((await service.schedule({ builder: linux })).id);
    for (const id of piled) assert.ok(await h.storage.getBuild(id), 'stored by schedule while the pile was small');
    await new Promise((r) => setTimeout(r, 300)); // the service looks at its builds' first tasks at most every 200 ms
    const t0 = Date.now();
    const waited = await service.schedule({ builder: linux });
    const ms = Date.now() - t0;
    console.log(`schedule with ${piled.length} first tasks waiting and no worker: ${ms} ms`);
    assert.equal(await h.storage.getBuild(waited.id), undefined, 'waited for a worker that never came: not stored yet');
    assert.ok(ms >= 2500, `it waited for the workflow's first write (${ms} ms)`);
    const worker = await createKilnWorker({
      connection: env.nativeConnection,
      namespace: env.namespace ?? 'default',
      taskQueue: queue,
      deps: { storage: h.storage, logger: testLogger },
    });
    await worker.runUntil(async () => {
      await eventually(
        async () => (await h.storage.getBuild(waited.id)) !== undefined,
        30_000,
        'stored once a worker runs',
      );
      const t1 = Date.now();
      const fast = await service.schedule({ builder: linux });
      console.log(`schedule once the worker caught up: ${Date.now() - t1} ms`);
      assert.ok(await h.storage.getBuild(fast.id));
      for (const id of [...piled, waited.id, fast.id]) await service.cancel(id, undefined, undefined);
    });
  });

  it('lets exactly one of N concurrent leasers win; the rest get BUILD_IS_LEASED', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder: linux });
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) => h.service.lease(b.id, { holder: `runner-${i}` })),
      );
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      assert.equal(won.length, 1);
      assert.equal(lost.length, 7);
      for (const l of lost) {
        assert.ok(l.reason instanceof KilnError);
        assert.equal(l.reason.code, 'BUILD_IS_LEASED');
      }
    });
  });

  it('answers 16 leasers racing for each of 20 builds with one grant and refusals, never INTERNAL', async () => {
    // Under such a race the server drops some updates unprocessed (`UnprocessedUpdate`); those are sent
    // again, not reported as a bug in the workflow (they were a 500 in the lease-next benchmark).
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const codes: Record<string, number> = {};
      for (let round = 0; round < 20; round++) {
        const b = await h.service.schedule({ builder: linux });
        const results = await Promise.allSettled(
          Array.from({ length: 16 }, (_, i) => h.service.lease(b.id, { holder: `runner-${i}` })),
        );
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, `round ${round}: one winner`);
        for (const r of results) {
          if (r.status === 'fulfilled') continue;
          const code = r.reason instanceof KilnError ? r.reason.code : String(r.reason);
          codes[code] = (codes[code] ?? 0) + 1;
        }
      }
      assert.deepEqual(
        Object.keys(codes).filter((c) => c !== 'BUILD_IS_LEASED' && c !== 'UNAVAILABLE'),
        [],
        JSON.stringify(codes),
      );
    });
  });

  it('fail with INFRA_FAILURE and BUILD_FAILURE end the build accordingly; wrong keys are refused', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const a = await h.service.schedule({ builder: linux });
      const ga = await h.service.lease(a.id, {});
      await rejectsWith(h.service.start(a.id, { leaseKey: 'nope' }), 'LEASE_EXPIRED');
      await h.service.start(a.id, { leaseKey: ga.leaseKey });
      assert.equal((await h.service.fail(a.id, { leaseKey: ga.leaseKey })).status, 'FAILURE');

      const c = await h.service.schedule({ builder: linux });
      const gc = await h.service.lease(c.id, {});
      const ended = await h.service.fail(c.id, {
        leaseKey: gc.leaseKey,
        failureReason: 'INFRA_FAILURE',
        summaryMarkdown: 'disk full',
      });
      assert.equal(ended.status, 'INFRA_FAILURE');
      assert.equal(ended.summaryMarkdown, 'disk full');
    });
  });

  it('returns the same build for the same requestId, and numbers builds per builder', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const [x, y] = await Promise.all([
        h.service.schedule({ builder: linux, requestId: 'req-42' }),
        h.service.schedule({ builder: linux, requestId: 'req-42' }),
      ]);
      assert.equal(x.id, y.id);
      const z = await h.service.schedule({ builder: linux, requestId: 'req-43' });
      assert.notEqual(z.id, x.id);
      assert.equal(z.number, x.number + 1);
      const all = await h.service.search({ tags: ['builder:linux-rel'], limit: 1000 });
      assert.equal(all.builds.filter((b) => b.id === x.id).length <= 1, true);
      const page = await eventually(async () => {
        const p = await h.service.search({ builder: linux, limit: 1000 });
        return p.builds.some((b) => b.id === z.id) && p;
      });
      assert.equal(new Set(page.builds.map((b) => b.number)).size, page.builds.length);
    });
  });

  it('a retried lease with the same requestId returns the same grant', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder: linux });
      const g1 = await h.service.lease(b.id, { requestId: 'lease-1' });
      const g2 = await h.service.lease(b.id, { requestId: 'lease-1' });
      assert.equal(g1.leaseKey, g2.leaseKey);
      await rejectsWith(h.service.lease(b.id, { requestId: 'lease-2' }), 'BUILD_IS_LEASED');
    });
  });

  it('changes priority while SCHEDULED, and peek honours it', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const low = await h.service.schedule({ builder: linux, priority: 100 });
      const high = await h.service.schedule({ builder: linux, priority: 50 });
      await eventually(async () => (await h.storage.getBuild(high.id)) !== undefined);
      await eventually(async () => (await h.storage.getBuild(low.id)) !== undefined);
      await h.service.setPriority(low.id, 10);
      const p = await h.service.peek({ buckets: ['chromium/try'], dimensions: ['os:Linux'], limit: 100 });
      const ids = p.map((x) => x.id);
      assert.ok(ids.indexOf(low.id) < ids.indexOf(high.id), 'reprioritized build comes first');
      await rejectsWith(h.service.setPriority(low.id, 999), 'INVALID_ARGUMENT');
    });
  });
});
