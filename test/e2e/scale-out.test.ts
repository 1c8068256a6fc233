/** The scale-out suite (test/support/scaleOut.ts) on the Temporal CLI dev server. */
import { scaleOutSuite } from '../support/scaleOut.ts';
import { startDevEnv } from '../support/temporal.ts';

scaleOutSuite('the Temporal dev server', async () => {
  const env = await startDevEnv();
  return { address: env.address, namespace: env.namespace ?? 'default', stop: () => env.teardown() };
});
