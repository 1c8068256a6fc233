/**
 * Repair of lease-mode builds whose workflow can no longer go on: its workflow task fails on a
 * nondeterminism error or on an update message the server does not know, again and again, so the
 * build takes no call, no cancel and no timer.
 *
 * How a build gets there without a bug in Kiln's workflow code: under Temporal server crashes, the
 * SDK can apply a workflow task to its cached workflow that the server never kept (an update's
 * speculative task lost with the server), or order a local activity's result differently live and
 * on replay. The cached workflow then makes commands the history cannot reproduce, and the next
 * replay stops on them (docs/durability.md, "When a history stops replaying"). Or, after a crash,
 * the SDK completes an update whose request the restarted server no longer has, and the server
 * refuses every such task ("ProtocolMessageCommand referenced absent message ID"). Storage stays
 * right throughout: every answered call was stored before its answer.
 *
 * So the repair starts the build again from storage: the broken run is terminated and a new run of
 * the same workflow ID starts with the stored build as its state, in one server call (conflict
 * policy TERMINATE_EXISTING, so the build is never without a run). A lease the stored build still
 * holds is reset at once, as if it had expired (its key is stored only as a hash, so the new run
 * cannot know it): the runner's next call is refused and the build is offered again, within
 * `maxLeaseResets` like any expiry. A build storage already holds as ended ends with that result.
 *
 * Found by a sweep over storage and visibility (builds whose lease expired `overdueSecs` ago: a
 * working workflow expires a lease within a second) and by calls to a build that went unanswered.
 * A run is broken when its workflow task failed `minAttempts` times in a row and the last failure's
 * cause is one of those (`HISTORY_BOUND_CAUSES`), or when a query on it fails on a nondeterminism
 * error (a run waiting on a timer its history holds has no task to fail yet; a worker without it in
 * its cache answers the query by replaying the history). A run a worker still has in its cache
 * answers from there, works, and is left alone.
 *
 * A change verification's child build is repaired too. The new run cannot be the verification's
 * child, so the verification is told first (`buildRepairSignal`): it then takes the child's
 * "terminated" result for what it is and learns the build's end from the new run, which reports to
 * it as the child did (`parentWorkflowId`). A verification that has already closed is not told; the
 * build then goes on alone.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { WorkflowIdConflictPolicy, WorkflowIdReusePolicy } from '@temporalio/common';
import proto from '@temporalio/proto';
import type pino from 'pino';
import { type Build, builderPath, isEnded } from '../domain/build.ts';
import { buildWorkflowId, isBuildId } from '../domain/buildId.ts';
import { type LeaseBuildState } from '../domain/buildMachine.ts';
import { initialBuildSearchAttributes } from '../domain/searchAttributes.ts';
import { visibilityTime } from '../stuck/filters.ts';
import { type Storage } from '../storage/storage.ts';
import { buildRepairSignal, buildWorkflow, type BuildWorkflowInput, getBuildQuery } from '../../workflows/build.ts';

const { EventType, WorkflowTaskFailedCause } = proto.temporal.api.enums.v1;

/**
 * Workflow task failures that come from the run's history, not from the moment: a task retried on
 * the same history fails again, for ever. A nondeterminism error (the SDK's cached workflow drifted
 * from its history), and an update message the server no longer knows (after a server crash the SDK
 * completes an update whose request the server lost: "ProtocolMessageCommand referenced absent
 * message ID"). Causes that pass by themselves (an unhandled command or update, a sticky queue
 * reset) are not here, and neither is a workflow code error: a new run of the same code would only
 * fail the same way.
 */
const HISTORY_BOUND_CAUSES = new Map<number, string>([
  [WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR, 'a nondeterminism error'],
  [
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_BAD_UPDATE_WORKFLOW_EXECUTION_MESSAGE,
    'an update message the server does not know',
  ],
]);

/** What a workflow task failure's cause is called, when it is one of `HISTORY_BOUND_CAUSES`. */
export function historyBoundCause(cause: number | null | undefined): string | undefined {
  return cause === null || cause === undefined ? undefined : HISTORY_BOUND_CAUSES.get(cause);
}

