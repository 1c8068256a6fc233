/**
 * The Swarming-mode build rules (`SwarmingMachine`) without Temporal: task results move the build,
 * Kiln's own endings mark the task for CancelTask (Swarming's own do not), the sync timer.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isEnded } from '../../src/domain/build.ts';
import { initialSwarmingState, SwarmingMachine } from '../../src/domain/swarming/machine.ts';
import { TASK_STATES } from '../../src/domain/swarming/status.ts';
import { scheduledBuild } from '../support/builds.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const TIMEOUTS = {
  schedulingTimeoutMs: 60_000,
  executionTimeoutMs: 600_000,
  defaultLeaseMs: 0,
  maxLeaseMs: 0,
  maxLeaseResets: 0,
};
const SYNC_MS = 10_000;

function machine() {
  const b = scheduledBuild(
    '8922054662172510001',
    { project: 'p', bucket: 'ci', builder: 'x' },
    new Date(T0).toISOString(),
  );
  const m = new SwarmingMachine(initialSwarmingState(b), TIMEOUTS, true, SYNC_MS);
  m.creating();
  m.taskCreated(
    {
      taskId: 't1',
      buildTags: ['swarming_task_id:t1'],
      url: 'https://swarm/t1',
      template: { canary: false, revision: 'r1' },
    },
    T0,
  );
  return { m, b };
}

describe('SwarmingMachine', () => {
  it('records the task, then RUNNING starts the build and COMPLETED ends it from the task', () => {
    const { m, b } = machine();
    assert.deepEqual([b.url, b.tags, m.st.taskId], ['https://swarm/t1', ['swarming_task_id:t1'], 't1']);
    assert.match(b.events.at(-1)?.message ?? '', /task t1 created \(stable template r1\)/);
    assert.equal(m.apply({ taskId: 't1', state: 'PENDING' }, T0 + 1).changed, false);
    const started = m.apply(
      { taskId: 't1', state: 'RUNNING', botId: 'bot-1', startedTs: '2026-01-01T00:00:01.000Z' },
      T0 + 2,
    );
    assert.deepEqual([started.changed, b.status, b.startTime], [true, 'STARTED', '2026-01-01T00:00:01.000Z']);
    assert.equal(m.apply({ taskId: 't1', state: 'RUNNING' }, T0 + 3).changed, false);
    const done = m.apply({ taskId: 't1', state: 'COMPLETED', failure: true, exitCode: 3 }, T0 + 4);
    assert.deepEqual(
      [done.ended, b.status, b.summaryMarkdown],
      [true, 'FAILURE', 'Swarming task COMPLETED with exit code 3'],
    );
    assert.equal(m.st.cancelTask, false, 'Swarming ended it: no CancelTask');
    assert.equal(m.apply({ taskId: 't1', state: 'KILLED' }, T0 + 5).changed, false, 'an ended build stays');
  });

  it('ignores an INVALID result and says why', () => {
    const { m, b } = machine();
    const step = m.apply({ taskId: 't1', state: 'INVALID' }, T0 + 1);
    assert.equal(step.changed, false);
    assert.match(step.ignored ?? '', /INVALID/);
    assert.equal(b.status, 'SCHEDULED');
  });

  it('cancel, the timeouts and a refused store end the build and mark the task for CancelTask', () => {
    const a = machine();
    assert.equal(a.m.cancel({ canceledBy: 'op' }, T0).ended, true);
    assert.equal(a.m.st.cancelTask, true);

    const s = machine();
    assert.equal(s.m.fireDeadlines(T0 + 59_999).changed, false);
    assert.equal(s.m.fireDeadlines(T0 + 60_000).ended, true);
    assert.deepEqual([s.b.statusDetails, s.m.st.cancelTask], [{ timeout: true, resourceExhaustion: true }, true]);

    const e = machine();
    e.m.apply({ taskId: 't1', state: 'RUNNING', startedTs: new Date(T0).toISOString() }, T0);
    assert.equal(e.m.nextWakeMs(), T0 + SYNC_MS);
    assert.equal(e.m.fireDeadlines(T0 + 600_000).ended, true);
    assert.deepEqual([e.b.statusDetails, e.m.st.cancelTask], [{ timeout: true }, true]);

    const u = machine();
    assert.equal(u.m.failUnstorable('cannot store', T0).ended, true);
    assert.deepEqual([u.b.status, u.m.st.cancelTask], ['INFRA_FAILURE', true]);
  });

  it('polls on a notification for its task or when the sync timer is due, never for another task', () => {
    const { m } = machine();
    assert.equal(m.taskToPoll(T0 + 1), undefined);
    assert.equal(m.notified('other'), false);
    assert.equal(m.taskToPoll(T0 + 1), undefined);
    assert.equal(m.notified('t1'), true);
    assert.equal(m.taskToPoll(T0 + 1), 't1');
    m.polling(T0 + 1);
    assert.equal(m.taskToPoll(T0 + 2), undefined);
    assert.equal(m.taskToPoll(T0 + 1 + SYNC_MS), 't1');
  });

  it('property: whatever Swarming reports, in any order, the build ends at most once and never leaves its end', () => {
    const result = fc.record({
      state: fc.constantFrom(...TASK_STATES),
      failure: fc.boolean(),
      internalFailure: fc.boolean(),
      at: fc.integer({ min: 0, max: 700_000 }),
    });
    fc.assert(
      fc.property(fc.array(result, { maxLength: 30 }), fc.boolean(), (results, cancelFirst) => {
        const { m, b } = machine();
        let ends = 0;
        if (cancelFirst && m.cancel({}, T0).ended) ends++;
        let endedAs: string | undefined;
        for (const r of results.sort((x, y) => x.at - y.at)) {
          if (m.apply({ taskId: 't1', ...r }, T0 + r.at).ended) ends++;
          if (m.fireDeadlines(T0 + r.at).ended) ends++;
          if (endedAs !== undefined) assert.equal(`${b.status}${b.endTime}`, endedAs);
          if (isEnded(b.status)) endedAs = `${b.status}${b.endTime}`;
          assert.ok(ends <= 1);
        }
        assert.equal(isEnded(b.status), ends === 1);
      }),
      { numRuns: 300 },
    );
  });
});
