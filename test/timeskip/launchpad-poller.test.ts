/**
 * A git poller over hours of simulated time on the Java time-skipping test server, with real git:
 * hourly polls, a two-hour tree-stable timer (mode `newest`: one build of the newest commit once
 * the branch stopped moving, blaming every author), and continue-as-new keeping the mark.
 * (The Java test server has no Temporal Schedules; schedules spanning hours are backfilled on the
 * dev server in test/workflow/launchpad.test.ts.)
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { launchpadIds } from '../../src/launchpad/context.ts';
import { gitPollerWorkflow, pollerStateQuery } from '../../workflows/gitPoller.ts';
import { GitFixture } from '../support/git.ts';
import { buildsOf, launchpadHarness, type LaunchpadHarness } from '../support/launchpad.ts';
import { eventually } from '../support/temporal.ts';
import { startTimeSkippingEnv } from '../support/verification.ts';

const HOUR = 3600_000;

describe('git poller on the time-skipping server', () => {
  let env: TestWorkflowEnvironment;
  let h: LaunchpadHarness;
  let fx: GitFixture;
  before(async () => {
    env = await startTimeSkippingEnv();
    fx = new GitFixture('lp');
    fx.commit('master', 'init');
    h = await launchpadHarness(
      env,
      `
projects:
  - name: launchpad
    buckets: [{ name: ci, builders: [{ name: lp-devel }] }]
repositories: [{ name: launchpad, url: "${fx.url}" }]
schedulers:
  - { name: lp-master, kind: on-commit, repo: launchpad, branch: master, builders: [launchpad/ci/lp-devel],
      pollInterval: 1h, mode: newest, treeStableTimer: 2h }
`,
    );
  });
  after(async () => {
    await h?.close();
    await env?.teardown();
    fx?.cleanup();
  });

  it('builds the newest commit once the branch has been still for the tree-stable time, across continue-as-new', async () => {
    const worker = await h.newWorker();
    await worker.runUntil(async () => {
      const id = launchpadIds.poller(h.taskQueue, 'lp-master');
      const handle = await env.client.workflow.start(gitPollerWorkflow, {
        workflowId: id,
        taskQueue: h.taskQueue,
        args: [{ scheduler: 'lp-master', maxPollsPerRun: 3 }],
      });
      const state = () => handle.query(pollerStateQuery);
      await eventually(async () => (await state()).lastSeen === fx.tip('master'), 30_000, 'baseline');
      const c1 = fx.commit('master', 'one', {}, { name: 'Alice', email: 'alice@example.org' });
      await env.sleep(HOUR + 60_000); // poll at 1 h: c1 seen, the tree-stable clock starts
      await eventually(async () => (await state()).stable?.tip === c1, 30_000, 'c1 seen');
      const c2 = fx.commit('master', 'two', {}, { name: 'Bob', email: 'bob@example.org' });
      await env.sleep(HOUR); // poll at 2 h: the branch moved, the clock restarts
      await eventually(async () => (await state()).stable?.tip === c2, 30_000, 'c2 seen');
      await env.sleep(HOUR); // 3 h: still only one hour stable
      assert.equal(
        (await buildsOf(h.storage, 'launchpad/ci/lp-devel', c2)).length,
        0,
        'not yet: not stable long enough',
      );
      await env.sleep(HOUR + 60_000); // 4 h: two hours stable → one build of the newest
      const b = await eventually(
        async () => (await buildsOf(h.storage, 'launchpad/ci/lp-devel', c2))[0],
        30_000,
        'build of the newest',
      );
      assert.deepEqual(b.input.properties.blamelist, ['Alice <alice@example.org>', 'Bob <bob@example.org>']);
      assert.equal((await buildsOf(h.storage, 'launchpad/ci/lp-devel', c1)).length, 0, 'the older commit is not built');
      await env.sleep(5 * HOUR); // quiet hours: polls, nothing new, and the poller continues as new
      const s = await state();
      assert.equal(s.lastSeen, c2);
      assert.equal(s.commitsBuilt, 1);
      const d = await env.client.workflow.getHandle(id).describe();
      assert.notEqual(d.runId, handle.firstExecutionRunId, 'continued as new');
      assert.ok(d.historyLength < 200, `history stays short (${d.historyLength} events)`);
      const all = await h.storage.searchBuilds({ builder: { project: 'launchpad' } });
      assert.equal(all.builds.length, 1);
      await handle.terminate('test over');
    });
  });
});
