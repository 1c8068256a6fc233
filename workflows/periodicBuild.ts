/**
 * `periodicBuildWorkflow`: one run of a periodic scheduler, started by its Temporal Schedule. It
 * schedules the scheduler's builders (request IDs from this run's workflow ID, so a retry makes no
 * second build) and waits for them to end, so the schedule's overlap policy ("skip" by default)
 * sees a run as running while its builds are.
 */
import { proxyActivities, sleep, workflowInfo } from '@temporalio/workflow';
import type { LaunchpadActivities } from '../activities/launchpad.ts';

const { schedulePeriodicBuilds, buildsEnded } = proxyActivities<LaunchpadActivities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', maximumInterval: '1m' },
});

/** Input of `periodicBuildWorkflow`. */
export interface PeriodicBuildInput {
  scheduler: string;
}

/** See the module comment. */
export async function periodicBuildWorkflow(input: PeriodicBuildInput): Promise<string[]> {
  const ids = await schedulePeriodicBuilds({ scheduler: input.scheduler, runId: workflowInfo().workflowId });
  // Checks back off from 10 s to 5 min: a 3-hour build costs a few dozen events.
  for (let delay = 10_000; !(await buildsEnded({ ids })); delay = Math.min(delay * 2, 300_000)) await sleep(delay);
  return ids;
}
