/**
 * The build service: what the API (and tests) call to schedule builds and to talk to their
 * workflows. It turns requests into workflow starts and updates, and Temporal failures back into
 * Kiln's fixed error codes. Auth is the caller's job.
 */
import { randomInt } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import {
  type Client,
  type Connection,
  isGrpcDeadlineError,
  isGrpcServiceError,
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
} from '@temporalio/client';
import { ApplicationFailure, WorkflowIdConflictPolicy, WorkflowIdReusePolicy } from '@temporalio/common';
import type pino from 'pino';
import { type Registry } from '../config/load.ts';
import { type BuilderConfig } from '../config/schema.ts';
import {
  type Build,
  type BuilderId,
  type BuildTimeouts,
  bucketPath,
  builderPath,
  isEnded,
  scheduledBuildOf,
} from '../domain/build.ts';
import { blamelistOf, type BuildChange, inputBuildsetTags } from '../domain/buildInputs.ts';
import { type BuildStep, withReportedProgress } from '../domain/steps.ts';
import { buildWorkflowId, newBuildId } from '../domain/buildId.ts';
import { COMPLETE_OUTCOMES, type CompleteKind, leaseKeyGeneration } from '../domain/buildMachine.ts';
import { type ErrorCode, isErrorCode, KilnError, UpstreamError } from '../domain/errors.ts';
import { initialBuildSearchAttributes } from '../domain/searchAttributes.ts';
import { parseTag } from '../domain/tags.ts';
import { countTransition } from '../metrics/builds.ts';
import { type KilnMetrics } from '../metrics/registry.ts';
import { type StoredVerification } from '../domain/verification.ts';
import {
  type BuildPage,
  type BuildQuery,
  type LeaseKeyCheck,
  type PeekQuery,
  type Storage,
  type VerificationQuery,
} from '../storage/storage.ts';
import {
  type BuildWorkflowInput,
  buildWorkflow,
  cancelSignal,
  type CompleteRequest,
  failUpdate,
  getBuildQuery,
  type HeartbeatReply,
  heartbeatUpdate,
  type LeaseGrant,
  leaseUpdate,
  logWriterQuery,
  staleReportUpdate,
  setPriorityUpdate,
  startUpdate,
  storedUpdate,
  succeedUpdate,
} from '../../workflows/build.ts';
import { swarmingBuildWorkflow, swarmingNotifySignal } from '../../workflows/swarmingBuild.ts';
import { planSwarmingBuild, type SwarmingScheduleOptions } from './swarming.ts';

/** A schedule request after edge validation. */
export interface ScheduleRequest {
  builder: BuilderId;
  properties?: Record<string, unknown>;
  tags?: string[];
  priority?: number;
  /** Extra dimensions beyond the builder's (`key:value`). */
  dimensions?: string[];
  requestId?: string;
  createdBy?: string;
  /** The changes the build is for (Buildbot-buildbucket's `changes`); their authors make `blamelist`. */
  changes?: BuildChange[];
  gerritChanges?: Build['input']['gerritChanges'];
  /** The commit a git poller scheduled this build for. */
  gitilesCommit?: Build['input']['gitilesCommit'];
  /** Overrides of the builder's timeouts, in seconds (tests and special runs). */
  schedulingTimeoutSecs?: number;
  executionTimeoutSecs?: number;
  /** Only for builders of a Swarming bucket: per-build builder override and canary choice. */
  swarming?: SwarmingScheduleOptions;
}

/** Property keys Kiln reserves for itself; a schedule request may not set them. */
export const RESERVED_PROPERTIES = ['buildbucket', '$recipe_engine/buildbucket'] as const;

/** Builder config → the timeouts a build keeps for its whole life. */
export function timeoutsOf(
  cfg: BuilderConfig,
  req?: Pick<ScheduleRequest, 'schedulingTimeoutSecs' | 'executionTimeoutSecs'>,
): BuildTimeouts {
  return {
    schedulingTimeoutMs: (req?.schedulingTimeoutSecs ?? cfg.schedulingTimeoutSecs) * 1000,
    executionTimeoutMs: (req?.executionTimeoutSecs ?? cfg.executionTimeoutSecs) * 1000,
    defaultLeaseMs: cfg.leaseDurationSecs * 1000,
    maxLeaseMs: cfg.maxLeaseDurationSecs * 1000,
    maxLeaseResets: cfg.maxLeaseResets,
  };
}

/** Options of `BuildService`. */
export interface BuildServiceOptions {
  client: Client;
  storage: Storage;
  registry: Registry;
  taskQueue: string;
  logger: pino.Logger;
  /**
   * How long one call that needs only the Temporal server (start, signal, describe) may take before
   * the service answers UNAVAILABLE. @default 5000
   */
  temporalRpcTimeoutMs?: number;
  /**
   * How long a build's workflow may take to answer an update or a query (that needs a worker)
   * before the service answers UNAVAILABLE. @default 10000
   */
  workflowAnswerTimeoutMs?: number;
  /**
   * Answer heartbeats from the lease the workflow last set while more than half of it is left
   * (`BuildService.leases`). Off where this process's clock is not the workflows' (the time-skipping
   * test server), unless `clock` gives theirs. @default true
   */
  answerHeartbeatsFromLeases?: boolean;
  /**
   * The API answers a heartbeat itself only this long after the workflow last heard from the lease's
   * holder (see `WORKFLOW_CONTACT_MS`). @default 30000
   */
  workflowContactMs?: number;
  /** The workflows' clock, for the leases above. @default Date.now */
  clock?: () => number;
  /** Counts the SCHEDULED transition of the builds `schedule` stores (the workflow's own write then changes nothing). */
  metrics?: KilnMetrics;
  /**
   * Told of every build whose workflow left a call unanswered (UNAVAILABLE), so a workflow stopped
   * on a nondeterminism error is looked at at once (`BuildRepairer.noteUnanswered`).
   */
  onUnanswered?: (buildId: string) => void;
}

