/**
 * Which workflow task failures make the API's repair restart a build from storage (src/builds/repair.ts):
 * only those that come from the run's history and so repeat for ever.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import proto from '@temporalio/proto';
import { historyBoundCause } from '../../src/builds/repair.ts';

const { WorkflowTaskFailedCause: C } = proto.temporal.api.enums.v1;

void describe('repair: workflow task failures bound to the history', () => {
  void it('names a nondeterminism error and an update message the server does not know', () => {
    assert.equal(historyBoundCause(C.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR), 'a nondeterminism error');
    assert.equal(
      historyBoundCause(C.WORKFLOW_TASK_FAILED_CAUSE_BAD_UPDATE_WORKFLOW_EXECUTION_MESSAGE),
      'an update message the server does not know',
    );
  });

  void it('leaves out failures that pass by themselves, workflow code errors and a missing cause', () => {
    for (const cause of [
      C.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
      C.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_UPDATE,
      C.WORKFLOW_TASK_FAILED_CAUSE_RESET_STICKY_TASK_QUEUE,
      C.WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE,
      C.WORKFLOW_TASK_FAILED_CAUSE_UNSPECIFIED,
    ]) {
      assert.equal(historyBoundCause(cause), undefined, C[cause]);
    }
    assert.equal(historyBoundCause(null), undefined);
    assert.equal(historyBoundCause(undefined), undefined);
  });
});
