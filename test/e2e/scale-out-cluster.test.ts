/**
 * The scale-out suite (test/support/scaleOut.ts) on a real Temporal cluster: frontend, history (4 shards),
 * matching and worker as separate processes on the suite's PostgreSQL, SQL visibility with Kiln's search
 * attributes (test/support/temporalCluster.ts).
 */
import { scaleOutSuite } from '../support/scaleOut.ts';
import { startTemporalCluster } from '../support/temporalCluster.ts';

scaleOutSuite('a Temporal cluster (frontend, history, matching, worker processes)', async (postgres) => {
  const cluster = await startTemporalCluster({ postgresUrl: postgres.url });
  return { address: cluster.address, namespace: cluster.namespace, stop: () => cluster.stop() };
});