const CANCEL_WAIT_MS = 5000;
/**
 * How long `schedule` waits for a lease-mode build's workflow to store it. Longer only when no
 * worker runs; the build is already durable then (its workflow exists) and is stored once one does.
 * @default 3000
 */
const STORED_WAIT_MS = 3000;
/**
 * Builds a process may answer `schedule` for before their first workflow task has run; beyond that
 * `schedule` waits for each new build's first task (update-with-start), see `startLeaseBuild`.
 */
const SCHEDULE_AHEAD_LIMIT = 64;
/** How often `schedule` looks at most whether the first tasks of those builds have run. */
const FIRST_TASK_CHECK_MS = 200;
/** Default of `BuildServiceOptions.temporalRpcTimeoutMs`. */
export const TEMPORAL_RPC_TIMEOUT_MS = 5000;
/** Default of `BuildServiceOptions.workflowAnswerTimeoutMs`. */
export const WORKFLOW_ANSWER_TIMEOUT_MS = 10_000;
/** Heartbeats of one batch sent to their workflows at a time. */
const BATCH_CONCURRENCY = 8;

/** The gRPC error of a Temporal failure: the failure itself or the one it wraps. */
function grpcError(e: unknown): { code?: number } | undefined {
  if (isGrpcServiceError(e)) return e as { code?: number };
  const cause = (e as { cause?: unknown })?.cause;
  return isGrpcServiceError(cause) ? (cause as { code?: number }) : undefined;
}

/** A call that ran out of time (ours or the server's): it may or may not have taken effect. */
function isTimeout(e: unknown): boolean {
  const code = grpcError(e)?.code;
  return e instanceof WorkflowUpdateRPCTimeoutOrCancelledError || isGrpcDeadlineError(e) || code === 4 || code === 1;
}

/** The Kiln error a Temporal failure stands for, when it means "not reachable or not answering in time". */
function unavailableError(
  e: unknown,
  what: string,
  ms: number,
  address: string,
  taskQueue: string,
): KilnError | undefined {
  const grpc = grpcError(e);
  const code = grpc?.code;
  // 14 UNAVAILABLE: no connection. 8 RESOURCE_EXHAUSTED, 10 ABORTED: the server sheds load or
  // lost a race. 4 DEADLINE_EXCEEDED / 1 CANCELLED: our own time limit.
  if (code === 14) {
    return new KilnError('UNAVAILABLE', `Temporal is unreachable at ${address} (${what}); retry`);
  }
  if (code === 8 || code === 10) {
    return new KilnError('UNAVAILABLE', `Temporal at ${address} refused the call for now (${what}); retry`, {
      cause: grpc,
    });
  }
  if (isTimeout(e)) {
    return new KilnError(
      'UNAVAILABLE',
      `${what}: no answer within ${ms} ms (Temporal at ${address} is unreachable or slow, or no worker polls task queue ${taskQueue}); retry`,
    );
  }
  return undefined;
}

// ---- issue 18: what the API remembers between a runner's calls (fewer storage reads per build) ----
/** Builds whose bucket the service remembers; a build's bucket never changes. */
const BUCKET_CACHE_SIZE = 100_000;
/** Lease keys this process granted, per build, that need no storage screen before the workflow. */
const GRANTED_KEY_CACHE_SIZE = 20_000;
/** Candidates `leaseNext` peeks for, and tries in order while others win the race for them. */
const LEASE_NEXT_CANDIDATES = 32;
/** Refusals that mean "someone else took this build first": `leaseNext` tries the next one. */
const LOST_LEASE_RACE = [
  'BUILD_IS_LEASED',
  'BUILD_IS_COMPLETED',
  'BUILD_NOT_FOUND',
  'INVALID_BUILD_STATE',
  'UNAVAILABLE',
];
// ---- end issue 18 ----

/** A lease as its workflow last answered for it through this process (`BuildService.leases`). */
interface KnownLease {
  leaseKey: string;
  expiresMs: number;
  /** The duration the runner asked for then (undefined: the builder's default). */
  requestedMs: number | undefined;
  /** When (this process's clock) the workflow set it: its last contact with the holder. */
  setAtMs: number;
}

/**
 * The API answers a heartbeat itself only this long after the workflow last heard from the holder, so
 * a heartbeating runner reaches its workflow (and `KilnLastHeartbeatAt` in visibility) at least this
 * often however long its lease: `kiln stuck --heartbeat-older 60` never finds a healthy runner.
 */
const WORKFLOW_CONTACT_MS = 30_000;

/** See the module comment. */
export class BuildService {
  private readonly rpcMs: number;
  private readonly answerMs: number;
  /** Build id → `project/bucket`, for auth without reading the build (issue 18). */
  private readonly buckets = new LRUCache<string, string>({ max: BUCKET_CACHE_SIZE });
  /**
   * Build id → the lease key this process granted last. A key found here skips the storage screen:
   * the workflow validates every key anyway, the screen only spares it forged ones (issue 18).
   */
  private readonly grantedKeys = new LRUCache<string, string>({ max: GRANTED_KEY_CACHE_SIZE });
  /**
   * Build id → the lease its workflow last answered for through this process (a grant or a heartbeat):
   * while more than half of it is left, a heartbeat is answered from here and one storage read, not by
   * the workflow (issue 18). See `heartbeatsFromLeases`.
   */
  private readonly leases = new LRUCache<string, KnownLease>({ max: GRANTED_KEY_CACHE_SIZE });
  /** Builds a `leaseNext` call of this process is leasing at this moment (issue 18). */
  private readonly leasingNext = new Set<string>();
  /** Builds this process answered `schedule` for before their first workflow task ran (as far as it knows), oldest first. */
  private readonly ahead: string[] = [];
  private aheadCheckedAt = 0;
  private checkingAhead: Promise<void> | undefined;

