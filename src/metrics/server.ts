/**
 * `kiln worker`'s own metrics endpoint: a small HTTP server answering `GET /metrics` (and
 * `/healthz`) on `metrics.worker.host:port`, with the same token rule as the API's, and refusing
 * to listen beyond loopback without a token.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { type KilnMetrics } from './registry.ts';
import { scrapeText } from './scrape.ts';

/** A listening metrics server. */
export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

/** True for addresses only this machine can reach. */
function loopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** True when `header` is `Bearer <token>`. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m?.[1]) return false;
  const a = Buffer.from(m[1]);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Starts the worker's metrics server; rejects when the port is taken or the host needs a token. */
export async function startMetricsServer(o: {
  m: KilnMetrics;
  host: string;
  port: number;
  token?: string;
}): Promise<MetricsServer> {
  if (o.token === undefined && !loopback(o.host)) {
    throw new Error(
      `metrics.worker.host: refusing to serve metrics on ${o.host} without metrics.tokenEnv (or metrics.token): they name every bucket and builder`,
    );
  }
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || (path !== '/metrics' && path !== '/healthz')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"code":"NOT_FOUND","message":"GET /metrics"}');
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      return;
    }
    if (o.token !== undefined && !bearerMatches(req.headers.authorization, o.token)) {
      res
        .writeHead(401, { 'content-type': 'application/json' })
        .end('{"code":"UNAUTHENTICATED","message":"GET /metrics needs the metrics bearer token"}');
      return;
    }
    scrapeText(o.m).then(
      (text) => res.writeHead(200, { 'content-type': o.m.registry.contentType }).end(text),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  return {
    url: `http://${o.host.includes(':') ? `[${o.host}]` : o.host}:${port}/metrics`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** The metrics token from the config (`metrics.token`, or the variable `metrics.tokenEnv` names); throws naming the key. */
export function metricsToken(
  metrics: { token?: string; tokenEnv?: string },
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (metrics.tokenEnv === undefined) return metrics.token;
  const v = env[metrics.tokenEnv];
  if (!v) throw new Error(`metrics.tokenEnv: environment variable ${metrics.tokenEnv} is not set`);
  return v;
}
