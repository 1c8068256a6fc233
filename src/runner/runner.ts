/**
 * `kiln runner`: a pull agent. It peeks for SCHEDULED builds of the builders it serves (only those
 * whose dimensions it covers), leases up to its capacity, starts each build, checks out the
 * builder's repository at the build's ref and commit (checkout.ts), runs the builder's command in
 * it with the build's properties as a JSON file and env, streams the log, heartbeats, and reports
 * SUCCESS/FAILURE by exit code (INFRA_FAILURE when the checkout fails or the command cannot start).
 * A lease that is over — seen by the long-polled watch within about a second (a cancel), or by a
 * refused heartbeat — stops the command's whole process tree. The builder's config is read from
 * the API for every build, so a changed config applies to the next build started.
 * `stop()` (SIGTERM) stops leasing, lets running builds finish within the grace period, then
 * kills the rest and fails them INFRA_FAILURE.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type pino from 'pino';
import { type BuilderInfo, isRetryable, KilnApiError, KilnClient, type LeaseResponse } from '../client/kilnClient.ts';
import { type Build, builderPath } from '../domain/build.ts';
import { commandEnv } from './commandEnv.ts';
import { type RunnerSettings } from './config.ts';
import {
  CheckoutInputError,
  type CheckoutResult,
  CheckoutStopped,
  checkoutTarget,
  GitCheckout,
  redactUrl,
} from './checkout.ts';
import { ProgressReporter } from './progressReporter.ts';
import { LogStream } from './logStream.ts';
import { type CommandExit, explainSpawnFailure, runCommand, type RunningCommand } from './processTree.ts';

/** One build this runner holds. */
interface Held {
  build: Build;
  leaseKey: string;
  command?: RunningCommand;
  /** Why the runner stopped the command, when it did. */
  stoppedBecause?: 'lease-lost' | 'shutdown';
  /** What the build log says about the stop, e.g. "the build was CANCELED". */
  stopNote?: string;
  /** Aborted when the build must stop: stops a checkout in progress. */
  abort: AbortController;
  done: Promise<void>;
}

/** Seconds one lease watch waits before it is asked again. */
const WATCH_SECS = 25;

/** Errors that mean "the lease is gone: stop working on this build". */
const LEASE_GONE = new Set(['LEASE_EXPIRED', 'BUILD_IS_COMPLETED', 'BUILD_NOT_FOUND']);

/** True when a build's dimensions are all among `offered`. */
export function covers(offered: readonly string[], required: readonly string[]): boolean {
  return required.every((d) => offered.includes(d));
}

/** See the module comment. */
export class Runner {
  private readonly client: KilnClient;
  private readonly held = new Map<string, Held>();
  private readonly git: GitCheckout;
  private stopping = false;
  private wake: (() => void) | undefined;
  /** Ends the lease watch in flight, so the next one covers the builds held now. */
  private rewatch: (() => void) | undefined;
  /** Aborted once stopping has nothing left to hold: ends the heartbeat loop's wait. */
  private readonly drained = new AbortController();
  private loops: Promise<void>[] = [];

  constructor(
    private readonly s: RunnerSettings,
    private readonly logger: pino.Logger,
  ) {
    this.client = new KilnClient({ baseUrl: s.api, token: s.token });
    this.git = new GitCheckout(resolve(s.gitCacheDir ?? join(s.workDir, 'git-cache')));
  }

  /** The builds this runner holds right now (ids). */
  get running(): string[] {
    return [...this.held.keys()];
  }

  /** Starts peeking and heartbeating. */
  start(): void {
    this.logger.info(
      { name: this.s.name, serve: this.s.serve, dimensions: this.s.dimensions, capacity: this.s.capacity },
      'runner started',
    );
    this.loops = [this.peekLoop(), this.heartbeatLoop(), this.watchLoop()];
  }

