/**
 * A bound on the work one client can put on Temporal through the calls a lease key authorizes
 * (start, heartbeat, succeed, fail, log uploads, tinderbox reports): those need no bearer token, so
 * without a bound one client could keep any number of workflow updates in flight. Each client
 * (by address) gets at most `api.maxLeaseCallsInFlightPerClient` such requests at a time; more are
 * answered UNAVAILABLE at once (retry), so they never queue up behind Temporal.
 */
import { type FastifyInstance, type FastifyRequest } from 'fastify';
import { KilnError } from '../domain/errors.ts';
import { type ApiContext } from './context.ts';

/** Counts in-flight requests per client address. */
export class ClientLimiter {
  private readonly inFlight = new Map<string, number>();

  constructor(private readonly max: number) {}

  /** Runs `fn` for the client at `address`, or refuses with UNAVAILABLE when it has `max` running. */
  async run<T>(address: string, fn: () => Promise<T>): Promise<T> {
    const n = this.inFlight.get(address) ?? 0;
    if (n >= this.max) {
      throw new KilnError(
        'UNAVAILABLE',
        `${address} has ${n} lease-key calls in flight (api.maxLeaseCallsInFlightPerClient); retry once some have answered`,
      );
    }
    this.inFlight.set(address, n + 1);
    try {
      return await fn();
    } finally {
      const left = (this.inFlight.get(address) ?? 1) - 1;
      if (left > 0) this.inFlight.set(address, left);
      else this.inFlight.delete(address);
    }
  }
}

const limiters = new WeakMap<FastifyInstance, ClientLimiter>();

/** Runs a lease-key call under the app's one per-client limiter (made on first use). */
export function leaseCall<T>(
  app: FastifyInstance,
  ctx: ApiContext,
  req: FastifyRequest,
  fn: () => Promise<T>,
): Promise<T> {
  let l = limiters.get(app);
  if (!l) {
    l = new ClientLimiter(ctx.registry.config.api.maxLeaseCallsInFlightPerClient);
    limiters.set(app, l);
  }
  return l.run(req.ip, fn);
}
