/**
 * Whether a build workflow's history replays on today's workflow code (the worker's own bundle),
 * for the build repair (`BuildRepairOptions.replayFailure`): the one sure answer when the server
 * keeps no record of why a run's workflow task keeps failing.
 */
import type proto from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { workflowBundle } from './worker.ts';

/** Why `events` do not replay (a nondeterminism error), or undefined when they do or replay fails otherwise. */
export async function replayFailure(
  events: proto.temporal.api.history.v1.IHistoryEvent[],
): Promise<string | undefined> {
  try {
    await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, { events }, 'kiln-repair-check');
    return undefined;
  } catch (e) {
    const err = e as Error;
    return err?.name === 'DeterminismViolationError' ? `its history does not replay: ${err.message}` : undefined;
  }
}