/** Ended builds the sweep remembers until it checks that their workflow ended too. */
const MAX_ENDED_WAITING = 50_000;

/** Running build workflows one full pass reads at most. */
const MAX_FULL_PASS = 100_000;

/** Build workflow IDs are this and the build's ID (`buildWorkflowId`). */
const BUILD_WORKFLOW_PREFIX = buildWorkflowId('');

/** Checks of builds whose calls went unanswered, at most at once. */
const MAX_CHECKS_IN_FLIGHT = 4;

/** How long the query that tells a broken run from a waiting one may take. */
const QUERY_MS = 5000;

/** Options of `BuildRepairer`. */
export interface BuildRepairOptions {
  client: Client;
  storage: Storage;
  taskQueue: string;
  logger: pino.Logger;
  /** A running build whose lease expired this long ago is looked at. @default 30 */
  overdueSecs?: number;
  /** Its workflow task must have failed this many times in a row. @default 3 */
  minAttempts?: number;
  /**
   * Why a run's history does not replay on today's workflow code, or undefined when it does (see
   * `workers/replay.ts`). Asked of a run whose task failed `minAttempts` times without a cause in its
   * history (after a task timed out, the server keeps no record of the failed attempts that follow)
   * and whose query the server refuses ("Workflow Task in failed state"). Without it such a run is
   * left alone.
   */
  replayFailure?: (events: proto.temporal.api.history.v1.IHistoryEvent[]) => Promise<string | undefined>;
  /** Builds looked at per sweep. @default 100 */
  limit?: number;
  /**
   * Every this many sweeps (the first one included), the sweep also reads every running build
   * workflow and asks storage which of their builds have ended. @default 20 (10 minutes at 30 s)
   */
  fullPassEvery?: number;
}

/** What one repair did. */
export interface Repair {
  buildId: string;
  /** The terminated run. */
  brokenRunId: string;
  /** The run that goes on from storage. */
  runId: string;
  /** The stored status the new run began with (a held lease is reset by the new run). */
  storedStatus: Build['status'];
  leaseReset: boolean;
  /** Why the run could not go on. */
  why: string;
  /** The change verification the new run reports to (the broken run was its child). */
  parentWorkflowId?: string;
}

/** Finds and repairs lease-mode builds whose workflow cannot go on. */
export class BuildRepairer {
  private readonly overdueMs: number;
  private readonly minAttempts: number;
  private readonly limit: number;
  /** Every repair this repairer made, oldest first. */
  readonly repaired: Repair[] = [];
  /** Builds looked at lately because a call went unanswered, by when. */
  private readonly lookedAt = new Map<string, number>();
  /** Such checks in flight. */
  private checking = 0;
  /** Where the sweep has read storage's change feed up to (set by `start()` or the first sweep). */
  private feedCursor: string | undefined;
  /** Build workflows storage holds as ended, by when the sweep first saw that, until checked. */
  private readonly endedSeen = new Map<string, number>();
  /** Sweeps' candidate lists made so far (for `fullPassEvery`). */
  private passes = 0;

  constructor(private readonly o: BuildRepairOptions) {
    this.overdueMs = (o.overdueSecs ?? 30) * 1000;
    this.minAttempts = o.minAttempts ?? 3;
    this.limit = o.limit ?? 100;
  }

  /** The visibility filter of the sweep's candidates at `nowMs`. */
  filter(nowMs = Date.now()): string {
    return (
      `WorkflowType = 'buildWorkflow' AND ExecutionStatus = 'Running'` +
      ` AND KilnLeaseExpiresAt < '${visibilityTime(nowMs - this.overdueMs)}'`
    );
  }

