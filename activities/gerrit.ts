/**
 * Gerrit activities for `changeVerificationWorkflow`: evaluate a trigger on fresh change detail,
 * reserve build numbers, and post reviews (messages and votes) at most once per key. Gerrit
 * failures become `ApplicationFailure`s of type `GERRIT_<code>`; only transient ones are retried.
 */
import { gerritFailureType } from '../src/domain/errors.ts';
import { activityFailure } from './failure.ts';
import type pino from 'pino';
import { type BuilderId } from '../src/domain/build.ts';
import {
  changeRequirements,
  droppedVotes,
  type GerritAccount,
  type GerritPatchset,
  type GerritReviewInput,
} from '../src/domain/gerrit/change.ts';
import type { GerritProjectConfig } from '../src/domain/gerrit/projectConfig.ts';
import { evaluateTrigger, type VerificationMode } from '../src/domain/gerrit/trigger.ts';
import { GerritError, reviewMarker } from '../src/gerrit/client.ts';
import { type GerritHosts } from '../src/gerrit/settings.ts';
import { type BuildReservation, type Storage } from '../src/storage/storage.ts';

/** What Gerrit activities need from the worker. */
export interface GerritActivityDeps {
  hosts: GerritHosts;
}

/** Input of `evaluateGerritTrigger`. */
export interface EvaluateTriggerInput {
  host: string;
  config: GerritProjectConfig;
  project: string;
  change: number;
  /** The patchset the event named: an outdated one is not verified. */
  patchset: number;
  /**
   * Review keys of earlier verifications of this patchset start with this; when one of them voted,
   * an `evaluate` is answered "already verified" (a repeated approval does not rebuild).
   */
  votedKeyPrefix?: string;
}

/** The change as a verification needs it for CQ properties and reviews. */
export interface VerifiedChange {
  id: string;
  project: string;
  _number: number;
  owner: GerritAccount;
  /** Target branch and `Change-Id` footer: CQ's `event.change.id`. Absent in results recorded before they were added. */
  branch?: string;
  change_id?: string;
}

/** Answer of `evaluateGerritTrigger`. */
export type EvaluateTriggerResult =
  | {
      build: true;
      reason: string;
      mode: VerificationMode;
      patchset: GerritPatchset;
      change: VerifiedChange;
      /** Capabilities the change asks its builds to have (`Kiln-Requires:` footers, `requires:` hashtags). */
      requirements?: string[];
    }
  | {
      build: false;
      reason: string;
      /** Set when Kiln's setup, not the change, is why: the reason then says what to fix. */
      problem?: 'REVIEWER_GROUP_NOT_VISIBLE';
    };

/** Answer of `postGerritReview`. */
export interface PostReviewResult {
  posted: boolean;
  /**
   * Labels of the review whose vote Gerrit answered without (it drops a vote on an unknown label or out of
   * range, with HTTP 200). Empty when every vote was applied; absent when the post was found already made.
   */
  dropped?: string[];
}

/** Input of `submitGerritChange`. */
export interface SubmitChangeInput {
  host: string;
  project: string;
  change: number;
}

/** Answer of `submitGerritChange`: submitted (now or before), or why Gerrit refused. */
export type SubmitChangeResult = { submitted: true } | { submitted: false; reason: string };

/** Input of `postGerritReview`. */
export interface PostReviewInput {
  host: string;
  project: string;
  change: number;
  /** Commit SHA of the patchset. */
  revision: string;
  review: GerritReviewInput;
  /** Names the post for good: the same key posts once (see `postReviewOnce`). */
  key: string;
}

/** Maps a Gerrit failure to a Temporal failure: transient → retried, otherwise not. */
function toFailure(e: unknown): unknown {
  if (e instanceof GerritError) {
    return activityFailure(gerritFailureType(e.code), e.message, { nonRetryable: !e.transient });
  }
  return e;
}

