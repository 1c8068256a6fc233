/**
 * The API's metrics: request latency and status codes per route, Kiln error codes, the lease
 * watch, open builds from storage, and `GET /metrics` itself (with the Temporal SDK's metrics
 * appended when this process runs a worker too, as `kiln dev` does).
 */
import { type FastifyInstance, type FastifyRequest } from 'fastify';
import { type Registry } from '../config/load.ts';
import { KilnError } from '../domain/errors.ts';
import { type Storage } from '../storage/storage.ts';
import { type BuildWatcher } from '../builds/watch.ts';
import { registerOpenBuildGauges } from './builds.ts';
import { kilnMetrics } from './registry.ts';
import { scrapeText } from './scrape.ts';
import { bearerMatches } from './server.ts';

/** What the API's metrics need. */
export interface ApiMetricsOptions {
  storage: Pick<Storage, 'openBuildStats'>;
  registry: Registry;
  /** Bearer token scrapes must send; see `metricsAuth`. */
  token?: string;
  watcher?: BuildWatcher;
}

/**
 * Who may scrape: with a metrics token, only requests bearing it; without one, anyone while the API
 * has no ACLs at all (it then listens on loopback only), and nobody once it has (metrics name every
 * bucket and builder, so a bucket's READER token is not enough).
 */
export function checkMetricsAuth(req: FastifyRequest, registry: Registry, token: string | undefined): void {
  if (token === undefined) {
    if (registry.authDisabled) return;
    throw new KilnError(
      'PERMISSION_DENIED',
      'this API has ACLs: set metrics.tokenEnv (or metrics.token) in the config and scrape with that bearer token',
    );
  }
  if (!bearerMatches(req.headers.authorization, token)) {
    throw new KilnError('UNAUTHENTICATED', 'GET /metrics needs the metrics bearer token');
  }
}

/** Adds the hooks and `GET /metrics` to the app; call before the routes are added. */
export function registerApiMetrics(app: FastifyInstance, o: ApiMetricsOptions): void {
  const m = kilnMetrics();
  registerOpenBuildGauges(m, o.storage, () =>
    o.registry.bucketPaths().flatMap((path) => {
      const [project = '', bucket = ''] = path.split('/');
      return (o.registry.bucket(path)?.builders ?? []).map((b) => ({ project, bucket, builder: b.name }));
    }),
  );
  app.addHook('onSend', async (req, reply, payload) => {
    // Error answers carry Kiln's code; count it by route (stale reports: LEASE_EXPIRED on succeed/fail).
    if (reply.statusCode >= 400 && typeof payload === 'string' && payload.startsWith('{')) {
      try {
        const code = (JSON.parse(payload) as { code?: unknown }).code;
        if (typeof code === 'string') m.apiErrors.inc({ route: routeOf(req), code });
      } catch {
        // not JSON: nothing to count
      }
    }
    return payload;
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = routeOf(req);
    m.apiRequests.inc({ method: req.method, route, status: String(reply.statusCode) });
    m.apiRequestDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
  });
  app.get('/metrics', async (req, reply) => {
    checkMetricsAuth(req, o.registry, o.token);
    if (o.watcher) m.leaseWatchBuilds.set(o.watcher.watching);
    const text = await scrapeText(m);
    return reply.header('content-type', m.registry.contentType).send(text);
  });
}

/** The route pattern (`/api/v1/builds/:id`), so label values stay few; `unmatched` for 404s. */
function routeOf(req: FastifyRequest): string {
  return req.routeOptions.url ?? 'unmatched';
}