  constructor(private readonly o: BuildServiceOptions) {
    this.rpcMs = o.temporalRpcTimeoutMs ?? TEMPORAL_RPC_TIMEOUT_MS;
    this.answerMs = o.workflowAnswerTimeoutMs ?? WORKFLOW_ANSWER_TIMEOUT_MS;
  }

  /** host:port of the Temporal server, for messages. */
  private get temporalAddress(): string {
    return (this.o.client.connection as Partial<Connection>).options?.address ?? 'its configured address';
  }

  /**
   * Runs Temporal calls with a deadline (`ms` from now, or `deadline`), and turns "unreachable" and
   * "no answer in time" into UNAVAILABLE naming the server and the task queue.
   */
  private async temporal<T>(what: string, ms: number, fn: () => Promise<T>, deadline = Date.now() + ms): Promise<T> {
    try {
      return await this.o.client.withDeadline(deadline, fn);
    } catch (e) {
      throw unavailableError(e, what, ms, this.temporalAddress, this.o.taskQueue) ?? e;
    }
  }

  /** Schedules a build, or returns the build an earlier request with the same `requestId` made. */
  async schedule(req: ScheduleRequest): Promise<Build> {
    const swarming = planSwarmingBuild(this.o.registry, req);
    const cfg = swarming?.builderConfig ?? this.o.registry.builder(req.builder);
    if (!cfg) throw this.o.registry.builderNotFound(req.builder);
    const properties = { ...cfg.properties, ...(req.properties ?? {}) };
    // ---- chromium2: Swarmbucket's blamelist (the changes' author emails), unless the request names one ----
    if (req.changes && req.changes.length > 0 && !('blamelist' in properties)) {
      properties['blamelist'] = blamelistOf(req.changes);
    }
    for (const k of RESERVED_PROPERTIES) {
      if (req.properties && k in req.properties) throw new KilnError('INVALID_ARGUMENT', `properties.${k} is reserved`);
    }
    const tags = req.tags ?? [];
    tags.forEach((t, i) => {
      if (!parseTag(t)) throw new KilnError('INVALID_ARGUMENT', `tags[${i}]: "${t}" is not a key:value tag`);
    });
    const reservation = await this.o.storage.reserveBuild({
      buildId: newBuildId(Date.now(), randomInt(65536)),
      builder: req.builder,
      requestKey: req.requestId === undefined ? undefined : `${bucketPath(req.builder)}/${req.requestId}`,
    });
    if (!reservation.created) {
      const existing = await this.find(reservation.buildId);
      if (existing) return existing;
      // The first request reserved the number but died before starting the workflow: start it now.
    }
    const now = new Date().toISOString();
    const build = scheduledBuildOf({
      id: reservation.buildId,
      builder: req.builder,
      number: reservation.number,
      tags: [...new Set([...tags, ...inputBuildsetTags(req), `builder:${req.builder.builder}`])],
      input: {
        properties,
        ...(req.changes ? { changes: req.changes } : {}),
        ...(req.gerritChanges ? { gerritChanges: req.gerritChanges } : {}),
        ...(req.gitilesCommit ? { gitilesCommit: req.gitilesCommit } : {}),
      },
      priority: req.priority ?? cfg.priority,
      dimensions: [...new Set([...cfg.dimensions, ...(req.dimensions ?? [])])].sort(),
      createTime: now,
      createdBy: req.createdBy,
    });
    const timeouts = timeoutsOf(cfg, req);
    this.buckets.set(build.id, bucketPath(build.builder));
    if (swarming) {
      await this.startWorkflow(swarmingBuildWorkflow, build, [{ build, timeouts, swarming: swarming.spec }]);
      return build;
    }
    return this.startLeaseBuild(build, { build, timeouts });
  }

  private workflowStartOptions(build: Build) {
    return {
      workflowId: buildWorkflowId(build.id),
      taskQueue: this.o.taskQueue,
      workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
      typedSearchAttributes: initialBuildSearchAttributes(build),
      staticSummary: `${builderPath(build.builder)} #${build.number} — build ${build.id}${build.createdBy ? `, scheduled by ${build.createdBy}` : ''}`,
      staticDetails: `tags: ${build.tags.join(', ') || '(none)'}`,
    };
  }

  /** Swarming buckets run `swarmingBuildWorkflow`: same ID, messages and storage, but pushed to Swarming. */
  private async startWorkflow(
    workflow: typeof swarmingBuildWorkflow,
    build: Build,
    args: Parameters<typeof swarmingBuildWorkflow>,
  ): Promise<void> {
    try {
      await this.temporal(`starting build ${build.id}`, this.rpcMs, () =>
        this.o.client.workflow.start(workflow, { ...this.workflowStartOptions(build), args }),
      );
    } catch (e) {
      if (!(e instanceof WorkflowExecutionAlreadyStartedError)) throw e;
    }
  }

