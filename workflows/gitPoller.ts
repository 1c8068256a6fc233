/**
 * `gitPollerWorkflow`, ID `poller/<task queue>/<scheduler>`: an on-commit scheduler's poller for one
 * (repository, branch), running for as long as the scheduler is configured. Every poll interval
 * (or at once on a `pollNow` signal, e.g. from a Gerrit `ref-updated` event) an activity fetches
 * the branch with the real `git` and lists the commits after the last one handled; the poller
 * schedules builds for each (mode `each`) or for the newest once the branch has been still for the
 * tree-stable time (mode `newest`), and only then moves its mark. The mark lives in the workflow,
 * so restarts of any process neither rebuild nor skip a commit; builds' request IDs make even a
 * retried schedule idempotent. The first poll only records where the branch is (Buildbot's
 * GitPoller does the same). An unreachable remote is recorded (last error, last success) and
 * polled again next interval. Continues as new every `maxPollsPerRun` polls, carrying the mark.
 */
import {
  allHandlersFinished,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  log,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { LaunchpadActivities } from '../activities/launchpad.ts';

/** Input of `gitPollerWorkflow`. */
export interface GitPollerInput {
  scheduler: string;
  /** Carried over by continue-as-new. */
  state?: GitPollerState;
  /** Continue as new after this many polls in one run (tests lower it). @default 200 */
  maxPollsPerRun?: number;
}

/** The poller's durable state. */
export interface GitPollerState {
  /** The last commit handled (built or, on the first poll, recorded as the start). */
  lastSeen?: string;
  paused: boolean;
  /** Mode `newest` with a tree-stable timer: the tip seen and since when it has not moved. */
  stable?: { tip: string; sinceMs: number };
  /** Builds scheduled so far (all runs), for operators. */
  commitsBuilt: number;
  lastError?: string;
}

/** Poll now instead of at the next interval. */
export const pollNowSignal = defineSignal<[{ reason?: string }]>('pollNow');
/** Pause or resume polling. */
export const pausePollerSignal = defineSignal<[{ paused: boolean }]>('pausePoller');
export const pollerStateQuery = defineQuery<GitPollerState>('pollerState');

const { pollBranch, scheduleCommitBuilds } = proxyActivities<LaunchpadActivities>({
  startToCloseTimeout: '30m',
  heartbeatTimeout: '30s',
  retry: { initialInterval: '2s', maximumInterval: '1m' },
});

/** See the module comment. */
export async function gitPollerWorkflow(input: GitPollerInput): Promise<void> {
  const st: GitPollerState = input.state ?? { paused: false, commitsBuilt: 0 };
  let pollRequested = false;
  setHandler(pollNowSignal, () => {
    pollRequested = true;
  });
  setHandler(pausePollerSignal, ({ paused }) => {
    st.paused = paused;
  });
  setHandler(pollerStateQuery, () => st);
  const maxPolls = input.maxPollsPerRun ?? 200;
  for (let polls = 1; ; polls++) {
    if (st.paused) await condition(() => !st.paused || workflowInfo().continueAsNewSuggested);
    pollRequested = false;
    const r = await pollBranch({ scheduler: input.scheduler, ...(st.lastSeen ? { lastSeen: st.lastSeen } : {}) });
    if (r.kind === 'removed') {
      log.info('scheduler no longer configured; poller ends', { scheduler: input.scheduler });
      return;
    }
    let waitMs = r.settings.pollIntervalMs;
    if (r.kind === 'error') {
      st.lastError = r.error;
    } else {
      st.lastError = undefined;
      if (st.lastSeen === undefined) {
        st.lastSeen = r.tip;
      } else if (r.settings.mode === 'each') {
        for (const c of r.commits) {
          await scheduleCommitBuilds({ scheduler: input.scheduler, commit: c });
          st.lastSeen = c.commit.id;
          st.commitsBuilt += 1;
        }
        if (r.more) waitMs = 0;
      } else if (r.commits.length > 0) {
        const newest = r.commits[r.commits.length - 1]!;
        const now = Date.now();
        if (st.stable?.tip !== r.tip) st.stable = { tip: r.tip, sinceMs: now };
        const stableAt = st.stable.sinceMs + r.settings.treeStableMs;
        if (now >= stableAt) {
          await scheduleCommitBuilds({ scheduler: input.scheduler, commit: newest });
          st.lastSeen = r.tip;
          st.stable = undefined;
          st.commitsBuilt += 1;
        } else {
          waitMs = Math.min(waitMs, stableAt - now);
        }
      }
    }
    if (polls >= maxPolls || workflowInfo().continueAsNewSuggested) {
      await condition(allHandlersFinished);
      return continueAsNew<typeof gitPollerWorkflow>({ ...input, state: st });
    }
    if (waitMs > 0) await condition(() => pollRequested || st.paused, waitMs);
  }
}
