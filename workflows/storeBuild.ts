/**
 * How both build workflows write their build to storage: the `recordBuild` local activity, and what
 * to do when storage refuses a build for good. Workflow code: deterministic, no I/O of its own.
 */
import { ActivityFailure, ApplicationFailure, proxyLocalActivities } from '@temporalio/workflow';
import type { createActivities } from '../activities/index.ts';
import {
  type Build,
  type BuildLeaseKeys,
  refuseUnstorableBuild,
  UNSTORABLE_BUILD_FAILURE,
} from '../src/domain/build.ts';

const { recordBuild } = proxyLocalActivities<ReturnType<typeof createActivities>>({
  startToCloseTimeout: '30s',
  // Storage being down is retried for as long as it takes; a build it can never hold is not.
  retry: { initialInterval: '200ms', maximumInterval: '10s', nonRetryableErrorTypes: [UNSTORABLE_BUILD_FAILURE] },
});

/**
 * Writes `b` (and its lease keys) to storage; with `announce`, the same local activity then
 * announces the ended build (schedulers, promotions, notifications). Returns true once stored. When
 * storage refuses the build for good, makes it storable and failed (`refuseUnstorableBuild`), hands
 * the summary to `fail` (which ends the build, or bumps its version when it had ended) and returns
 * false, so the caller's loop stores the new version. After three refusals the workflow run fails:
 * visible in Temporal, and never a write retried forever.
 */
export async function storeBuild(
  b: Build,
  leaseKeys: BuildLeaseKeys | undefined,
  fail: (summary: string) => void,
  announce = false,
): Promise<boolean> {
  try {
    await recordBuild({ build: { ...b }, ...(leaseKeys ? { leaseKeys } : {}), ...(announce ? { announce } : {}) });
    return true;
  } catch (e) {
    // Local activity failures may come wrapped in an ActivityFailure or as the activity's own failure.
    const cause = e instanceof ActivityFailure ? e.cause : e;
    const refusal = cause instanceof ApplicationFailure ? cause : undefined;
    if (refusal?.type !== UNSTORABLE_BUILD_FAILURE) throw e;
    const summary = refuseUnstorableBuild(b, refusal.message, Date.now());
    if (summary === undefined) {
      throw ApplicationFailure.create({
        type: UNSTORABLE_BUILD_FAILURE,
        message: `storage refused build ${b.id} three times, the last time even without its content: ${refusal.message}`,
        nonRetryable: true,
      });
    }
    fail(summary);
    return false;
  }
}
