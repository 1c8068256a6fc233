/**
 * KilnClient's transport (node:http, not fetch): JSON both ways, error answers as KilnApiError with
 * the server's code, no answer in time or a cut-off answer as UNAVAILABLE (retryable), and a caller's
 * abort as the caller's own reason. Against real HTTP servers on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { KilnApiError, KilnClient } from '../../src/client/kilnClient.ts';

describe('KilnClient transport', () => {
  let server: Server;
  let base: string;
  const seen: { method?: string; url?: string; auth?: string; body: string }[] = [];

  before(async () => {
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, auth: req.headers.authorization, body });
        if (req.url === '/ok') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ echo: body.length ? (JSON.parse(body) as unknown) : null }));
        } else if (req.url === '/refused') {
          res.writeHead(409, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ code: 'BUILD_IS_LEASED', message: 'build 1 is leased' }));
        } else if (req.url === '/cut') {
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
          res.write('{"partial":');
          setTimeout(() => res.socket?.destroy(), 20);
        } else if (req.url === '/slow') {
          setTimeout(() => res.end('{}'), 2000).unref();
        } else {
          res.writeHead(404).end();
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('sends JSON with the token and parses the answer', async () => {
    const c = new KilnClient({ baseUrl: base, token: 't0ken' });
    const got = await c.request<{ echo: unknown }>('POST', '/ok', { a: 'ü', n: 1 });
    assert.deepEqual(got, { echo: { a: 'ü', n: 1 } });
    const last = seen[seen.length - 1]!;
    assert.equal(last.method, 'POST');
    assert.equal(last.auth, 'Bearer t0ken');
    assert.deepEqual(await c.request('GET', '/ok'), { echo: null });
  });

  it("answers an error answer with the server's code, final", async () => {
    const c = new KilnClient({ baseUrl: base });
    const e = await c.request('POST', '/refused', {}).catch((x: unknown) => x);
    assert.ok(e instanceof KilnApiError);
    assert.equal(e.code, 'BUILD_IS_LEASED');
    assert.equal(e.status, 409);
    assert.equal(e.retryable, false);
  });

  it('answers UNAVAILABLE (retryable) for no answer in time and for a cut-off answer', async () => {
    const c = new KilnClient({ baseUrl: base });
    const slow = await c.request('GET', '/slow', undefined, { timeoutMs: 200 }).catch((x: unknown) => x);
    assert.ok(slow instanceof KilnApiError);
    assert.equal(slow.code, 'UNAVAILABLE');
    assert.match(slow.message, /no answer in time/);
    assert.equal(slow.retryable, true);
    const cut = await c.request('GET', '/cut').catch((x: unknown) => x);
    assert.ok(cut instanceof KilnApiError, String(cut));
    assert.equal(cut.code, 'UNAVAILABLE');
  });

  it('answers UNAVAILABLE naming the address when nothing listens', async () => {
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const port = (dead.address() as AddressInfo).port;
    await new Promise((r) => dead.close(r));
    const e = await new KilnClient({ baseUrl: `http://127.0.0.1:${port}` })
      .request('GET', '/ok')
      .catch((x: unknown) => x);
    assert.ok(e instanceof KilnApiError);
    assert.equal(e.code, 'UNAVAILABLE');
    assert.match(e.message, new RegExp(`cannot reach Kiln at http://127\\.0\\.0\\.1:${port} \\(.*ECONNREFUSED`));
  });

  it("rejects with the caller's reason when the caller aborts", async () => {
    const ac = new AbortController();
    const p = new KilnClient({ baseUrl: base }).request('GET', '/slow', undefined, { signal: ac.signal });
    const reason = new Error('runner stopping');
    setTimeout(() => ac.abort(reason), 50);
    await assert.rejects(p, (e) => e === reason);
  });
});