  /**
   * The sweep's candidates at `nowMs`: builds whose lease expired `overdueSecs` ago in storage;
   * running build workflows whose lease expired that long ago in visibility; and build workflows
   * still running `overdueSecs` after storage took their build's end. The first two because a run
   * that stopped right after its lease write never upserted the lease's search attribute, and
   * storage does not see a lease the stopped run granted but could not store; the third because a
   * run that stopped after its end write holds no lease at all (a working one ends at once).
   */
  async candidates(nowMs = Date.now()): Promise<string[]> {
    const ids = new Set(
      (await this.o.storage.overdueLeases(new Date(nowMs - this.overdueMs).toISOString(), this.limit)).map((id) =>
        buildWorkflowId(id),
      ),
    );
    for await (const w of this.o.client.workflow.list({ query: this.filter(nowMs), pageSize: this.limit })) {
      if (ids.size >= 2 * this.limit) break;
      ids.add(w.workflowId);
    }
    for (const id of await this.endedButRunning(nowMs)) ids.add(id);
    if (this.passes++ % (this.o.fullPassEvery ?? 20) === 0) {
      for (const id of await this.runningButEndedInStorage(nowMs)) ids.add(id);
    }
    return [...ids];
  }

  /**
   * Build workflows running since before `overdueSecs` ago whose build storage holds as ended: one
   * read of every running build workflow (at most `MAX_FULL_PASS`) and one storage read per 1,000.
   * It finds what the change feed cannot: builds that ended in storage while no API process followed
   * the feed, or more of them than the feed's memory holds.
   */
  private async runningButEndedInStorage(nowMs: number): Promise<string[]> {
    const query =
      `WorkflowType = 'buildWorkflow' AND ExecutionStatus = 'Running'` +
      ` AND StartTime < '${visibilityTime(nowMs - this.overdueMs)}'`;
    const found: string[] = [];
    let page: string[] = [];
    let read = 0;
    const check = async (): Promise<void> => {
      const ids = page;
      page = [];
      for (const st of await this.o.storage.getBuildStates(ids)) {
        if (isEnded(st.status)) found.push(buildWorkflowId(st.id));
      }
    };
    for await (const w of this.o.client.workflow.list({ query, pageSize: 1000 })) {
      const id = w.workflowId.slice(BUILD_WORKFLOW_PREFIX.length);
      if (!w.workflowId.startsWith(BUILD_WORKFLOW_PREFIX) || !isBuildId(id)) continue;
      page.push(id);
      if (page.length >= 1000) await check();
      if (++read >= MAX_FULL_PASS) break;
    }
    await check();
    return found;
  }

  /**
   * Build workflows still running `overdueSecs` after the sweep saw their build end in storage's
   * change feed (read from where the last sweep stopped; the first sweep starts at its end).
   */
  private async endedButRunning(nowMs: number): Promise<string[]> {
    const storage = this.o.storage;
    if (this.feedCursor === undefined) {
      this.feedCursor = await storage.changeCursor();
      return [];
    }
    for (let page = 0; page < 10; page++) {
      const changes = await storage.changesSince(this.feedCursor, 1000);
      if (changes.cursor === this.feedCursor) break;
      this.feedCursor = changes.cursor;
      for (const b of changes.builds) {
        const id = buildWorkflowId(b.id);
        if (isEnded(b.status) && !this.endedSeen.has(id)) this.endedSeen.set(id, nowMs);
      }
    }
    // Bounded: with more ended builds waiting than this, the oldest are dropped unchecked.
    for (const id of this.endedSeen.keys()) {
      if (this.endedSeen.size <= MAX_ENDED_WAITING) break;
      this.endedSeen.delete(id);
    }
    const due = [...this.endedSeen].filter(([, at]) => at <= nowMs - this.overdueMs).map(([id]) => id);
    const running: string[] = [];
    for (let i = 0; i < due.length; i += 100) {
      const chunk = due.slice(i, i + 100);
      const query =
        `WorkflowType = 'buildWorkflow' AND ExecutionStatus = 'Running' AND WorkflowId IN (` +
        `${chunk.map((id) => `'${id}'`).join(', ')})`;
      for await (const w of this.o.client.workflow.list({ query, pageSize: 100 })) running.push(w.workflowId);
      for (const id of chunk) this.endedSeen.delete(id);
    }
    return running;
  }

  /** One sweep: every candidate checked, the broken ones repaired. */
  async sweep(stopped: () => boolean = () => false): Promise<Repair[]> {
    const repairs: Repair[] = [];
    for (const workflowId of await this.candidates()) {
      if (stopped()) break;
      const r = await this.repairIfBroken(workflowId).catch((e: unknown) => {
        if (!stopped()) this.o.logger.warn({ err: e, workflowId }, 'build repair: could not check or repair');
        return undefined;
      });
      if (r) repairs.push(r);
    }
    return repairs;
  }

