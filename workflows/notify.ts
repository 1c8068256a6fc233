/**
 * `notifyEventWorkflow`: the notifications of one event (a build's end, a promotion attempt's end),
 * ID `notify/build/<build id>` or `notify/promotion/<attempt id>`, so an event is notified once.
 * It plans the deliveries (one per target the rules name) and sends them in parallel, each an
 * activity retried with backoff until it succeeds or `notifications.giveUpAfter` passes; a failing
 * endpoint delays only its own delivery, never a build or another target.
 */
import { ActivityFailure, proxyActivities } from '@temporalio/workflow';
import type { LaunchpadActivities, NotifyInput } from '../activities/launchpad.ts';

const { planNotifications, giveUpNotification } = proxyActivities<LaunchpadActivities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', maximumInterval: '1m' },
});

/** How each delivery ended. */
export interface NotifyResult {
  target: string;
  key: string;
  state: string;
  error?: string;
}

/** See the module comment. */
export async function notifyEventWorkflow(input: NotifyInput): Promise<NotifyResult[]> {
  const { deliveries, giveUpAfterMs } = await planNotifications(input);
  const { deliverNotification } = proxyActivities<LaunchpadActivities>({
    startToCloseTimeout: '2m',
    heartbeatTimeout: '20s',
    scheduleToCloseTimeout: Math.max(60_000, giveUpAfterMs),
    retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '10m' },
  });
  return Promise.all(
    deliveries.map(async (d): Promise<NotifyResult> => {
      try {
        const r = await deliverNotification(d);
        return { target: d.target, key: d.key, state: r.state };
      } catch (e) {
        const error = e instanceof ActivityFailure ? (e.cause?.message ?? e.message) : String(e);
        await giveUpNotification({ key: d.key, target: d.target, error });
        return { target: d.target, key: d.key, state: 'GIVEN_UP', error };
      }
    }),
  );
}
