/**
 * Durability at depth, below the HTTP edge (which refuses these inputs itself): a build storage can
 * never hold ends INFRA_FAILURE instead of retrying forever; tags longer than Temporal's
 * search-attribute limit stay in storage; a retried report gets the ended build only with the key
 * that ended it; lease keys a build never handed out are refused without asking its workflow.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { type Build, isEnded } from '../../src/domain/build.ts';
import { buildWorkflowId } from '../../src/domain/buildId.ts';
import { KilnTags, SEARCH_ATTRIBUTE_VALUE_LIMIT_BYTES } from '../../src/domain/searchAttributes.ts';
import { eventually, type Harness, rejectsWith, withDevHarness } from '../support/temporal.ts';

const linux = { project: 'chromium', bucket: 'try', builder: 'linux-rel' };

describe('durability below the edge', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  withDevHarness((e, x) => {
    env = e;
    h = x;
  });

  /** The build once storage shows it ended. */
  const storedEnd = (id: string): Promise<Build> =>
    eventually(
      async () => {
        const b = await h.storage.getBuild(id);
        return b && isEnded(b.status) ? b : undefined;
      },
      30_000,
      `build ${id} ended in storage`,
    );

  it('fails a build storage cannot hold (NUL in a property) visibly, instead of retrying forever', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder: linux, properties: { p: 'x\u0000y', q: 'fine' } });
      const ended = await storedEnd(b.id);
      assert.equal(ended.status, 'INFRA_FAILURE');
      assert.match(ended.summaryMarkdown ?? '', /could not store this build/);
      assert.deepEqual(ended.input.properties, { p: 'x\uFFFDy', q: 'fine' });
      assert.ok(ended.events.some((e) => e.kind === 'STORAGE_REFUSED'));
      // Not a zombie: gone from peek, and the workflow has closed.
      assert.ok(!(await h.service.peek({ buckets: ['chromium/try'], limit: 100 })).some((x) => x.id === b.id));
      const result = (await env.client.workflow.getHandle(buildWorkflowId(b.id)).result()) as Build;
      assert.equal(result.status, 'INFRA_FAILURE');
    });
  });

  it('fails a build whose cancel reason, summary or lease holder storage cannot hold', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const canceled = await h.service.schedule({ builder: linux });
      await h.service.cancel(canceled.id, 'bye\u0000', 'tester');
      const c = await storedEnd(canceled.id);
      assert.equal(c.status, 'INFRA_FAILURE');
      assert.equal(c.canceledBy, 'tester');
      await rejectsWith(h.service.lease(canceled.id, {}), 'BUILD_IS_COMPLETED');

      const succeeded = await h.service.schedule({ builder: linux });
      const g = await h.service.lease(succeeded.id, {});
      const answer = await h.service.succeed(succeeded.id, { leaseKey: g.leaseKey, summaryMarkdown: 'ok\u0000' });
      assert.equal(answer.status, 'INFRA_FAILURE', 'the report is answered, with the failure');
      assert.equal((await storedEnd(succeeded.id)).status, 'INFRA_FAILURE');

      const held = await h.service.schedule({ builder: linux });
      await h.service.lease(held.id, { holder: 'h\ud800' });
      const x = await storedEnd(held.id);
      assert.equal(x.status, 'INFRA_FAILURE');
      assert.equal(x.leaseHolder, undefined);
    });
  });

  it('keeps tags past Temporal’s search-attribute limit in storage, and shows in KilnTags what fits', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const tags = Array.from({ length: 256 }, (_, i) => `t${i}:${'v'.repeat(1000)}`);
      const b = await h.service.schedule({ builder: linux, tags });
      const stored = await eventually(() => h.storage.getBuild(b.id), 30_000, 'stored');
      assert.equal(stored.tags.length, 257); // plus builder:linux-rel
      assert.deepEqual(
        (await h.service.search({ tags: ['t200:' + 'v'.repeat(1000)] })).builds.map((x) => x.id),
        [b.id],
      );
      const shown = (await env.client.workflow.getHandle(buildWorkflowId(b.id)).describe()).typedSearchAttributes.get(
        KilnTags,
      );
      assert.ok(shown && shown.length >= 1 && shown.length < 257, `KilnTags holds ${shown?.length} tags`);
      assert.ok(Buffer.byteLength(JSON.stringify(shown)) <= SEARCH_ATTRIBUTE_VALUE_LIMIT_BYTES);
      await h.service.cancel(b.id, undefined, undefined);
    });
  });

  it('answers a retried report from storage only with the exact key that ended the build', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder: linux, properties: { secret: 's3cr3t' } });
      const g = await h.service.lease(b.id, {});
      await h.service.succeed(b.id, { leaseKey: g.leaseKey, output: { properties: { out: 1 } } });
      await env.client.workflow.getHandle(buildWorkflowId(b.id)).result(); // closed: storage answers now
      assert.equal((await h.service.succeed(b.id, { leaseKey: g.leaseKey })).status, 'SUCCESS');
      for (const forged of ['1.forged', `${g.leaseKey.split('.')[0]}.x`, `${g.leaseKey}x`]) {
        await rejectsWith(h.service.succeed(b.id, { leaseKey: forged }), 'BUILD_IS_COMPLETED');
        await rejectsWith(h.service.fail(b.id, { leaseKey: forged }), 'BUILD_IS_COMPLETED');
      }
      // Same key, other outcome: refused too.
      await rejectsWith(h.service.fail(b.id, { leaseKey: g.leaseKey }), 'BUILD_IS_COMPLETED');
    });
  });

  it('refuses keys a build never handed out without a workflow round trip (no worker needed)', async () => {
    let b: Build | undefined;
    let key = '';
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      b = await h.service.schedule({ builder: linux });
      key = (await h.service.lease(b.id, { leaseDurationMs: 3_600_000 })).leaseKey;
      await h.service.start(b.id, { leaseKey: key });
    });
    assert.ok(b);
    const id = b.id;
    // No worker runs now: a workflow could not answer, so these answers come from storage alone.
    await rejectsWith(h.service.heartbeat(id, { leaseKey: `${key}x` }), 'LEASE_EXPIRED');
    await rejectsWith(h.service.start(id, { leaseKey: '1.forged' }), 'LEASE_EXPIRED');
    await rejectsWith(h.service.succeed(id, { leaseKey: '1.forged' }), 'LEASE_EXPIRED');
    await rejectsWith(h.service.checkLogWriter(id, '1.forged'), 'LEASE_EXPIRED');
    const batch = await h.service.heartbeatBatch(
      Array.from({ length: 100 }, (_, i) => ({ buildId: id, leaseKey: `1.forged-${i}` })),
    );
    assert.ok(batch.every((r) => 'error' in r && r.error.code === 'LEASE_EXPIRED'));
    // The real key still needs its workflow; with none running it is UNAVAILABLE, not a wrong answer.
    const fast = await h.service.heartbeat(id, { leaseKey: key }).catch((e: unknown) => e);
    assert.ok(fast instanceof Error && 'code' in fast && fast.code === 'UNAVAILABLE', String(fast));
    const again = await h.newWorker();
    await again.runUntil(async () => {
      await h.service.succeed(id, { leaseKey: key });
    });
  });
});
