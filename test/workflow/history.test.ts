/**
 * History stays bounded: a build heartbeating every 10 s for hours must continue as new before a
 * run's history reaches the server's continue-as-new suggestion (~4K events), carrying its state.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { buildWorkflowId } from '../../src/domain/buildId.ts';
import { type Harness, withDevHarness } from '../support/temporal.ts';

const HEARTBEATS = 900; // 10 s apart, that is 2.5 hours of a runner's heartbeats

describe('history bound', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  // Every heartbeat goes to the workflow here (the API answers none itself): the bound is the workflow's.
  withDevHarness(
    (e, x) => {
      env = e;
      h = x;
    },
    { answerHeartbeatsFromLeases: false },
  );

  it(`${HEARTBEATS} heartbeats: continues as new, no run over 4,096 events, lease survives`, async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const b = await h.service.schedule({ builder: { project: 'chromium', bucket: 'try', builder: 'linux-rel' } });
      const { leaseKey } = await h.service.lease(b.id, { leaseDurationMs: 600_000 });
      await h.service.start(b.id, { leaseKey });
      for (let i = 0; i < HEARTBEATS; i++) await h.service.heartbeat(b.id, { leaseKey });
      const done = await h.service.succeed(b.id, { leaseKey });
      assert.equal(done.status, 'SUCCESS');
      assert.equal(done.number, b.number);

      const runs: { runId: string; historyLength: number }[] = [];
      for await (const w of env.client.workflow.list({ query: `WorkflowId = '${buildWorkflowId(b.id)}'` })) {
        const d = await env.client.workflow.getHandle(w.workflowId, w.runId).describe();
        runs.push({ runId: w.runId, historyLength: d.historyLength });
      }
      assert.ok(runs.length >= 2, `expected continue-as-new, got ${runs.length} run(s)`);
      for (const r of runs) assert.ok(r.historyLength <= 4096, `run ${r.runId} has ${r.historyLength} events`);
      const total = runs.reduce((s, r) => s + r.historyLength, 0);
      // Each heartbeat costs a bounded handful of events (update accepted/completed, one workflow task, one upsert).
      assert.ok(total / HEARTBEATS < 10, `events per heartbeat ${total / HEARTBEATS}`);
    });
  });
});
