/**
 * Every build and lease route on one real dev server, one storage, one worker and one API: each
 * route's happy path, bad input and permissions (the tests are in buildRoutes.ts and
 * leaseRoutes.ts; the shared setup in world.ts). The web UI's routes are tested in
 * ../ui-routes.test.ts, the schedules and promotions in ../launchpad-routes.test.ts, the lease watch
 * in ../watch.test.ts.
 */
import { describe } from 'node:test';
import { buildRouteTests } from './buildRoutes.ts';
import { leaseRouteTests } from './leaseRoutes.ts';
import { routeWorld } from './world.ts';

describe('HTTP routes', () => {
  const w = routeWorld();
  buildRouteTests(w);
  leaseRouteTests(w);
});
