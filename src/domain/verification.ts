/**
 * A change verification as storage keeps it: the read model of `changeVerificationWorkflow`, which
 * writes it (by a local activity) on each change, so a verification stays findable after Temporal's
 * retention and can be listed by change without visibility queries.
 */
import { type BuilderId, type BuildStatus } from './build.ts';

/** Where a verification stands. */
export type VerificationPhase = 'EVALUATING' | 'NOT_TRIGGERED' | 'BUILDING' | 'ENDED';

/** One platform (builder) of a stored verification. */
export interface StoredVerificationPlatform {
  name: string;
  builder: BuilderId;
  buildId: string;
  number: number;
  status: BuildStatus;
  /** Last lease holder (tinderbox or runner), once one took it. */
  holder?: string;
}

/** See the module comment. */
export interface StoredVerification {
  /** `<workflowId>/<runId>`: each attempt (run) at verifying a patch set is its own record. */
  id: string;
  /** `verify/<host>/<change>/<patchset>`, the same for every attempt on that patch set. */
  workflowId: string;
  runId: string;
  host: string;
  project: string;
  branch: string;
  change: number;
  patchset: number;
  phase: VerificationPhase;
  /** Why it runs, or why not. */
  reason: string;
  mode?: string;
  platforms: StoredVerificationPlatform[];
  merged: boolean;
  canceled?: string;
  /** Verified value posted; absent when none was. */
  vote?: number;
  /** First line of every message posted, in order. */
  messages: string[];
  /** While a Gerrit call is being retried: `waiting on Gerrit: <cause>`. */
  waiting?: string;
  /** Set when Kiln's setup kept the change from being verified (e.g. `REVIEWER_GROUP_NOT_VISIBLE`); `reason` says what to fix. */
  problem?: string;
  /** The vote Kiln sent and Gerrit dropped (an unknown label or a value out of range), e.g. `Verified +1`. */
  voteDropped?: string;
  /** Capabilities the change asked of its builds (`Kiln-Requires:` footers, `requires:` hashtags). */
  requirements?: string[];
  /** CQ full runs: true once Gerrit merged the change; `submitError` says why it did not. */
  submitted?: boolean;
  submitError?: string;
  createTime: string;
  updateTime: string;
  /** Grows with every write; storage ignores a write that is not newer. */
  version: number;
}