  /** Stops leasing; waits up to the grace period, then kills what still runs and fails it INFRA_FAILURE. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.wake?.();
    this.logger.info({ running: this.running, graceSecs: this.s.gracePeriodSecs }, 'runner stopping: no new leases');
    const all = Promise.all([...this.held.values()].map((h) => h.done));
    const graceOver = await Promise.race([
      all.then(() => false),
      sleep(this.s.gracePeriodSecs * 1000).then(() => true),
    ]);
    if (graceOver) {
      for (const h of this.held.values()) {
        h.stoppedBecause ??= 'shutdown';
        h.stopNote ??= `kiln runner ${this.s.name} shut down (grace period over)`;
        h.abort.abort();
        void h.command?.stop(this.s.killTimeoutSecs * 1000);
      }
      await all;
    }
    this.wake?.();
    this.rewatch?.();
    this.drained.abort(); // the heartbeat loop need not sleep out its interval (10 s) to stop
    await Promise.all(this.loops);
    this.logger.info('runner stopped');
  }

  private async sleepUnlessWoken(ms: number): Promise<void> {
    await new Promise<void>((r) => {
      const t = setTimeout(r, ms);
      this.wake = () => {
        clearTimeout(t);
        r();
      };
    });
    this.wake = undefined;
  }

  private async peekLoop(): Promise<void> {
    while (!this.stopping) {
      try {
        await this.fill();
      } catch (e) {
        this.logger.warn({ err: (e as Error).message }, 'peek failed; will retry');
      }
      if (this.stopping) break;
      await this.sleepUnlessWoken(this.s.peekIntervalSecs * 1000);
    }
  }

  /** Peeks and leases until capacity is used or nothing is left. */
  private async fill(): Promise<void> {
    for (const serve of this.s.serve) {
      const free = this.s.capacity - this.held.size;
      if (free <= 0 || this.stopping) return;
      const { builds } = await this.client.peek({
        buckets: [serve.bucket],
        builders: serve.builders,
        dimensions: this.s.dimensions,
        maxBuilds: Math.min(100, free * 2),
      });
      for (const b of builds) {
        if (this.held.size >= this.s.capacity || this.stopping) return;
        if (this.held.has(b.id) || !covers(this.s.dimensions, b.dimensions)) continue;
        const grant = await this.lease(b.id);
        if (grant) this.take(grant);
      }
    }
  }