  /**
   * Starts a lease-mode build: while the workers keep up with schedule (`workersKeepUp`), by
   * starting its workflow and then writing the build to storage itself, so the build is leasable
   * (peek) and readable (GET) when `schedule` returns without waiting for a workflow task (issue 18:
   * update-with-start cost a worker's round trip per build). Otherwise with update-with-start, which
   * answers once the workflow has stored the build: a burst of schedules then waits for the workers
   * instead of piling up first tasks that every lease would queue behind. Started first, stored second:
   * a crash between the two loses nothing, the workflow's own first write (the same version and
   * content, which storage then ignores) stores it all the same. Insert-only: it never replaces what
   * the workflow wrote first. When storage fails here the build is durable all the same and its
   * workflow stores it once storage is back.
   */
  private async startLeaseBuild(build: Build, input: BuildWorkflowInput): Promise<Build> {
    if (!(await this.workersKeepUp())) return this.startLeaseBuildAndWait(build, input);
    // A deadline, not an abort signal: it also cuts the client's retries while Temporal is down.
    const deadline = Date.now() + STORED_WAIT_MS;
    const started = await this.started(build, deadline, () =>
      this.o.client.withDeadline(deadline, () =>
        this.o.client.workflow.start(buildWorkflow, { ...this.workflowStartOptions(build), args: [input] }),
      ),
    );
    if (started === 'ended') return build;
    this.ahead.push(build.id);
    try {
      const inserted = await this.o.storage.insertBuild(build);
      if (inserted && this.o.metrics) countTransition(this.o.metrics, undefined, build);
    } catch (e) {
      this.o.logger.warn({ buildId: build.id, err: e }, 'scheduled; not stored yet (its workflow stores it)');
    }
    return build;
  }

  /**
   * Starts a lease-mode build with update-with-start and answers once its workflow has stored it,
   * so the build is leasable (peek) and readable (GET) when `schedule` returns (see `startLeaseBuild`).
   * Without a worker that takes `STORED_WAIT_MS`: the server holds the answer back while no worker
   * takes the update, so the service then asks whether the workflow exists (it is durable as soon as
   * it does).
   */
  private async startLeaseBuildAndWait(build: Build, input: BuildWorkflowInput): Promise<Build> {
    const start = new WithStartWorkflowOperation(buildWorkflow, { ...this.workflowStartOptions(build), args: [input] });
    // A deadline, not an abort signal: it also cuts the client's retries while Temporal is down.
    const deadline = Date.now() + STORED_WAIT_MS;
    const stored = this.o.client.withDeadline(deadline, () =>
      this.o.client.workflow.executeUpdateWithStart(storedUpdate, { startWorkflowOperation: start }),
    );
    stored.catch(() => undefined); // awaited below once the start is known
    const started = await this.started(build, deadline, () => start.workflowHandle());
    if (started === 'ended') return build;
    if (started === 'found') {
      this.o.logger.warn({ buildId: build.id }, 'scheduled; not stored yet (is a worker running?)');
      return build;
    }
    try {
      return await stored;
    } catch (e) {
      this.o.logger.warn({ buildId: build.id, err: e }, 'scheduled; not stored yet (is a worker running?)');
      return build;
    }
  }

  /**
   * Awaits `starting` (a build workflow's start, with `deadline`): 'started'; 'ended' when an earlier
   * request started it and it has ended; 'found' when no answer came in time but describe finds the
   * workflow. Throws UNAVAILABLE when Temporal refused the start, or when the workflow is not there.
   */
  private async started(
    build: Build,
    deadline: number,
    starting: () => Promise<unknown>,
  ): Promise<'started' | 'ended' | 'found'> {
    try {
      await starting();
      return 'started';
    } catch (e) {
      if (e instanceof WorkflowExecutionAlreadyStartedError) return 'ended'; // started by an earlier request
      // A time-out can come back before our deadline (a loaded server cuts its own wait short):
      // the start may have happened all the same, so only a refusal before the deadline is final.
      if (Date.now() < deadline && !isTimeout(e)) {
        throw (
          unavailableError(e, `starting build ${build.id}`, STORED_WAIT_MS, this.temporalAddress, this.o.taskQueue) ?? e
        );
      }
    }
    // No answer in time: the start may or may not have happened. The workflow knows.
    await this.temporal(`starting build ${build.id}`, this.rpcMs, () =>
      this.o.client.workflow.getHandle(buildWorkflowId(build.id)).describe(),
    ).catch((d: unknown) => {
      if (d instanceof WorkflowNotFoundError) {
        throw new KilnError(
          'UNAVAILABLE',
          `build ${build.id} could not be started within ${STORED_WAIT_MS} ms (Temporal at ${this.temporalAddress} is slow?); retry with the same requestId`,
        );
      }
      throw d;
    });
    return 'found';
  }

  /**
   * Do the workers keep up with this process's schedules: are fewer than `SCHEDULE_AHEAD_LIMIT`
   * builds it answered for still waiting for their first workflow task, as far as it knows? Looked
   * at again at most every `FIRST_TASK_CHECK_MS` once a quarter of the limit is reached, in the
   * background unless the answer is no.
   */
  private async workersKeepUp(): Promise<boolean> {
    // Not looked at for a few: fewer describes per build while schedules come one at a time.
    if (this.ahead.length >= SCHEDULE_AHEAD_LIMIT / 4 && Date.now() - this.aheadCheckedAt >= FIRST_TASK_CHECK_MS) {
      this.aheadCheckedAt = Date.now();
      this.checkingAhead ??= this.dropFirstTasksRun().finally(() => (this.checkingAhead = undefined));
    }
    if (this.ahead.length >= SCHEDULE_AHEAD_LIMIT) await this.checkingAhead;
    return this.ahead.length < SCHEDULE_AHEAD_LIMIT;
  }

