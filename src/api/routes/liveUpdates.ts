/**
 * GET /api/v1/live — server-sent events for the web UI (READER: only readable buckets' builds).
 * Frames: `hello` once (`{now}`: refetch what the page shows, then apply changes), `changes`
 * (`{builds: BuildSummary[], verifications: StoredVerification[]}`) whenever storage has newer rows,
 * and a comment every 15 s to keep proxies from closing the stream. The browser reads it with
 * `fetch` (so the bearer token goes in the Authorization header) and reconnects when it ends.
 */
import { z } from 'zod';
import { KilnError } from '../../domain/errors.ts';
import { readableBuckets } from '../auth.ts';
import { type Route } from '../context.ts';
import { type LiveFeed } from '../live.ts';
import { parseInput } from '../validate.ts';

export const liveUpdatesQuery = z.object({}).strict();

const KEEPALIVE_MS = 15_000;

/** The route, on the process's one live feed. */
export function liveUpdates(feed: LiveFeed | undefined): Route {
  return (app, ctx) => {
    const open = new Set<() => void>();
    // Open streams would keep `app.close()` waiting: end them first.
    app.addHook('preClose', (done) => {
      for (const end of [...open]) end();
      done();
    });
    app.get('/api/v1/live', async (req, reply) => {
      parseInput(liveUpdatesQuery, req.query, 'query');
      const readable = new Set(readableBuckets(ctx.registry, req));
      if (!feed) throw new KilnError('UNAVAILABLE', 'this API has no storage for live updates');
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      const unsubscribe = feed.subscribe({
        readable,
        send: (frame) => {
          if (!res.writableEnded) res.write(frame);
        },
      });
      // The feed's cursor is taken before hello: whatever the page fetches after hello, later changes follow.
      try {
        await feed.ready();
      } catch (e) {
        ctx.logger.warn({ err: e }, 'live updates: storage did not answer');
        res.end();
        unsubscribe();
        return;
      }
      res.write(`event: hello\ndata: ${JSON.stringify({ now: new Date().toISOString() })}\n\n`);
      const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
      const end = () => {
        open.delete(end);
        clearInterval(keepalive);
        unsubscribe();
        if (!res.writableEnded) res.end();
      };
      open.add(end);
      res.once('close', end);
    });
  };
}