  /** Leases one build; retries a lost answer with the same request id. Undefined when someone else won. */
  private async lease(id: string): Promise<LeaseResponse | undefined> {
    const requestId = `${this.s.name}/${randomUUID()}`;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.client.lease(id, {
          holder: this.s.name,
          requestId,
          leaseDurationSecs: this.s.leaseDurationSecs,
        });
      } catch (e) {
        if (isRetryable(e) && attempt < 3) {
          await sleep(500 * (attempt + 1));
          continue;
        }
        if (e instanceof KilnApiError && (e.code === 'BUILD_IS_LEASED' || e.code === 'BUILD_IS_COMPLETED'))
          return undefined;
        throw e;
      }
    }
  }

  private take(grant: LeaseResponse): void {
    const h: Held = {
      build: grant.build,
      leaseKey: grant.leaseKey,
      abort: new AbortController(),
      done: Promise.resolve(),
    };
    this.held.set(grant.build.id, h);
    this.rewatch?.();
    h.done = this.runBuild(h)
      .catch((e: unknown) => this.logger.error({ err: e, buildId: h.build.id }, 'build handling failed'))
      .finally(() => {
        this.held.delete(h.build.id);
        this.wake?.();
        this.rewatch?.();
      });
  }

  /**
   * The builder's command and checkout, read for every build (no cache): a config changed and
   * reloaded by restarting Kiln applies to the next build started. Retries a briefly unreachable API.
   */
  private async builderInfo(b: Build): Promise<BuilderInfo> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.client.getBuilder(b.builder);
      } catch (e) {
        if (!(e instanceof KilnApiError && e.code === 'UNAVAILABLE') || attempt >= 4) throw e;
        await sleep(500 * (attempt + 1));
      }
    }
  }

  private async runBuild(h: Held): Promise<void> {
    const b = h.build;
    const log = this.logger.child({ buildId: b.id, builder: builderPath(b.builder), number: b.number });
    // The log attempt is the lease generation the grant's build carries: the key itself is opaque.
    const attempt = String(b.leaseGeneration);
    let info: BuilderInfo;
    try {
      info = await this.builderInfo(b);
    } catch (e) {
      log.error({ err: (e as Error).message }, 'cannot read the builder config');
      await this.report(
        h,
        'fail',
        `kiln runner ${this.s.name} could not read the builder config: ${(e as Error).message}`,
        'INFRA_FAILURE',
      );
      return;
    }
    try {
      // start is idempotent for the same lease key: a lost or failed answer is retried.
      await withRetries(() => this.client.start(b.id, { leaseKey: h.leaseKey }), 5);
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'start refused; dropping the build');
      return;
    }
    log.info({ attempt }, 'build started');
    const stream = new LogStream({
      client: this.client,
      buildId: b.id,
      leaseKey: h.leaseKey,
      flushIntervalMs: this.s.logFlushIntervalSecs * 1000,
      logger: log,
    });
    const command = info.command;
    if (!command) {
      stream.write(`kiln runner: builder ${builderPath(b.builder)} has no command configured\n`);
      await stream.finish();
      await this.report(h, 'fail', `builder ${builderPath(b.builder)} has no command configured`, 'INFRA_FAILURE');
      return;
    }
    const dir = resolve(this.s.workDir, `${b.id}-${attempt}`);
    try {
      await this.runInFolder(h, { ...info, command }, dir, attempt, stream, log);
    } finally {
      if (!this.s.keepBuildDirs) {
        await rm(dir, { recursive: true, force: true }).catch((e: unknown) =>
          log.warn({ err: (e as Error).message, dir }, 'could not remove the build folder'),
        );
      }
    }
  }

  /** Checkout (when the builder has one), command, log and report, in the build's folder `dir`. */
  private async runInFolder(
    h: Held,
    info: BuilderInfo & { command: string[] },
    dir: string,
    attempt: string,
    stream: LogStream,
    log: pino.Logger,
  ): Promise<void> {
    const b = h.build;
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const propertiesFile = join(dir, 'properties.json');
    await writeFile(propertiesFile, JSON.stringify(b.input.properties, null, 2));
    // The whole input (properties, changes, gerritChanges, gitilesCommit), as the build's JSON has it.
    const inputFile = join(dir, 'input.json');
    await writeFile(inputFile, JSON.stringify(b.input, null, 2));
    // Written by the command (if it reports steps and output properties); read by `ProgressReporter`.
    const stepsFile = join(dir, 'steps.json');
    const outputPropertiesFile = join(dir, 'output_properties.json');
    stream.write(
      `kiln runner ${this.s.name}: ${builderPath(b.builder)} #${b.number} (build ${b.id}, attempt ${attempt})\n`,
    );
    let checkout: CheckoutResult | undefined;
    if (info.checkout) {
      try {
        const target = checkoutTarget(info.checkout, b);
        checkout = await this.git.checkout({
          target,
          dir: join(dir, 'src'),
          onOutput: (t) => stream.write(t),
          signal: h.abort.signal,
          killTimeoutSecs: this.s.killTimeoutSecs,
        });
      } catch (e) {
        const stopped = e instanceof CheckoutStopped;
        const message = (e as Error).message;
        stream.write(
          `kiln runner: ${stopped ? `checkout stopped: ${h.stopNote ?? 'the build must stop'}` : message}\n`,
        );
        await stream.finish();
        log.info({ err: message }, 'checkout did not finish');
        if (h.stoppedBecause === 'lease-lost') return;
        if (h.stoppedBecause === 'shutdown') {
          await this.report(
            h,
            'fail',
            `kiln runner ${this.s.name} shut down before the build finished`,
            'INFRA_FAILURE',
          );
        } else if (e instanceof CheckoutInputError) {
          await this.report(h, 'fail', `the build's input cannot be checked out: ${message}`, 'BUILD_FAILURE');
        } else {
          await this.report(
            h,
            'fail',
            `checkout of ${redactUrl(info.checkout.repo)} failed: ${message}`,
            'INFRA_FAILURE',
          );
        }
        return;
      }
    }
    const cwd = checkout?.dir ?? dir;
    stream.write(`kiln runner: in ${cwd}\n`);
    stream.write(
      `$ ${info.command.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`)).join(' ')}\n`,
    );
    const env = commandEnv(process.env, this.s, {
      KILN_BUILD_ID: b.id,
      KILN_BUILD_NUMBER: String(b.number),
      KILN_BUILDER: builderPath(b.builder),
      KILN_PROJECT: b.builder.project,
      KILN_BUCKET: b.builder.bucket,
      KILN_PROPERTIES_FILE: propertiesFile,
      KILN_INPUT_FILE: inputFile,
      KILN_STEPS_FILE: stepsFile,
      KILN_OUTPUT_PROPERTIES_FILE: outputPropertiesFile,
      KILN_ATTEMPT: attempt,
      KILN_BUILD_DIR: dir,
      KILN_RUNNER: this.s.name,
      ...(checkout && info.checkout
        ? {
            KILN_CHECKOUT_DIR: checkout.dir,
            KILN_REPOSITORY: checkout.repo,
            KILN_REF: checkout.ref,
            KILN_REVISION: checkout.revision,
          }
        : {}),
    });
    // ---- chromium2: steps and output properties the command writes, sent while it runs and when it exits ----
    const progress = new ProgressReporter({
      client: this.client,
      buildId: b.id,
      leaseKey: h.leaseKey,
      stepsFile,
      outputPropertiesFile,
      intervalMs: this.s.logFlushIntervalSecs * 1000,
      logger: log,
      note: (line) => stream.write(line),
    });
    progress.start();
    h.command = runCommand(info.command, { cwd, env, onOutput: (chunk) => stream.write(chunk) });
    // A refusal that arrived while the command was being spawned.
    if (h.stoppedBecause) void h.command.stop(this.s.killTimeoutSecs * 1000);
    const exit = await h.command.exited;
    const spawnMessage =
      exit.kind === 'spawnFailed' ? explainSpawnFailure(info.command[0] ?? '', cwd, env, exit.message) : undefined;
    if (h.stoppedBecause === 'lease-lost') await progress.stop();
    else await progress.finish();
    stream.write(`\nkiln runner: ${spawnMessage ?? describeExit(exit)}\n`);
    if (h.stopNote) stream.write(`kiln runner: stopped the command: ${h.stopNote}\n`);
    await stream.finish();
    log.info({ exit, stoppedBecause: h.stoppedBecause }, 'command ended');
    if (h.stoppedBecause === 'lease-lost') return;
    if (h.stoppedBecause === 'shutdown') {
      await this.report(h, 'fail', `kiln runner ${this.s.name} shut down before the build finished`, 'INFRA_FAILURE');
    } else if (spawnMessage !== undefined) {
      await this.report(h, 'fail', spawnMessage, 'INFRA_FAILURE');
    } else if (exit.kind === 'exited' && exit.code === 0) {
      await this.report(h, 'succeed', undefined);
    } else {
      await this.report(h, 'fail', describeExit(exit), 'BUILD_FAILURE');
    }
  }

  /** Ends the build; retries lost answers (a retry of a landed report gets the same answer). */
  private async report(
    h: Held,
    kind: 'succeed' | 'fail',
    summary: string | undefined,
    failureReason?: 'BUILD_FAILURE' | 'INFRA_FAILURE',
  ): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        const b =
          kind === 'succeed'
            ? await this.client.succeed(h.build.id, { leaseKey: h.leaseKey, summaryMarkdown: summary })
            : await this.client.fail(h.build.id, { leaseKey: h.leaseKey, summaryMarkdown: summary, failureReason });
        this.logger.info({ buildId: h.build.id, status: b.status }, 'build reported');
        return;
      } catch (e) {
        // Any 5xx or lost answer (Kiln or Temporal down, a failed call): the lease is still held and
        // heartbeated meanwhile, and a retry of a report that landed gets the same answer.
        if (isRetryable(e) && attempt < REPORT_RETRIES) {
          this.logger.warn({ buildId: h.build.id, err: (e as Error).message, attempt }, 'report failed; will retry');
          await sleep(backoffMs(attempt));
          continue;
        }
        this.logger.warn({ buildId: h.build.id, err: (e as Error).message }, 'report refused');
        return;
      }
    }
  }

  private async heartbeatLoop(): Promise<void> {
    for (;;) {
      const ms = this.s.heartbeatIntervalSecs * 1000;
      if (this.drained.signal.aborted) await sleep(ms);
      else await sleep(ms, undefined, { signal: this.drained.signal }).catch(() => undefined);
      if (this.stopping && this.held.size === 0) return;
      const items = [...this.held.values()].map((h) => ({
        buildId: h.build.id,
        leaseKey: h.leaseKey,
        leaseDurationSecs: this.s.leaseDurationSecs,
      }));
      for (let i = 0; i < items.length; i += 100) {
        try {
          const { results } = await this.client.heartbeatBatch(items.slice(i, i + 100));
          for (const r of results) {
            if (r.error && LEASE_GONE.has(r.error.code)) this.leaseLost(r.buildId, r.error.code, r.error.message);
          }
        } catch (e) {
          this.logger.warn({ err: (e as Error).message }, 'heartbeat failed; will retry');
        }
      }
    }
  }

  /**
   * Long-polls `POST /api/v1/watch` with every build held, so a cancel (or a timeout, or a lease
   * reset) stops the build within about a second instead of at the next heartbeat. Restarted
   * whenever the held set changes. An API without the route (older Kiln) leaves it to heartbeats.
   */
  private async watchLoop(): Promise<void> {
    let unsupported = false;
    while (!(this.stopping && this.held.size === 0)) {
      const items = [...this.held.values()]
        .filter((h) => h.stoppedBecause === undefined)
        .map((h) => ({ buildId: h.build.id, leaseKey: h.leaseKey }));
      const ac = new AbortController();
      this.rewatch = () => ac.abort();
      try {
        if (items.length === 0 || unsupported) {
          await new Promise<void>((r) => ac.signal.addEventListener('abort', () => r(), { once: true }));
          continue;
        }
        const { results } = await this.client.watch(items.slice(0, 100), {
          timeoutSecs: WATCH_SECS,
          signal: ac.signal,
        });
        for (const r of results) {
          if (LEASE_GONE.has(r.error.code)) this.leaseLost(r.buildId, r.error.code, r.error.message, r.status);
        }
      } catch (e) {
        if (ac.signal.aborted) continue;
        if (e instanceof KilnApiError && e.code === 'NOT_FOUND') {
          this.logger.warn({ err: e.message }, 'the API has no lease watch; cancels stop builds at the next heartbeat');
          unsupported = true;
          continue;
        }
        this.logger.warn({ err: (e as Error).message }, 'lease watch failed; will retry');
        await sleep(1000);
      } finally {
        this.rewatch = undefined;
      }
    }
  }

  /** The lease is over (refused heartbeat, or the watch saw it end): stop the build's process tree. */
  private leaseLost(buildId: string, code: string, message: string, status?: string): void {
    const h = this.held.get(buildId);
    if (!h || h.stoppedBecause === 'lease-lost') return;
    this.logger.warn({ buildId, code, status }, 'lease is over: stopping the build');
    h.stoppedBecause = 'lease-lost';
    h.stopNote =
      code === 'BUILD_IS_COMPLETED'
        ? `the build ended${status ? ` ${status}` : ''} while it ran (${message})`
        : code === 'LEASE_EXPIRED'
          ? `this runner's lease is over; the build may run again elsewhere (${message})`
          : message;
    h.abort.abort();
    void h.command?.stop(this.s.killTimeoutSecs * 1000);
  }
}

function describeExit(e: CommandExit): string {
  if (e.kind === 'spawnFailed') return `the command could not be started: ${e.message}`;
  if (e.signal) return `the command was killed by ${e.signal}`;
  return `the command exited with code ${e.code}`;
}

/** Tries of a report before the runner gives up (about 5 minutes of backoff). */
const REPORT_RETRIES = 15;

/** 1 s, 2 s, 4 s … at most 30 s. */
function backoffMs(attempt: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.min(attempt, 5));
}

/** Runs `fn`, retrying retryable errors up to `tries` times with backoff. */
async function withRetries<T>(fn: () => Promise<T>, tries: number): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (!isRetryable(e) || attempt + 1 >= tries) throw e;
      await sleep(backoffMs(attempt));
    }
  }
}