/** Creates the Gerrit activities; without `deps` they fail with GERRIT_NOT_CONFIGURED. */
export function createGerritActivities(deps: GerritActivityDeps | undefined, storage: Storage, logger: pino.Logger) {
  const hosts = (): GerritHosts => {
    if (!deps)
      throw activityFailure('GERRIT_NOT_CONFIGURED', 'this worker has no gerrit config', { nonRetryable: true });
    return deps.hosts;
  };
  return {
    /** Reads fresh change detail (and the reviewer group) and decides with the project's trigger. */
    async evaluateGerritTrigger(input: EvaluateTriggerInput): Promise<EvaluateTriggerResult> {
      try {
        const client = hosts().client(input.host);
        const detail = await client.getChangeDetail({ project: input.project, change: input.change });
        if (input.votedKeyPrefix !== undefined) {
          const prefix = reviewMarker(input.votedKeyPrefix);
          const voted = (detail.messages ?? []).some((m) =>
            m.message.split('\n').some((l) => l.trim().startsWith(prefix) && l.trim().endsWith('/vote')),
          );
          if (voted) return { build: false, reason: `patch set ${input.patchset} was already verified` };
        }
        let members: Set<number> | undefined;
        const group = input.config.trigger === 'approval' ? input.config.reviewerGroup : undefined;
        if (group !== undefined) {
          try {
            members = await client.getGroupMemberIds(group);
          } catch (e) {
            if (!(e instanceof GerritError && e.code === 'NOT_FOUND')) throw e;
            const account = hosts().username(input.host);
            const reason =
              `reviewer group "${group}" is not visible to Kiln's Gerrit account${account ? ` ${account}` : ''} ` +
              `(Gerrit answers 404 for its members): make the group visible to all registered users ` +
              `(group option "visible to all", REST visible_to_all) or make Kiln's account a member or owner`;
            logger.error({ host: input.host, project: input.project, group }, reason);
            return { build: false, reason, problem: 'REVIEWER_GROUP_NOT_VISIBLE' };
          }
        }
        const r = evaluateTrigger(input.config, detail, {
          reviewerGroupMembers: members,
          patchset: input.patchset,
          selfUsername: hosts().self?.username,
        });
        logger.info(
          { host: input.host, change: input.change, patchset: input.patchset, ...r },
          'gerrit trigger evaluated',
        );
        if (!r.build) return r;
        const commit = detail.current_revision ? detail.revisions?.[detail.current_revision]?.commit : undefined;
        return {
          ...r,
          change: {
            id: detail.id,
            project: detail.project,
            _number: detail._number,
            owner: detail.owner,
            branch: detail.branch,
            change_id: detail.change_id,
          },
          requirements: changeRequirements(commit?.message, detail.hashtags),
        };
      } catch (e) {
        throw toFailure(e);
      }
    },

    /** Allocates a build number (idempotent by `requestKey`). */
    async reserveBuildNumber(input: {
      buildId: string;
      builder: BuilderId;
      requestKey: string;
    }): Promise<BuildReservation> {
      return storage.reserveBuild(input);
    },

    /** Posts a message and/or votes on a patchset, once per key; says which votes Gerrit dropped. */
    async postGerritReview(input: PostReviewInput): Promise<PostReviewResult> {
      try {
        const r = await hosts()
          .client(input.host)
          .postReviewOnce({
            change: { project: input.project, change: input.change },
            revision: input.revision,
            review: input.review,
            idempotencyKey: input.key,
          });
        logger.info({ host: input.host, change: input.change, key: input.key, posted: r.posted }, 'gerrit review');
        if (!r.posted) return { posted: false };
        const dropped = droppedVotes(input.review.labels, r.result);
        if (dropped.length > 0) {
          logger.warn(
            { host: input.host, change: input.change, dropped, sent: input.review.labels },
            'vote dropped by Gerrit',
          );
        }
        return { posted: true, dropped };
      } catch (e) {
        throw toFailure(e);
      }
    },

    /**
     * Submits a change whose CQ full run passed. A change already merged counts as submitted (a retry after a
     * lost answer); Gerrit's refusals (not ready, conflict, no permission) come back as the reason, not thrown.
     */
    async submitGerritChange(input: SubmitChangeInput): Promise<SubmitChangeResult> {
      const client = hosts().client(input.host);
      const ref = { project: input.project, change: input.change };
      try {
        await client.submit(ref);
        logger.info({ host: input.host, change: input.change }, 'gerrit change submitted');
        return { submitted: true };
      } catch (e) {
        if (!(e instanceof GerritError) || e.transient) throw toFailure(e);
        try {
          if ((await client.getChangeDetail(ref)).status === 'MERGED') return { submitted: true };
        } catch (again) {
          throw toFailure(again);
        }
        const answer = e.message.replace(/^Gerrit POST \S+: /, '');
        logger.warn({ host: input.host, change: input.change, answer }, 'gerrit refused to submit');
        return { submitted: false, reason: `Gerrit refused to submit: ${answer}` };
      }
    },
  };
}
