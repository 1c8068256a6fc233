/** The one way activities fail on purpose: an `ApplicationFailure` whose type is in Kiln's enumerated set. */
import { ApplicationFailure } from '@temporalio/activity';
import { type FailureType } from '../src/domain/errors.ts';

/**
 * A failure of `type` (see `FailureType` in src/domain/errors.ts). `nonRetryable` when retrying the
 * activity cannot help; otherwise Temporal retries it under the activity's retry policy.
 */
export function activityFailure(
  type: FailureType,
  message: string,
  o: { nonRetryable: boolean; cause?: Error },
): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: o.nonRetryable, cause: o.cause });
}
