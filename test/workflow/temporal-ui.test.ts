/**
 * What the Temporal UI shows of ended builds. Every ended build's workflow is Completed (the
 * workflow did its job, whatever the build's outcome), so the outcome must show elsewhere: the
 * workflow's current details (the workflow page) name it, and the list filters and saved views the
 * README documents (`KilnStatus`) tell a failed build from a passed one, on a real dev server.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { buildWorkflowId } from '../../src/domain/buildId.ts';
import { eventually, type Harness, withDevHarness } from '../support/temporal.ts';

const linux = { project: 'chromium', bucket: 'try', builder: 'linux-rel' };

describe('ended builds in the Temporal UI', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  withDevHarness((e, x) => {
    env = e;
    h = x;
  });

  it('names the outcome in current details, and the documented KilnStatus filters tell FAILURE from SUCCESS', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const run = async (outcome: 'succeed' | 'fail' | 'cancel') => {
        const b = await h.service.schedule({ builder: linux, tags: [`ui-test:${outcome}`] });
        if (outcome === 'cancel') return h.service.cancel(b.id, 'not needed', 'ui-test');
        const g = await h.service.lease(b.id, { holder: 'ui-test' });
        await h.service.start(b.id, { leaseKey: g.leaseKey });
        return outcome === 'succeed'
          ? h.service.succeed(b.id, { leaseKey: g.leaseKey })
          : h.service.fail(b.id, { leaseKey: g.leaseKey, summaryMarkdown: '3 tests failed' });
      };
      const passed = await run('succeed');
      const failed = await run('fail');
      const canceled = await run('cancel');
      for (const [b, status, mark] of [
        [passed, 'SUCCESS', '✅'],
        [failed, 'FAILURE', '❌'],
        [canceled, 'CANCELED', '⛔'],
      ] as const) {
        const handle = env.client.workflow.getHandle(buildWorkflowId(b.id));
        await eventually(
          async () => (await handle.describe()).status.name === 'COMPLETED',
          15_000,
          'the workflow to complete',
        );
        // What the workflow page shows under "Current details" (the UI reads it with this query).
        const meta = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
        assert.match(meta.currentDetails ?? '', new RegExp(`${mark} ${status}`), `${status}: ${meta.currentDetails}`);
      }
      const meta = await env.client.workflow
        .getHandle(buildWorkflowId(failed.id))
        .query<{ currentDetails?: string }>('__temporal_workflow_metadata');
      assert.match(meta.currentDetails ?? '', /3 tests failed/);

      // The README's saved view "Failed builds": every build is Completed, only KilnStatus differs.
      const ids = async (query: string) => {
        const found: string[] = [];
        for await (const w of env.client.workflow.list({ query })) found.push(w.workflowId);
        return found;
      };
      const failedView = `WorkflowType = 'buildWorkflow' AND KilnStatus IN ('FAILURE', 'INFRA_FAILURE')`;
      await eventually(async () => (await ids(failedView)).includes(buildWorkflowId(failed.id)), 15_000, 'visibility');
      const inFailed = await ids(failedView);
      assert.ok(!inFailed.includes(buildWorkflowId(passed.id)));
      assert.ok(!inFailed.includes(buildWorkflowId(canceled.id)));
      const completed = await ids(`WorkflowType = 'buildWorkflow' AND ExecutionStatus = 'Completed'`);
      for (const b of [passed, failed, canceled]) assert.ok(completed.includes(buildWorkflowId(b.id)));
    });
  });
});
