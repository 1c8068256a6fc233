/**
 * A worker whose workflow cache never outlives a Temporal server outage.
 *
 * The hazard: a workflow task the worker has run but the server never made durable (the server
 * died first: an update's speculative task, a task whose completion was lost) stays applied in the
 * worker's cached workflow. When the server is back, the next task for that build runs on the
 * cached state, not on the history the server kept, and its commands can disagree with that
 * history (a lease timer restarted for a heartbeat the history does not hold): on the next replay
 * the build stops on a nondeterminism error. The SDK has no "drop the cache" call, so the
 * supervisor stops the worker as soon as the server is gone and starts a fresh one, with an empty
 * cache, once it answers again; every build then goes on from the server's history.
 *
 * "Gone" is a port that refuses connections (the server process died), or a server that accepts
 * them but leaves several gRPC probes in a row unanswered. A server that is only slow (a busy
 * machine, a long GC) lost nothing, and replacing the worker then would cost every cached build
 * about 10 s: its next task waits on the old worker's sticky queue until that times out.
 *
 * Stopping the old worker is not enough on its own: while it drains, it still holds tasks it polled
 * before the outage and retries their completions, and those reach the restarted server, carrying
 * commands made from its stale cache (a build's history then no longer replays). So each worker
 * talks to the server through a relay of its own (workers/relay.ts), cut the moment the outage is
 * seen: nothing of the old worker reaches the server again.
 */
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { type NativeConnection, type Worker } from '@temporalio/worker';
import type pino from 'pino';
import { hostPort, openRelay, type Relay } from './relay.ts';

/**
 * How long a cut-off worker may take to stop before the supervisor goes on without it (its
 * retries against the cut relay end on their own; it can reach no server meanwhile).
 */
const ABANDON_AFTER_MS = 30_000;

/** One gRPC probe for this many TCP probes. */
const GRPC_PROBE_EVERY = 10;

/** Options for `superviseWorker`. */
export interface SupervisorOptions {
  /** The supervisor's own connection, for its gRPC probes (and every worker's when `connect` is absent). */
  connection: NativeConnection;
  /** The server's `host:port`, probed with a TCP connect as well as a gRPC call. */
  address?: string;
  /**
   * Connects to the server at `address` (a relay's `127.0.0.1:port`), for one worker. Given, and
   * with `address` a `host:port`, every worker gets its own relay and connection, cut at an outage.
   */
  connect?: (address: string) => Promise<NativeConnection>;
  /** Makes a fresh worker (same task queue, empty cache) on `connection`. */
  create: (connection: NativeConnection) => Promise<Worker>;
  logger: pino.Logger;
  /** How often a TCP connect to `address` is tried (a gRPC call every tenth time). @default 100 */
  probeIntervalMs?: number;
  /** How long one probe may take before it counts as unanswered. @default 2000 */
  probeTimeoutMs?: number;
  /**
   * How many gRPC probes in a row must go unanswered before a server that still accepts
   * connections counts as gone (a slow server lost nothing: restarting the worker for it would
   * only delay its builds). @default 5
   */
  unansweredProbes?: number;
}

/** A running supervised worker. */
export interface SupervisedWorker {
  /** Settles when the supervisor stopped: after `shutdown()`, or with a worker's own fatal error. */
  readonly done: Promise<void>;
  /** Workers started so far (1 until the first outage). */
  readonly generation: number;
  /** Outages seen so far (each stopped a worker; its successor starts once the server answers). */
  readonly outages: number;
  /** Stops the current worker (its tasks finish) and the supervisor. */
  shutdown(): void;
}

