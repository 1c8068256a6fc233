/**
 * Kiln's activities: all I/O a workflow needs. Built by `createActivities(deps)` so workers hand
 * in their logger, storage and clients; every activity takes one typed input object and is
 * idempotent (Temporal may run it more than once).
 */
import { activityFailure } from './failure.ts';
import type pino from 'pino';
import { type Build, type BuildLeaseKeys, UNSTORABLE_BUILD_FAILURE } from '../src/domain/build.ts';
import { type StoredVerification } from '../src/domain/verification.ts';
import { unstorableReason } from '../src/storage/errors.ts';
import { type Storage } from '../src/storage/storage.ts';
import { createSwarmingActivities, type SwarmingActivityDeps } from './swarming.ts';
import { createGerritActivities, type GerritActivityDeps } from './gerrit.ts';
import { createLaunchpadActivities } from './launchpad.ts'; // ---- launchpad ----
import { type LaunchpadContext } from '../src/launchpad/context.ts';

/** What activities need from the worker process. */
export interface ActivityDeps {
  storage: Storage;
  logger: pino.Logger;
  /** Swarming clients for Swarming-mode builds; absent → those builds fail with SWARMING_NOT_CONFIGURED. */
  swarming?: SwarmingActivityDeps;
  /** Gerrit clients for change verifications; absent → those activities fail with GERRIT_NOT_CONFIGURED. */
  gerrit?: GerritActivityDeps;
  /** ---- launchpad ----: pollers, promotions, notifications; absent → the build-end hook does nothing. */
  launchpad?: LaunchpadContext;
}

/** Creates the activity functions a worker registers. */
export function createActivities(deps: ActivityDeps) {
  const { storage } = deps;
  const launchpad = createLaunchpadActivities(deps.launchpad); // ---- launchpad ----
  return {
    ...createSwarmingActivities(deps.swarming, deps.logger),
    ...createGerritActivities(deps.gerrit, storage, deps.logger),
    ...launchpad,
    /**
     * Writes a build's current state (and its lease keys' hashes) to storage; older versions are
     * ignored, so retries are safe. A build storage can never hold fails without retries
     * (UNSTORABLE_BUILD), so its workflow can fail it instead of retrying forever. With `announce`,
     * the stored build's end is then announced (`announceBuildEnded`); a retry stores and announces
     * again, and both are idempotent.
     */
    async recordBuild(input: { build: Build; leaseKeys?: BuildLeaseKeys; announce?: boolean }): Promise<void> {
      try {
        await storage.recordBuild(input.build, input.leaseKeys);
      } catch (e) {
        const reason = unstorableReason(e);
        if (reason === undefined) throw e;
        deps.logger.error({ buildId: input.build.id, reason }, 'storage refused a build for good');
        throw activityFailure(UNSTORABLE_BUILD_FAILURE, reason, { nonRetryable: true });
      }
      if (input.announce) await launchpad.announceBuildEnded({ build: input.build });
    },
    /** Writes a change verification's current state; older versions are ignored, so retries are safe. */
    async recordVerification(input: { verification: StoredVerification }): Promise<void> {
      await storage.recordVerification(input.verification);
    },
  };
}

/** The activity type workflows proxy. */
export type KilnActivities = ReturnType<typeof createActivities>;
