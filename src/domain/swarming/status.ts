/**
 * Swarming task state → Kiln build status. Pure: the build workflow applies it to every task result
 * it learns of, whether from a Pub/Sub notification or from polling.
 */
import { type BuildStatus, type StatusDetails } from '../build.ts';
import { KilnError } from '../errors.ts';

/** `swarming.v2.TaskState` names, as pRPC JSON spells them. */
export const TASK_STATES = [
  'INVALID',
  'RUNNING',
  'PENDING',
  'EXPIRED',
  'TIMED_OUT',
  'BOT_DIED',
  'CANCELED',
  'COMPLETED',
  'KILLED',
  'NO_RESOURCE',
  'CLIENT_ERROR',
] as const;
export type TaskState = (typeof TASK_STATES)[number];

/** True once a task can no longer change: every state but PENDING and RUNNING (and INVALID). */
export function isTaskStateFinal(state: TaskState): boolean {
  return state !== 'PENDING' && state !== 'RUNNING' && state !== 'INVALID';
}

/**
 * The parts of a `swarming.v2.TaskResultResponse` that decide the build's status. Field names are
 * the pRPC JSON ones (`internal_failure` arrives as `internalFailure`); false booleans may be absent.
 */
export interface TaskOutcome {
  state: TaskState;
  /** True if the task's exit code was not 0. */
  failure?: boolean;
  /** True if the bot had an internal failure (BOT_DIED). */
  internalFailure?: boolean;
}

/** A build status and its details, ready to apply to a build. */
export interface SwarmingBuildStatus {
  status: BuildStatus;
  statusDetails: StatusDetails;
}

/**
 * Maps a task result to the build status it implies, following Buildbucket: PENDING→SCHEDULED,
 * RUNNING→STARTED, COMPLETED→SUCCESS/FAILURE (INFRA_FAILURE on `internalFailure`), TIMED_OUT→
 * INFRA_FAILURE {timeout}, EXPIRED→INFRA_FAILURE {resourceExhaustion, timeout}, NO_RESOURCE→
 * INFRA_FAILURE {resourceExhaustion}, BOT_DIED/CLIENT_ERROR→INFRA_FAILURE, CANCELED/KILLED→CANCELED.
 * Throws `INTERNAL` for `INVALID`, which Swarming never reports for a real task.
 */
export function buildStatusFromTask(result: TaskOutcome): SwarmingBuildStatus {
  const s = (status: BuildStatus, statusDetails: StatusDetails = {}): SwarmingBuildStatus => ({
    status,
    statusDetails,
  });
  switch (result.state) {
    case 'PENDING':
      return s('SCHEDULED');
    case 'RUNNING':
      return s('STARTED');
    case 'COMPLETED':
      if (result.internalFailure) return s('INFRA_FAILURE');
      return s(result.failure ? 'FAILURE' : 'SUCCESS');
    case 'TIMED_OUT':
      return s('INFRA_FAILURE', { timeout: true });
    case 'EXPIRED':
      return s('INFRA_FAILURE', { resourceExhaustion: true, timeout: true });
    case 'NO_RESOURCE':
      return s('INFRA_FAILURE', { resourceExhaustion: true });
    case 'BOT_DIED':
    case 'CLIENT_ERROR':
      return s('INFRA_FAILURE');
    case 'CANCELED':
    case 'KILLED':
      return s('CANCELED');
    case 'INVALID':
      throw new KilnError('INTERNAL', 'Swarming reported task state INVALID');
  }
}