/** Runs the worker `create` makes, replacing it by a fresh one after every server outage. */
export async function superviseWorker(opts: SupervisorOptions): Promise<SupervisedWorker> {
  const probeIntervalMs = opts.probeIntervalMs ?? 100;
  const probeTimeoutMs = opts.probeTimeoutMs ?? 2000;
  const unansweredProbes = opts.unansweredProbes ?? 5;
  const stopping = new AbortController();
  const target = opts.address === undefined ? undefined : hostPort(opts.address);
  const relayed = opts.connect !== undefined && target !== undefined;

  /** A worker, with the relay and connection of its own when relayed. */
  interface Generation {
    worker: Worker;
    relay?: Relay;
    connection?: NativeConnection;
  }
  const make = async (): Promise<Generation> => {
    if (!relayed) return { worker: await opts.create(opts.connection) };
    const relay = await openRelay(target);
    let connection: NativeConnection | undefined;
    try {
      connection = await opts.connect!(relay.address);
      return { worker: await opts.create(connection), relay, connection };
    } catch (e) {
      await connection?.close().catch(() => undefined);
      await relay.cut();
      throw e;
    }
  };
  /** After its worker stopped: the relay cut (if not yet) and the connection closed. */
  const release = async (g: Generation): Promise<void> => {
    await g.relay?.cut();
    await g.connection
      ?.close()
      .catch((e: unknown) => opts.logger.warn({ err: e }, 'could not close a worker connection'));
  };

  let current = await make();
  let worker = current.worker;
  let generation = 1;
  let outages = 0;

  // A TCP connect: a server process that died refuses it at once, so even an outage far shorter than
  // a gRPC timeout (a dev server restarted in a second) is seen. Every `probeIntervalMs`. Only a
  // refusal (or another error) is an outage: a connect that times out may be this process's own
  // event loop running late, so it is left to the gRPC probe.
  const tcpProbe = (): Promise<TcpProbe> =>
    opts.address === undefined ? Promise.resolve('open') : tcpOpens(opts.address, probeTimeoutMs);
  // A gRPC call, for a server that accepts connections but does not answer (one behind a proxy that
  // restarts). The SDK's connection retries an unavailable server until it is back, deadline or not:
  // no answer in time counts as unanswered (and the call is abandoned). A busy server can be slow to
  // answer one call, so only `unansweredProbes` in a row are an outage.
  const grpcAnswers = (): Promise<boolean> => {
    const signal = AbortSignal.timeout(probeTimeoutMs);
    const call = opts.connection.withAbortSignal(signal, () => opts.connection.workflowService.getSystemInfo({}));
    const late = new Promise<false>((resolve) => signal.addEventListener('abort', () => resolve(false)));
    return Promise.race([
      call.then(
        () => true,
        () => false,
      ),
      late,
    ]);
  };
  const pause = (ms: number): Promise<void> => sleep(ms, undefined, { signal: stopping.signal }).catch(() => undefined);

  /** A fresh worker once the server answers again (undefined when stopped first). */
  const fresh = async (): Promise<Generation | undefined> => {
    for (;;) {
      while (!stopping.signal.aborted && !((await tcpProbe()) === 'open' && (await grpcAnswers())))
        await pause(probeIntervalMs);
      if (stopping.signal.aborted) return undefined;
      try {
        return await make();
      } catch (e) {
        // The server went again while the worker was being made: wait for it once more.
        opts.logger.warn({ err: e, generation }, 'could not make a fresh worker; trying again');
        await pause(probeIntervalMs);
      }
    }
  };

  const loop = async (): Promise<void> => {
    for (;;) {
      let settled = false;
      const run = worker.run().finally(() => (settled = true));
      if (stopping.signal.aborted) worker.shutdown();
      let outage = false;
      let abandon: (() => void) | undefined;
      const abandoned = new Promise<'abandoned'>((resolve) => (abandon = () => resolve('abandoned')));
      let abandonTimer: NodeJS.Timeout | undefined;
      const lost = (how: string) => {
        if (outage || settled || stopping.signal.aborted) return;
        outage = true;
        outages++;
        opts.logger.warn(
          { generation, probe: how },
          'Temporal server does not answer: stopping the worker, so its workflow cache cannot outlive what the server lost',
        );
        // First cut it off: nothing it still holds may reach the server once it is back.
        void current.relay?.cut();
        if (worker.getState() === 'RUNNING') worker.shutdown();
        abandonTimer = setTimeout(() => abandon?.(), ABANDON_AFTER_MS);
      };
      const watch = (async () => {
        let unanswered = 0;
        let grpcInFlight = false;
        for (let i = 1; !stopping.signal.aborted && !settled && !outage; i++) {
          await pause(probeIntervalMs);
          if (i % GRPC_PROBE_EVERY === 0 && !grpcInFlight) {
            grpcInFlight = true;
            void grpcAnswers().then((ok) => {
              grpcInFlight = false;
              unanswered = ok ? 0 : unanswered + 1;
              if (unanswered >= unansweredProbes) lost(`gRPC (${unanswered} probes unanswered)`);
            });
          }
          if ((await tcpProbe()) === 'refused') lost('TCP');
        }
      })();
      // A worker's own failure (not an outage) ends the supervisor with that error.
      const failure = await Promise.race([
        run.then(
          () => undefined,
          (e: unknown) => e,
        ),
        abandoned,
      ]);
      clearTimeout(abandonTimer);
      if (failure === 'abandoned') {
        settled = true; // ends the watch loop
        opts.logger.warn({ generation }, 'the cut-off worker has not stopped yet: going on without it');
      }
      await watch;
      await release(current);
      if (stopping.signal.aborted) return;
      if (!outage) {
        if (failure !== undefined) throw failure;
        return;
      }
      if (failure !== undefined && failure !== 'abandoned')
        opts.logger.warn({ err: failure, generation }, 'worker stopped with an error during the outage');
      const next = await fresh();
      if (next === undefined) return;
      current = next;
      worker = next.worker;
      generation++;
      opts.logger.info({ generation }, 'Temporal server answers again: a fresh worker (empty workflow cache) runs');
    }
  };
  const done = loop();
  return {
    done,
    get generation() {
      return generation;
    },
    get outages() {
      return outages;
    },
    shutdown() {
      stopping.abort();
      if (worker.getState() === 'RUNNING') worker.shutdown();
    },
  };
}

/** What a TCP connect found: a listener, a refusal (or another error), or no answer in time. */
type TcpProbe = 'open' | 'refused' | 'late';

/** Tries a TCP connection to `host:port` (IPv6 in brackets) for up to `timeoutMs`. */
function tcpOpens(address: string, timeoutMs: number): Promise<TcpProbe> {
  const target = hostPort(address);
  if (!target) return Promise.resolve('open'); // not host:port (a unix socket, a URL): only the gRPC probe
  return new Promise((resolve) => {
    const socket = connect({ ...target, timeout: timeoutMs });
    const end = (found: TcpProbe) => {
      socket.destroy();
      resolve(found);
    };
    socket.once('connect', () => end('open'));
    socket.once('timeout', () => end('late'));
    socket.once('error', () => end('refused'));
  });
}
