/**
 * A TCP relay on 127.0.0.1 to the Temporal server, one per worker generation of the supervisor
 * (workers/supervisor.ts). Cutting it closes every connection through it and refuses new ones, so
 * a worker that outlived an outage can never again reach a server: not a task it polled before the
 * outage and still holds, not a completion it retries, not a poll it left in flight. Bytes pass
 * through unchanged (TLS included: the worker's connection names the server for its certificate).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

/** A running relay. */
export interface Relay {
  /** `127.0.0.1:port`, for the worker's connection. */
  readonly address: string;
  /** Closes every connection through the relay and stops it; idempotent. */
  cut(): Promise<void>;
}

/** Starts a relay to `host:port`. */
export async function openRelay(target: { host: string; port: number }): Promise<Relay> {
  const sockets = new Set<Socket>();
  let cut = false;
  const track = (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };
  const server: Server = createServer({ noDelay: true }, (client) => {
    track(client);
    if (cut) return void client.destroy();
    const upstream = connect({ host: target.host, port: target.port, noDelay: true });
    track(upstream);
    // Either side ending or failing ends both: the worker's client sees a broken connection and retries.
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.once('error', end).once('close', end);
    upstream.once('error', end).once('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };
  return {
    address: `127.0.0.1:${port}`,
    async cut() {
      cut = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

/** `host` and `port` of a `host:port` address (IPv6 in brackets); undefined for anything else. */
export function hostPort(address: string): { host: string; port: number } | undefined {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(address);
  return m ? { host: m[1]!, port: Number(m[2]) } : undefined;
}
