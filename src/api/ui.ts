/**
 * Serves Kiln's web UI (built by `npm run build:ui` into ui/dist) under `/`, same origin as the API:
 * hashed assets with a long cache life, and `index.html` for every other GET outside `/api/`, so the
 * UI's own router shows its pages (and its own "not found" page) for any deep link. No CDN: every
 * script, style and font comes from here.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import fastifyStatic from '@fastify/static';
import { type FastifyInstance, type FastifyReply } from 'fastify';
import { PACKAGE_ROOT } from '../packageRoot.ts';

/** Where `npm run build:ui` writes the UI. */
export const UI_DIST = resolve(PACKAGE_ROOT, 'ui/dist');

/** Content-Security-Policy of every UI page: nothing from other origins, no inline scripts. */
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

function pageHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'same-origin')
    .header('cache-control', 'no-cache');
}

/** Registers the UI routes on `app`; `dist` defaults to ui/dist. */
export async function registerUi(app: FastifyInstance, dist: string = UI_DIST): Promise<void> {
  const index = resolve(dist, 'index.html');
  const built = existsSync(index);
  if (built) {
    await app.register(fastifyStatic, {
      root: dist,
      prefix: '/',
      wildcard: false, // one route per built file; everything else falls to the page route below
      index: false,
      setHeaders: (res, path) => {
        void res.header('x-content-type-options', 'nosniff');
        void res.header(
          'cache-control',
          path.includes('/assets/') ? 'public, max-age=31536000, immutable' : 'public, max-age=300',
        );
      },
    });
  }
  const page = async (req: { url: string; method: string }, reply: FastifyReply) => {
    const path = req.url.split('?')[0] ?? '/';
    if (path.startsWith('/api/') || path === '/api') {
      return reply.code(404).send({ code: 'NOT_FOUND', message: `no route ${req.method} ${path}` });
    }
    if (!built) {
      return pageHeaders(reply)
        .code(503)
        .type('text/html; charset=utf-8')
        .send(
          '<!doctype html><title>Kiln</title><p>Kiln\'s web UI is not built. Run <code>npm run build:ui</code> (or <code>bash scripts/setup.sh</code>) and reload. The API is at <a href="/api/v1/builds">/api/v1</a>.</p>',
        );
    }
    return pageHeaders(reply).type('text/html; charset=utf-8').sendFile('index.html', dist);
  };
  app.get('/', page);
  app.get('/*', page);
}
