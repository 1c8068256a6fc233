/**
 * Gerrit activities for `changeVerificationWorkflow`: evaluate a trigger on fresh change detail,
 * reserve build numbers, and post reviews (messages and votes) at most once per key. Gerrit
 * failures become `ApplicationFailure`s of type `GERRIT_<code>`; only transient ones are retried.
 */
import { ApplicationFailure } from '@temporalio/common';
import type pino from 'pino';
import { type BuilderId } from '../src/domain/build.ts';
import { type GerritAccount, type GerritPatchset, type GerritReviewInput } from '../src/domain/gerrit/change.ts';
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
}

/** Answer of `evaluateGerritTrigger`. */
export type EvaluateTriggerResult =
  | { build: true; reason: string; mode: VerificationMode; patchset: GerritPatchset; change: VerifiedChange }
  | { build: false; reason: string };

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
    return ApplicationFailure.create({ type: `GERRIT_${e.code}`, message: e.message, nonRetryable: !e.transient });
  }
  return e;
}

/** Creates the Gerrit activities; without `deps` they fail with GERRIT_NOT_CONFIGURED. */
export function createGerritActivities(deps: GerritActivityDeps | undefined, storage: Storage, logger: pino.Logger) {
  const hosts = (): GerritHosts => {
    if (!deps)
      throw ApplicationFailure.create({
        type: 'GERRIT_NOT_CONFIGURED',
        message: 'this worker has no gerrit config',
        nonRetryable: true,
      });
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
        const members =
          input.config.trigger === 'approval' && input.config.reviewerGroup !== undefined
            ? await client.getGroupMemberIds(input.config.reviewerGroup)
            : undefined;
        const r = evaluateTrigger(input.config, detail, { reviewerGroupMembers: members, patchset: input.patchset });
        logger.info(
          { host: input.host, change: input.change, patchset: input.patchset, ...r },
          'gerrit trigger evaluated',
        );
        if (!r.build) return r;
        return {
          ...r,
          change: { id: detail.id, project: detail.project, _number: detail._number, owner: detail.owner },
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

    /** Posts a message and/or votes on a patchset, once per key. */
    async postGerritReview(input: PostReviewInput): Promise<{ posted: boolean }> {
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
        return { posted: r.posted };
      } catch (e) {
        throw toFailure(e);
      }
    },
  };
}
