/**
 * The bare-Temporal baseline for `npm run bench`: a workflow that does nothing but answer six
 * updates, the same number of round trips as Kiln's lease cycle after schedule (lease, start,
 * 3 heartbeats, succeed). What this server can do on this machine with no Kiln logic at all.
 */
import { condition, defineUpdate, setHandler } from '@temporalio/workflow';

export const stepUpdate = defineUpdate<number, [number]>('step');

/** Answers `steps` updates, then ends. */
export async function baselineWorkflow(steps: number): Promise<number> {
  let done = 0;
  setHandler(stepUpdate, (n) => {
    done += 1;
    return n;
  });
  await condition(() => done >= steps);
  return done;
}