  /**
   * Drops from `ahead` the builds whose first workflow task has run. Workers take first tasks about
   * in the order the builds were started, so it looks for the newest such build by halving: at most
   * log2(`SCHEDULE_AHEAD_LIMIT`) + 1 describes, answered by the server alone.
   */
  private async dropFirstTasksRun(): Promise<void> {
    const firstTaskRan = async (id: string): Promise<boolean> => {
      try {
        const d = await this.temporal(`describing build ${id}`, this.rpcMs, () =>
          this.o.client.workflow.getHandle(buildWorkflowId(id)).describe(),
        );
        // Started and first task scheduled are events 1 and 2; a completed first task makes it 4 or more.
        return d.historyLength >= 4;
      } catch (e) {
        return e instanceof WorkflowNotFoundError;
      }
    };
    let [lo, hi, ran] = [0, this.ahead.length - 1, -1];
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (await firstTaskRan(this.ahead[mid]!)) [ran, lo] = [mid, mid + 1];
      else hi = mid - 1;
    }
    this.ahead.splice(0, ran + 1); // schedules meanwhile only appended
  }

  /** The build from storage, or from its workflow when storage has not seen it yet. */
  async find(id: string): Promise<Build | undefined> {
    const stored = await this.o.storage.getBuild(id);
    if (stored) {
      this.buckets.set(id, bucketPath(stored.builder));
      return stored;
    }
    try {
      // A query needs a worker; a build whose workflow no worker has run yet cannot answer one.
      return await this.temporal(`build ${id} is not stored yet and its workflow`, STORED_WAIT_MS, () =>
        this.o.client.workflow.getHandle(buildWorkflowId(id)).query(getBuildQuery),
      );
    } catch (e) {
      if (e instanceof WorkflowNotFoundError) return undefined;
      throw e;
    }
  }

  /** The build, or BUILD_NOT_FOUND; with the steps and output properties its lease holder reported. */
  async get(id: string): Promise<Build> {
    const b = await this.find(id);
    if (!b) throw new KilnError('BUILD_NOT_FOUND', `build ${id} not found`);
    return withReportedProgress(b, await this.o.storage.getBuildProgress(id));
  }

  /** The build of `builder` numbered `number`, from storage (where schedule has put it before answering). */
  async getByNumber(builder: BuilderId, number: number): Promise<Build | undefined> {
    const b = await this.o.storage.getBuildByNumber(builder, number);
    return b && withReportedProgress(b, await this.o.storage.getBuildProgress(b.id));
  }

  // ---- chromium2: steps and output properties mid-build (Buildbucket v2 UpdateBuild) ----
  /**
   * Stores the steps and/or output properties the lease holder reports (each replaces the stored one as a
   * whole), for the lease that is current or was current when the build ended (as for logs). Returns the build
   * as readers now see it. LEASE_EXPIRED / BUILD_IS_COMPLETED for another key.
   */
  async updateProgress(
    id: string,
    req: { leaseKey: string; steps?: BuildStep[]; outputProperties?: Record<string, unknown> },
  ): Promise<Build> {
    const attempt = await this.checkLogWriter(id, req.leaseKey);
    const written = await this.o.storage.recordBuildProgress({
      buildId: id,
      attempt,
      ...(req.steps !== undefined ? { steps: req.steps } : {}),
      ...(req.outputProperties !== undefined ? { outputProperties: req.outputProperties } : {}),
    });
    if (!written) throw new KilnError('LEASE_EXPIRED', `a later attempt of build ${id} has reported its steps`);
    return this.get(id);
  }

  search(q: BuildQuery): Promise<BuildPage> {
    return this.o.storage.searchBuilds(q);
  }

  /** A change's stored verifications; see `Storage.findVerifications`. */
  findVerifications(q: VerificationQuery): Promise<StoredVerification[]> {
    return this.o.storage.findVerifications(q);
  }

  /** Lease-mode builds only: Swarming buckets are never offered to runners. */
  async peek(q: PeekQuery): Promise<Build[]> {
    const builds = await this.o.storage.peekBuilds({ ...q, buckets: this.leaseModeBuckets(q.buckets) });
    for (const b of builds) this.buckets.set(b.id, bucketPath(b.builder));
    return builds;
  }

  /** The buckets of `buckets` whose builds runners lease (not Swarming's). */
  private leaseModeBuckets(buckets: string[]): string[] {
    return buckets.filter((p) => !this.o.registry.bucket(p)?.swarming);
  }

  /**
   * The `project/bucket` of build `id` (for auth), from memory when this process has seen the build,
   * else from storage; BUILD_NOT_FOUND for an unknown id.
   */
  async bucketOf(id: string): Promise<string> {
    return this.buckets.get(id) ?? bucketPath((await this.get(id)).builder);
  }

  /**
   * Peek + lease in one call (issue 18): leases the best build of `q` (best priority, then oldest),
   * trying the next candidate when another runner took one first, and optionally starts it. Undefined
   * when nothing is pending. A lost answer leaves a lease nobody holds: it expires like a dead
   * runner's and the build is offered again.
   */
  async leaseNext(
    q: Omit<PeekQuery, 'limit'>,
    req: { leaseDurationMs?: number; holder?: string; start?: { url?: string } },
  ): Promise<LeaseGrant | undefined> {
    // IDs only: the grant carries the leased build, so the candidates' JSON would be read for nothing.
    const candidates = await this.o.storage.peekBuildIds({
      ...q,
      buckets: this.leaseModeBuckets(q.buckets),
      limit: LEASE_NEXT_CANDIDATES,
    });
    for (const c of candidates) {
      this.buckets.set(c.id, c.bucket);
      // Another lease-next of this process is leasing it right now: racing it would only cost both of
      // them workflow round trips (and the server drops updates under such a race), so take the next one.
      if (this.leasingNext.has(c.id)) continue;
      this.leasingNext.add(c.id);
      let grant: LeaseGrant;
      try {
        grant = await this.lease(c.id, {
          holder: req.holder,
          leaseDurationMs: req.leaseDurationMs,
          ...(req.start ? { start: req.start } : {}),
        });
      } catch (e) {
        if (e instanceof KilnError && LOST_LEASE_RACE.includes(e.code)) continue;
        throw e;
      } finally {
        this.leasingNext.delete(c.id);
      }
      // Leased and started in one update; a worker of an older Kiln only leased it, so start it here.
      if (!req.start || grant.build.status === 'STARTED') return grant;
      const build = await this.start(c.id, { leaseKey: grant.leaseKey, url: req.start.url });
      return { ...grant, build };
    }
    return undefined;
  }

  /** Cancels a build from any non-ended state; idempotent. Waits briefly to return the ended build. */
  async cancel(id: string, reason: string | undefined, canceledBy: string | undefined): Promise<Build> {
    const b = await this.get(id);
    // Signalled even when storage says the build ended: storage may show a state change whose
    // workflow task the Temporal server lost. A closed workflow is "not found": then it has ended.
    try {
      await this.temporal(`canceling build ${id}`, this.rpcMs, () =>
        this.o.client.workflow.getHandle(buildWorkflowId(id)).signal(cancelSignal, { reason, canceledBy }),
      );
    } catch (e) {
      if (!(e instanceof WorkflowNotFoundError)) throw e;
      return b;
    }
    if (isEnded(b.status)) return b;
    const deadline = Date.now() + CANCEL_WAIT_MS;
    for (let delay = 20; ; delay = Math.min(delay * 2, 250)) {
      const now = await this.get(id);
      if (isEnded(now.status) || Date.now() > deadline) return now;
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  async lease(
    id: string,
    req: { leaseDurationMs?: number; holder?: string; requestId?: string; start?: { url?: string } },
  ): Promise<LeaseGrant> {
    const grant = await this.update(id, 'leasing', (h) => h.executeUpdate(leaseUpdate, { args: [req] }));
    this.grantedKeys.set(id, grant.leaseKey);
    this.rememberLease(id, grant.leaseKey, grant.leaseExpiration, req.leaseDurationMs);
    this.buckets.set(id, bucketPath(grant.build.builder));
    return grant;
  }

  async start(id: string, req: { leaseKey: string; url?: string }): Promise<Build> {
    await this.screenKey(id, req.leaseKey);
    return this.update(id, 'starting', (h) => h.executeUpdate(startUpdate, { args: [req] }));
  }

  async heartbeat(id: string, req: { leaseKey: string; leaseDurationMs?: number }): Promise<HeartbeatReply> {
    const [known] = await this.heartbeatsFromLeases([{ buildId: id, ...req }]);
    if (known !== undefined) return known;
    await this.screenKey(id, req.leaseKey);
    return this.heartbeatWorkflow(id, req);
  }

  /** Sends a heartbeat to the build's workflow, and remembers (or forgets) the lease by its answer. */
  private async heartbeatWorkflow(
    id: string,
    req: { leaseKey: string; leaseDurationMs?: number },
    deadline?: number,
  ): Promise<HeartbeatReply> {
    try {
      const reply = await this.update(
        id,
        'heartbeat for',
        (h) => h.executeUpdate(heartbeatUpdate, { args: [req] }),
        deadline,
      );
      this.rememberLease(id, req.leaseKey, reply.leaseExpiration, req.leaseDurationMs);
      return reply;
    } catch (e) {
      if (e instanceof KilnError && (e.code === 'LEASE_EXPIRED' || e.code === 'BUILD_IS_COMPLETED')) {
        this.leases.delete(id);
      }
      throw e;
    }
  }

  // ---- issue 18: heartbeats answered without the workflow while the lease is far from its end ----
  private rememberLease(id: string, leaseKey: string, leaseExpiration: string, requestedMs: number | undefined): void {
    if (this.o.answerHeartbeatsFromLeases === false) return;
    const expiresMs = Date.parse(leaseExpiration);
    const now = (this.o.clock ?? Date.now)();
    this.leases.set(id, { leaseKey, expiresMs, requestedMs, setAtMs: now });
  }

  /**
   * Heartbeats this process can answer without the build's workflow: the key is the one the workflow
   * last granted or extended here, asking for the same duration, more than half of that lease is left
   * and the workflow set it less than `WORKFLOW_CONTACT_MS` ago, and storage (one read for all) shows
   * the build not ended and that key's generation current. The answer is the expiry the workflow set,
   * so what the runner is told always holds: a heartbeat in the second half of the lease reaches the
   * workflow and moves it. A runner heartbeating every 10 s on the default 60 s lease, or any longer
   * one, reaches its workflow about every 30 s instead of every 10 s. Undefined for each heartbeat the
   * workflow must answer.
   */
  private async heartbeatsFromLeases(
    items: { buildId: string; leaseKey: string; leaseDurationMs?: number }[],
  ): Promise<(HeartbeatReply | undefined)[]> {
    const now = (this.o.clock ?? Date.now)();
    const far = (it: (typeof items)[number]) => {
      const l = this.leases.get(it.buildId);
      return (
        l !== undefined &&
        l.leaseKey === it.leaseKey &&
        l.requestedMs === it.leaseDurationMs &&
        l.expiresMs - now > (l.expiresMs - l.setAtMs) / 2 &&
        now - l.setAtMs < (this.o.workflowContactMs ?? WORKFLOW_CONTACT_MS)
      );
    };
    const candidates = items.filter(far);
    if (candidates.length === 0) return items.map(() => undefined);
    const checks = await this.o.storage.checkLeaseKeys(candidates);
    const answers = new Map<(typeof items)[number], HeartbeatReply>();
    candidates.forEach((it, i) => {
      const b = checks[i]?.build;
      const l = this.leases.get(it.buildId);
      if (!b || !l || checks[i]?.known !== true || isEnded(b.status)) return;
      if (b.leaseExpiration === undefined || leaseKeyGeneration(it.leaseKey) !== b.leaseGeneration) return;
      answers.set(it, { leaseExpiration: new Date(l.expiresMs).toISOString() });
    });
    return items.map((it) => answers.get(it));
  }
  // ---- end issue 18 ----

  /**
   * Many heartbeats in one call; each answers on its own. Keys are screened against storage in one
   * read, at most `BATCH_CONCURRENCY` heartbeats go to workflows at a time, and the whole batch
   * answers within `workflowAnswerTimeoutMs` (heartbeats not sent by then answer UNAVAILABLE).
   */
  async heartbeatBatch(
    items: { buildId: string; leaseKey: string; leaseDurationMs?: number }[],
  ): Promise<({ buildId: string } & (HeartbeatReply | { error: { code: ErrorCode; message: string } }))[]> {
    const known = await this.heartbeatsFromLeases(items);
    const rest = items.filter((_, i) => known[i] === undefined);
    const sent = new Map(rest.map((it, i) => [it, i]));
    const answers = await this.heartbeatWorkflows(rest);
    return items.map((it, i) => {
      const k = known[i];
      return k !== undefined ? { buildId: it.buildId, ...k } : answers[sent.get(it) ?? -1]!;
    });
  }

  /** The heartbeats of a batch that go to their workflows (see `heartbeatBatch`). */
  private async heartbeatWorkflows(
    items: { buildId: string; leaseKey: string; leaseDurationMs?: number }[],
  ): Promise<({ buildId: string } & (HeartbeatReply | { error: { code: ErrorCode; message: string } }))[]> {
    if (items.length === 0) return [];
    const unknown = items.filter((it) => this.grantedKeys.get(it.buildId) !== it.leaseKey);
    const screened = await this.o.storage.checkLeaseKeys(unknown);
    const byItem = new Map(unknown.map((it, i) => [it, screened[i]]));
    const checks = items.map((it) => byItem.get(it));
    const deadline = Date.now() + this.answerMs;
    return mapConcurrently(items, BATCH_CONCURRENCY, async (it, i) => {
      try {
        this.screen(it.buildId, checks[i]);
        if (Date.now() >= deadline) {
          throw new KilnError(
            'UNAVAILABLE',
            `heartbeat for build ${it.buildId} not sent: the batch ran out of time; retry`,
          );
        }
        const req = { leaseKey: it.leaseKey, leaseDurationMs: it.leaseDurationMs };
        const reply = await this.heartbeatWorkflow(it.buildId, req, deadline);
        return { buildId: it.buildId, ...reply };
      } catch (e) {
        // Each item answers like a whole request would (src/api/errors.ts): a refusal with its code
        // and message, anything else a bare INTERNAL whose details stay in the log.
        if (e instanceof KilnError && !(e instanceof UpstreamError) && e.code !== 'INTERNAL') {
          return { buildId: it.buildId, error: { code: e.code, message: e.message } };
        }
        this.o.logger.error({ err: e, buildId: it.buildId }, 'heartbeat failed');
        return { buildId: it.buildId, error: { code: 'INTERNAL' as const, message: 'internal error' } };
      }
    });
  }

  succeed(id: string, req: CompleteRequest): Promise<Build> {
    return this.report(id, 'succeed', req);
  }

  fail(id: string, req: CompleteRequest): Promise<Build> {
    return this.report(id, 'fail', req);
  }

  /**
   * Throws LEASE_EXPIRED / BUILD_IS_COMPLETED unless `leaseKey` may write the build's log (the
   * current lease, or the one current when the build ended). Returns the attempt (lease generation).
   */
  async checkLogWriter(id: string, leaseKey: string): Promise<number> {
    await this.screenKey(id, leaseKey);
    let r;
    try {
      r = await this.temporal(`build ${id}'s workflow`, this.answerMs, () =>
        this.o.client.workflow.getHandle(buildWorkflowId(id)).query(logWriterQuery, leaseKey),
      );
    } catch (e) {
      if (e instanceof WorkflowNotFoundError) {
        await this.get(id);
        throw new KilnError('BUILD_IS_COMPLETED', `build ${id} has ended and its workflow is gone`);
      }
      throw e;
    }
    if (!r.ok) throw new KilnError(r.code, r.message);
    return leaseKeyGeneration(leaseKey);
  }

  /**
   * Tells a Swarming build that its task changed (a Pub/Sub notification); the build then polls the
   * task. A build that has ended and closed is fine (notifications are at-least-once); an unknown one
   * is BUILD_NOT_FOUND.
   */
  async notifySwarming(id: string, req: { taskId: string; messageId?: string }): Promise<void> {
    try {
      await this.temporal(`notifying build ${id}`, this.rpcMs, () =>
        this.o.client.workflow.getHandle(buildWorkflowId(id)).signal(swarmingNotifySignal, req),
      );
    } catch (e) {
      if (!(e instanceof WorkflowNotFoundError)) throw e;
      await this.get(id);
    }
  }

  setPriority(id: string, priority: number): Promise<Build> {
    return this.update(id, 'changing the priority of', (h) =>
      h.executeUpdate(setPriorityUpdate, { args: [{ priority }] }),
    );
  }

  /**
   * Refuses, without a workflow round trip, a lease key that storage proves this build never handed
   * out: storage keeps hashes of the keys each build's workflow answers to, so a forged key costs
   * one storage read. A build storage holds no key hashes for (not stored yet, or stored by an older
   * Kiln) is left to its workflow; so are builds of Swarming buckets, which take no lease keys at all.
   */
  private screen(id: string, c: LeaseKeyCheck | undefined): void {
    const b = c?.build;
    if (!b) return;
    if (this.o.registry.bucket(bucketPath(b.builder))?.swarming) {
      throw new KilnError(
        'INVALID_BUILD_STATE',
        `build ${id} belongs to a Swarming bucket; it is not leased by runners`,
      );
    }
    if (c.known !== false) return;
    if (isEnded(b.status)) {
      throw new KilnError('BUILD_IS_COMPLETED', `build ${id} has ended with status ${b.status}; stop working on it`);
    }
    throw new KilnError(
      'LEASE_EXPIRED',
      `lease key is not current for build ${id}; the lease expired or was reset: stop`,
    );
  }

  private async screenKey(id: string, leaseKey: string): Promise<void> {
    if (this.grantedKeys.get(id) === leaseKey) return; // granted here: the workflow judges it
    this.screen(id, (await this.o.storage.checkLeaseKeys([{ buildId: id, leaseKey }]))[0]);
  }

  private async report(id: string, kind: CompleteKind, req: CompleteRequest): Promise<Build> {
    await this.screenKey(id, req.leaseKey);
    this.leases.delete(id);
    const deadline = Date.now() + this.answerMs;
    try {
      return await this.update(
        id,
        kind === 'succeed' ? 'succeeding' : 'failing',
        (h) => h.executeUpdate(kind === 'succeed' ? succeedUpdate : failUpdate, { args: [req] }),
        deadline,
      );
    } catch (e) {
      if (e instanceof KilnError && e.code === 'BUILD_IS_COMPLETED') {
        // A retried report whose first try ended the build (and closed its workflow) gets the same
        // answer — only with the very key that ended it, and only for the same outcome.
        const stored = (await this.o.storage.checkLeaseKeys([{ buildId: id, leaseKey: req.leaseKey }]))[0];
        if (stored?.build && stored.endedBy && COMPLETE_OUTCOMES[kind].includes(stored.build.status)) {
          return stored.build;
        }
      }
      if (e instanceof KilnError && (e.code === 'LEASE_EXPIRED' || e.code === 'BUILD_IS_COMPLETED')) {
        // Refused, not applied — but noted in the build's own history for whoever looks later,
        // within the same time bound as the report.
        await this.update(
          id,
          'noting a late report on',
          (h) => h.executeUpdate(staleReportUpdate, { args: [{ leaseKey: req.leaseKey, report: kind }] }),
          deadline,
        ).catch(() => undefined);
      }
      throw e;
    }
  }

  /**
   * Runs an update on the build's workflow within `deadline`, mapping Temporal errors to Kiln codes:
   * a refusal keeps its code, no answer in time is UNAVAILABLE.
   */
  private async update<T>(
    id: string,
    what: string,
    fn: (h: ReturnType<Client['workflow']['getHandle']>) => Promise<T>,
    deadline = Date.now() + this.answerMs,
  ): Promise<T> {
    const handle = this.o.client.workflow.getHandle(buildWorkflowId(id));
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.temporal(`${what} build ${id}`, this.answerMs, () => fn(handle), deadline);
      } catch (e) {
        // ---- issue 18: the server dropped the update before any worker saw it (concurrent updates on one
        // build, e.g. runners racing for the same build): nothing was applied, so send it again. The SDK
        // reports it as a failed update whose cause is an `UnprocessedUpdate` failure, so it is checked
        // before the refusals below (it used to fall through to INTERNAL, a 500).
        if (updateNotProcessed(e)) {
          if (attempt < 3 && Date.now() < deadline) continue;
          throw new KilnError('UNAVAILABLE', `${what} build ${id}: the update was not processed (busy build); retry`);
        }
        // ---- end issue 18 ----
        if (e instanceof KilnError && e.code === 'UNAVAILABLE') this.o.onUnanswered?.(id);
        if (e instanceof WorkflowUpdateFailedError && e.cause instanceof ApplicationFailure) {
          // A refusal carries one of Kiln's codes and a message for the caller; anything else is a bug
          // in the workflow, whose words stay in the log.
          const code = e.cause.type;
          if (isErrorCode(code) && code !== 'INTERNAL') throw new KilnError(code, e.cause.message);
          throw new KilnError('INTERNAL', `${what} build ${id} failed in its workflow`, { cause: e });
        }
        if (e instanceof WorkflowNotFoundError) {
          // Ended and closed, or never existed: storage knows which.
          const stored = await this.o.storage.getBuild(id);
          if (stored && isEnded(stored.status)) {
            throw new KilnError(
              'BUILD_IS_COMPLETED',
              `build ${id} has ended with status ${stored.status}; stop working on it`,
            );
          }
          if (!stored) throw new KilnError('BUILD_NOT_FOUND', `build ${id} not found`);
          // The run was continuing as new just then: the next run takes the retry.
          if (attempt < 3) continue;
        }
        throw e;
      }
    }
  }
}

/**
 * The server's "rejected because it wasn't processed by worker" (failure type `UnprocessedUpdate`): the
 * update was never applied (issue 18).
 */
function updateNotProcessed(e: unknown): boolean {
  const cause = (e as { cause?: unknown })?.cause;
  if (e instanceof WorkflowUpdateFailedError && cause instanceof ApplicationFailure) {
    return cause.type === 'UnprocessedUpdate';
  }
  const texts = [e, cause].map((x) => String((x as Error | undefined)?.message ?? ''));
  return texts.some((t) => t.includes("wasn't processed by worker"));
}

/** `fn` over `items`, at most `limit` at a time; results in the items' order. */
async function mapConcurrently<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    for (let i = next++; i < items.length; i = next++) results[i] = await fn(items[i] as T, i);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}
