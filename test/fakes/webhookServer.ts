/**
 * A fake chat / webhook endpoint at the HTTP level: records every POST (path, headers, raw body,
 * parsed JSON), answers 200 `ok` as Mattermost and Slack incoming webhooks do, and can be told to
 * fail the next requests (HTTP status) or to hold its answers (for crash tests). The real
 * notification code runs against it.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';

/** One request the fake received. */
export interface ReceivedPost {
  path: string;
  headers: IncomingHttpHeaders;
  raw: string;
  json: Record<string, unknown>;
}

/** A running fake endpoint. */
export interface WebhookServer {
  url: string;
  received: ReceivedPost[];
  /** Answer the next `n` requests with `status` (they still count as received). */
  failNext(n: number, status?: number): void;
  /** While held, requests are recorded but not answered until `release()`. */
  hold(): void;
  release(): void;
  close(): Promise<void>;
}

/** Starts the fake on a free loopback port. */
export async function startWebhookServer(): Promise<WebhookServer> {
  const received: ReceivedPost[] = [];
  let failures: { n: number; status: number } = { n: 0, status: 503 };
  let held = false;
  const waiting: (() => void)[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        // recorded as is
      }
      received.push({ path: req.url ?? '/', headers: req.headers, raw, json });
      const answer = () => {
        if (failures.n > 0) {
          failures = { ...failures, n: failures.n - 1 };
          res.writeHead(failures.status, { 'content-type': 'text/plain' }).end('try later');
          return;
        }
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      };
      if (held) waiting.push(answer);
      else answer();
    });
  });
  server.unref();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    failNext: (n, status = 503) => {
      failures = { n, status };
    },
    hold: () => {
      held = true;
    },
    release: () => {
      held = false;
      for (const w of waiting.splice(0)) w();
    },
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