  /** Repairs the build workflow `workflowId` if its current run cannot go on (see `HISTORY_BOUND_CAUSES`). */
  async repairIfBroken(workflowId: string): Promise<Repair | undefined> {
    const handle = this.o.client.workflow.getHandle(workflowId);
    const d = await handle.describe();
    if (d.status.name !== 'RUNNING' || d.type !== 'buildWorkflow') return undefined;
    const attempt = d.raw.pendingWorkflowTask?.attempt ?? 0;
    const run = this.o.client.workflow.getHandle(workflowId, d.runId);
    let events: Awaited<ReturnType<typeof run.fetchHistory>>['events'];
    const history = async () => (events ??= (await run.fetchHistory()).events ?? []);
    let why: string | undefined;
    if (attempt >= this.minAttempts) {
      const lastFailure = (await history())
        .filter((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)
        .at(-1);
      const cause = lastFailure?.workflowTaskFailedEventAttributes?.cause;
      const named = historyBoundCause(cause);
      if (named !== undefined) why = `its workflow task failed ${attempt} times in a row on ${named}`;
    }
    // A run with no task to fail yet (waiting on a timer its history holds) shows it on a query, which
    // a worker without it in its cache answers by replaying the history.
    why ??= await this.queryFailsOnReplay(run);
    // A task that failed again and again with no failure in the history: replay says whether it is the history's.
    if (why === undefined && attempt >= this.minAttempts && this.o.replayFailure) {
      why = await this.o.replayFailure(await history());
    }
    if (why === undefined) return undefined;
    const payloads = (await history())[0]?.workflowExecutionStartedEventAttributes?.input?.payloads ?? [];
    const input = payloads[0] && this.o.client.options.loadedDataConverter.payloadConverter.fromPayload(payloads[0]);
    if (!isBuildInput(input)) throw new Error(`the start input of ${workflowId} is not a build workflow's`);
    const stored = await this.o.storage.getBuild(input.build.id);
    if (!stored) throw new Error(`build ${input.build.id} is not in storage: nothing to go on from`);

    const { state, leaseReset } = stateFromStorage(stored, input.state, Date.now());
    // Another API process may have repaired it meanwhile; the start below replaces whatever runs.
    if ((await handle.describe()).runId !== d.runId) return undefined;
    const parentWorkflowId = await this.tellParent(d.parentExecution?.workflowId ?? undefined, stored.id);
    const next = await this.o.client.workflow.start(buildWorkflow, {
      workflowId,
      taskQueue: this.o.taskQueue,
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.TERMINATE_EXISTING,
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
      typedSearchAttributes: initialBuildSearchAttributes(stored),
      staticSummary: `${builderPath(stored.builder)} #${stored.number} — build ${stored.id}, restarted from storage`,
      staticDetails: `run ${d.runId} stopped: ${why}; restarted from storage version ${stored.version}`,
      args: [{ ...input, state, ...(parentWorkflowId !== undefined ? { parentWorkflowId } : {}) }],
    });
    const repair: Repair = {
      buildId: stored.id,
      brokenRunId: d.runId,
      runId: next.firstExecutionRunId,
      storedStatus: stored.status,
      leaseReset,
      why,
      ...(parentWorkflowId !== undefined ? { parentWorkflowId } : {}),
    };
    this.repaired.push(repair);
    this.o.logger.warn(repair, 'build repair: its workflow could not go on; restarted from storage');
    return repair;
  }

  /**
   * Tells the verification whose child build `buildId` is (`parentId`) that the build is about to
   * run on as a run of its own. Returns the verification to report to, or undefined when there is
   * none (not a child, or the verification has closed).
   */
  private async tellParent(parentId: string | undefined, buildId: string): Promise<string | undefined> {
    if (parentId === undefined) return undefined;
    try {
      await this.o.client.workflow.getHandle(parentId).signal(buildRepairSignal, { buildId });
      return parentId;
    } catch (e) {
      if (e instanceof WorkflowNotFoundError) return undefined;
      throw e;
    }
  }

  /** Why `run` cannot go on, when a query on it fails on a nondeterminism error; else undefined. */
  private async queryFailsOnReplay(run: ReturnType<Client['workflow']['getHandle']>): Promise<string | undefined> {
    try {
      await this.o.client.withDeadline(Date.now() + QUERY_MS, () => run.query(getBuildQuery));
      return undefined;
    } catch (e) {
      const text = String((e as Error | undefined)?.message ?? e);
      return /TMPRL1100|[Nn]ondeterminism/.test(text) ? `a query on it fails on replay: ${text}` : undefined;
    }
  }

  /**
   * A call to build `buildId`'s workflow went unanswered: look at it now (at most once in
   * `everyMs` per build), in the background. This finds a stopped build the sweep cannot (one
   * without a lease, which visibility cannot tell from a waiting one).
   */
  noteUnanswered(buildId: string, everyMs = 10_000): void {
    const now = Date.now();
    // At most a few checks at once and one per build in `everyMs`: when Temporal itself is down every
    // call goes unanswered, and the checks must not add to its load (nor to the log: debug level).
    if (this.checking >= MAX_CHECKS_IN_FLIGHT || (this.lookedAt.get(buildId) ?? 0) > now - everyMs) return;
    this.lookedAt.set(buildId, now);
    if (this.lookedAt.size > 1000) {
      for (const [id, at] of this.lookedAt) if (at <= now - everyMs) this.lookedAt.delete(id);
    }
    this.checking++;
    void this.repairIfBroken(buildWorkflowId(buildId))
      .catch((e: unknown) => this.o.logger.debug({ err: e, buildId }, 'build repair: could not check or repair'))
      .finally(() => this.checking--);
  }

  /**
   * Sweeps every `intervalMs` (a sweep still running skips a tick) until the returned stop is
   * called; stop does not wait more than a second for a sweep in flight.
   */
  start(intervalMs = 30_000): { stop(): Promise<void> } {
    let stopped = false;
    // The change feed is followed from now (not from the first sweep): builds that end meanwhile count.
    let current: Promise<void> | undefined = this.o.storage.changeCursor().then(
      (c) => void (this.feedCursor ??= c),
      () => undefined,
    );
    void current.finally(() => (current = undefined));
    const timer = setInterval(() => {
      if (current !== undefined || stopped) return;
      current = this.sweep(() => stopped)
        .then(
          () => undefined,
          (e: unknown) => {
            if (!stopped) this.o.logger.warn({ err: e }, 'build repair sweep failed');
          },
        )
        .finally(() => (current = undefined));
    }, intervalMs);
    timer.unref();
    return {
      stop: async () => {
        stopped = true;
        clearInterval(timer);
        await Promise.race([current, sleep(1000)]);
      },
    };
  }
}

/**
 * The state a new run starts from: the stored build, caught up to storage. A lease it holds gets a
 * key nobody has and an expiry of `nowMs`, so the run's first step resets it (or ends the build when
 * no resets are left).
 */
export function stateFromStorage(
  stored: Build,
  previous: LeaseBuildState | undefined,
  nowMs: number,
): { state: LeaseBuildState; leaseReset: boolean } {
  const build: Build = structuredClone(stored);
  const state: LeaseBuildState = {
    build,
    scheduledAtMs: previous?.scheduledAtMs ?? Date.parse(stored.createTime),
    persistedVersion: stored.version,
  };
  const leased = !isEnded(build.status) && (build.leaseExpiration !== undefined || build.leaseHolder !== undefined);
  if (leased) {
    state.leaseKey = `repaired-${randomUUID()}`;
    build.leaseExpiration = new Date(nowMs).toISOString();
    if (previous?.lastContactMs !== undefined) state.lastContactMs = previous.lastContactMs;
  }
  return { state, leaseReset: leased };
}

function isBuildInput(v: unknown): v is BuildWorkflowInput {
  const o = v as Partial<BuildWorkflowInput> | undefined;
  return typeof o === 'object' && o !== null && typeof o.build?.id === 'string' && typeof o.timeouts === 'object';
}
