/**
 * Kiln's HTTP API: Fastify with pino logs, zod-validated inputs, `{code, message}` errors, a body
 * size limit, and bearer-token auth. Refuses to listen beyond loopback when no token is configured.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, LogController } from 'fastify';
import { KilnError } from '../domain/errors.ts';
import { type ApiContext, type Route } from './context.ts';
import { loopbackAddresses, noAuthBeyondLoopback } from './auth.ts';
import { toErrorResponse } from './errors.ts';
import { type ApiMetricsOptions, registerApiMetrics } from '../metrics/api.ts';
import { cancelBuild } from './routes/cancelBuild.ts';
import { failBuild, succeedBuild } from './routes/completeBuild.ts';
import { getBuild } from './routes/getBuild.ts';
import { getBuildByNumber } from './routes/getBuildByNumber.ts';
import { getBuilder } from './routes/getBuilder.ts';
import { gerritEvents } from './routes/gerritEvents.ts';
import { getLog } from './routes/getLog.ts';
import { heartbeatBatch } from './routes/heartbeatBatch.ts';
import { heartbeatBuild } from './routes/heartbeatBuild.ts';
import { leaseBuild } from './routes/leaseBuild.ts';
import { peekBuilds } from './routes/peekBuilds.ts';
import { leaseNext } from './routes/leaseNext.ts'; // issue 18
import { scheduleBuild } from './routes/scheduleBuild.ts';
import { searchBuilds } from './routes/searchBuilds.ts';
import { searchVerifications } from './routes/searchVerifications.ts';
import { setPriority } from './routes/setPriority.ts';
import { startBuild } from './routes/startBuild.ts';
import { swarmingNotify } from './routes/swarmingNotify.ts';
import { tinderboxGetTask } from './routes/tinderboxGetTask.ts';
import { tinderboxReport } from './routes/tinderboxReport.ts';
import { updateBuild } from './routes/updateBuild.ts';
import { uploadLog } from './routes/uploadLog.ts';
// --- web UI (issue 14) ---
import { LiveFeed } from './live.ts';
import { getBuilderStats } from './routes/getBuilderStats.ts';
import { getConsole } from './routes/getConsole.ts';
import { getPipeline } from './routes/getPipeline.ts';
import { getSession } from './routes/getSession.ts';
import { getStuck } from './routes/getStuck.ts';
import { getVerification } from './routes/getVerification.ts';
import { listBuilders } from './routes/listBuilders.ts';
import { liveUpdates } from './routes/liveUpdates.ts';
import { rebuildBuild } from './routes/rebuildBuild.ts';
import { registerUi } from './ui.ts';
import { watchLeases } from './routes/watchLeases.ts';
// ---- launchpad ----
import { dryRunPromotions, listPromotions } from './routes/promotions.ts';
import { listSchedules, scheduleAction } from './routes/schedules.ts';

/** Every route; a later issue's routes are added here. */
export const ROUTES: Route[] = [
  scheduleBuild,
  getBuild,
  getBuildByNumber,
  searchBuilds,
  cancelBuild,
  setPriority,
  peekBuilds,
  leaseBuild,
  startBuild,
  heartbeatBuild,
  heartbeatBatch,
  succeedBuild,
  failBuild,
  swarmingNotify,
  getBuilder,
  uploadLog,
  getLog,
  gerritEvents,
  tinderboxGetTask,
  tinderboxReport,
  searchVerifications,
  // --- web UI read endpoints and actions (issue 14); live updates are added in buildApi ---
  getSession,
  listBuilders,
  getConsole,
  getBuilderStats,
  getPipeline,
  getStuck,
  getVerification,
  rebuildBuild,
  // Runners (issue 17): long-poll for canceled builds.
  watchLeases,
  // Issue 18: peek + lease (+ start) in one round trip.
  leaseNext,
  // ---- launchpad: schedulers, promotions ----
  listSchedules,
  scheduleAction,
  listPromotions,
  dryRunPromotions,
  // ---- chromium2: steps and output properties mid-build (Buildbucket v2 UpdateBuild) ----
  updateBuild,
];

/** Options of `buildApi`. */
export interface ApiOptions {
  /** Largest request body in bytes. @default 1048576 */
  bodyLimitBytes?: number;
  /** Extra routes (e.g. Swarming notifications, Gerrit events, logs). */
  routes?: Route[];
  /** Serve the web UI under `/` (from ui/dist, or `{dist}`); false: API only. @default the config's `ui.enabled` */
  ui?: boolean | { dist: string };
  /** Prometheus metrics and `GET /metrics` (src/metrics/api.ts); absent → none. */
  metrics?: ApiMetricsOptions;
}

/** Builds the Fastify app (not listening). */
export function buildApi(ctx: ApiContext, opts: ApiOptions = {}): FastifyInstance {
  const app: FastifyInstance = Fastify({
    loggerInstance: ctx.logger.child({ component: 'api' }) as FastifyBaseLogger,
    bodyLimit: opts.bodyLimitBytes ?? 1024 * 1024,
    logController: new LogController({ disableRequestLogging: true }),
    // Requests that hang are cut: a slow client must not pin the process.
    requestTimeout: 60_000,
    connectionTimeout: 60_000,
    // Router errors (bad URL encoding, overlong parameters) get Kiln's error shape too.
    frameworkErrors: (err, _req, reply) => {
      const r = toErrorResponse(err);
      void (reply as unknown as FastifyReply).code(r.status).send(r.body);
    },
  });
  app.addHook('onResponse', (req, reply, done) => {
    req.log.debug({ method: req.method, url: req.url, status: reply.statusCode, ms: reply.elapsedTime }, 'request');
    done();
  });
  app.setErrorHandler((err, req, reply) => {
    const r = toErrorResponse(err);
    if (r.internal) req.log.error({ err, url: req.url }, 'request failed');
    else req.log.debug({ code: r.body.code, url: req.url }, r.body.message);
    void reply.code(r.status).send(r.body);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ code: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` });
  });
  app.get('/healthz', async () => ({ ok: true }));
  if (opts.metrics) registerApiMetrics(app, opts.metrics);
  for (const r of [...ROUTES, ...(opts.routes ?? [])]) r(app, ctx);
  // --- web UI (issue 14): one storage poll per process for every open page, and the pages themselves ---
  const uiConfig = ctx.registry.config.ui;
  const feed = ctx.storage
    ? new LiveFeed({ storage: ctx.storage, logger: ctx.logger, intervalMs: uiConfig?.liveIntervalMs })
    : undefined;
  if (feed) app.addHook('onClose', (_app, done) => (feed.close(), done()));
  liveUpdates(feed)(app, ctx);
  const ui = opts.ui ?? uiConfig?.enabled ?? true;
  if (ui !== false) void app.register(async (scope) => registerUi(scope, typeof ui === 'object' ? ui.dist : undefined));
  return app;
}

/** Listens on host:port; refuses a non-loopback host when auth is off. Returns the base URL. */
export async function listenApi(app: FastifyInstance, ctx: ApiContext, host: string, port: number): Promise<string> {
  let bind = host;
  if (ctx.registry.authDisabled) {
    // Resolved once and bound by address, so the name cannot resolve elsewhere between check and listen.
    const loopback = await loopbackAddresses(host);
    if (!loopback) throw new KilnError('PERMISSION_DENIED', noAuthBeyondLoopback(host));
    bind = loopback[0] ?? host;
  }
  await app.listen({ host: bind, port });
  const addr = app.server.address();
  const actualPort = typeof addr === 'object' && addr ? addr.port : port;
  return `http://${host.includes(':') ? `[${host}]` : host}:${actualPort}`;
}
