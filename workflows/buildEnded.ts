/**
 * The build workflows' one hook into schedulers, promotions and notifications: after a build's
 * final persist, a local activity routes its end (see `announceBuildEnded` in
 * activities/launchpad.ts). Behind `patched()`, so builds recorded before it replay unchanged.
 * Lease-mode builds started since `ANNOUNCE_IN_STORE_PATCH` (workflows/buildCore.ts) announce in
 * the store that first holds the ended build instead, and do not call this.
 */
import { patched, proxyLocalActivities } from '@temporalio/workflow';
import type { LaunchpadActivities } from '../activities/launchpad.ts';
import { type Build } from '../src/domain/build.ts';

/** The patch ID of the build-end hook. */
export const BUILD_ENDED_PATCH = 'kiln-announce-build-ended';

const { announceBuildEnded } = proxyLocalActivities<LaunchpadActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '500ms', maximumInterval: '30s' },
});

/**
 * Routes an ended build to promotions and notifications; call once, after the final persist.
 * `patchSet1`: the run has `PATCH_SET_1` (workflows/buildCore.ts), which stands for this patch.
 */
export async function announceBuildEnd(build: Build, patchSet1 = false): Promise<void> {
  if (patchSet1 || patched(BUILD_ENDED_PATCH)) await announceBuildEnded({ build: { ...build } });
}
