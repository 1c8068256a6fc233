/**
 * `swarmingBuildWorkflow`: one build of a Swarming bucket, from SCHEDULED to an ended status, in
 * Swarming mode (push) — see DESIGN.md "Swarming mode". Same workflow ID (`build/<id>`), same query,
 * cancel and note signals, same storage writes and search attributes as lease mode; the lease-mode
 * updates are refused with INVALID_BUILD_STATE because no runner may lease a Swarming build.
 *
 * Life: render the task request (merge builder config, pick the task template — canary chosen with
 * the workflow's deterministic random — and fill it in), create the task (activity; a retried NewTask
 * returns the same task), record the task's tags and URL on the build, then follow the task: every
 * Swarming notification (a signal) and a slow sync timer poll GetResult and map the task state to the
 * build status. Cancel and Kiln's own timeouts end the build and then cancel the task.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  defineSignal,
  log,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { announceBuildEnd } from './buildEnded.ts';
import type { createActivities } from '../activities/index.ts';
import {
  type Build,
  type BuildEvent,
  type BuildTimeouts,
  type StatusDetails,
  builderPath,
  isEnded,
  noteBuildEvent,
  touchBuild,
} from '../src/domain/build.ts';
import { KilnError } from '../src/domain/errors.ts';
import { KilnStatus, KilnTags, visibleTags } from '../src/domain/searchAttributes.ts';
import { prepareSwarmingTask, type SwarmingBuildSpec } from '../src/domain/swarming/build.ts';
import { buildStatusFromTask } from '../src/domain/swarming/status.ts';
import { swarmingBuildTags, swarmingTaskUrl } from '../src/domain/swarming/template.ts';
import {
  CLOCK_VERSIONS_PATCH,
  cancelSignal,
  failUpdate,
  getBuildQuery,
  heartbeatUpdate,
  leaseUpdate,
  noteSignal,
  setPriorityUpdate,
  startUpdate,
  succeedUpdate,
} from './build.ts';
import { storeBuild } from './storeBuild.ts';

/** A task's state as the Swarming activities report it. */
type TaskResultView = Awaited<ReturnType<ReturnType<typeof createActivities>['getSwarmingTaskResult']>>;

/** A Swarming notification for this build's task (from `POST /api/v1/swarming/notify`): poll the task now. */
export interface SwarmingNotifyRequest {
  taskId: string;
  /** Pub/Sub message id, for logs. */
  messageId?: string;
}

/** Sent by the API for every Swarming Pub/Sub push naming this build; at-least-once, so idempotent. */
export const swarmingNotifySignal = defineSignal<[SwarmingNotifyRequest]>('swarmingNotify');

/** Input of `swarmingBuildWorkflow`. */
export interface SwarmingBuildWorkflowInput {
  /** The build as scheduled (status SCHEDULED, number allocated). */
  build: Build;
  /** Kiln-side timers: scheduling timeout (pending too long) and execution timeout (running too long). */
  timeouts: BuildTimeouts;
  swarming: SwarmingBuildSpec;
  /** Carried over by continue-as-new; absent on the first run. */
  state?: SwarmingBuildState;
  /** Continue as new past this many events (tests lower it). @default 2000 */
  maxHistoryEvents?: number;
}

/** Everything a run hands to the next one. */
export interface SwarmingBuildState {
  build: Build;
  scheduledAtMs: number;
  persistedVersion: number;
  /** The Swarming task, once created. */
  taskId?: string;
  /** Task creation was attempted (successfully or not): never attempt it twice. */
  createAttempted: boolean;
  /** A notification came (or the task was just created): poll at the next turn of the loop. */
  pollRequested: boolean;
  /** When the task was last polled (ms), for the sync timer. */
  lastPollMs: number;
  /** Kiln ended the build (cancel, timeout): the task must be canceled before the workflow ends. */
  cancelTask: boolean;
}

const { createSwarmingTask } = proxyActivities<ReturnType<typeof createActivities>>({
  startToCloseTimeout: '1m',
  // Transient Swarming errors are retried for this long; the same request_uuid makes retries safe.
  scheduleToCloseTimeout: '15m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
});

const { getSwarmingTaskResult, cancelSwarmingTask } = proxyActivities<ReturnType<typeof createActivities>>({
  startToCloseTimeout: '1m',
  scheduleToCloseTimeout: '10m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
});

const DEFAULT_MAX_HISTORY_EVENTS = 2000;

/** Refuses every lease-mode call: runners never lease a Swarming build. */
function refuseLeaseMode(b: Build): never {
  throw ApplicationFailure.create({
    type: 'INVALID_BUILD_STATE' satisfies KilnError['code'],
    message: `build ${b.id} belongs to Swarming bucket ${b.builder.project}/${b.builder.bucket}; it is run by Swarming, not leased by runners`,
    nonRetryable: true,
  });
}

/** The message of an activity failure, without Temporal's wrapping. */
function failureMessage(e: unknown): string {
  if (e instanceof ActivityFailure && e.cause) return e.cause.message;
  return e instanceof Error ? e.message : String(e);
}

/** Human summary of a final task state. */
function taskSummary(r: TaskResultView): string {
  switch (r.state) {
    case 'COMPLETED':
      return r.internalFailure
        ? 'Swarming task COMPLETED with an internal failure'
        : `Swarming task COMPLETED with exit code ${r.exitCode ?? 0}`;
    case 'EXPIRED':
      return 'Swarming task EXPIRED: no bot took it before it expired';
    case 'NO_RESOURCE':
      return 'Swarming task NO_RESOURCE: no bot can run it';
    case 'BOT_DIED':
      return 'Swarming task BOT_DIED: the bot stopped responding';
    case 'TIMED_OUT':
      return 'Swarming task TIMED_OUT: it ran past its execution timeout';
    default:
      return `Swarming task ${r.state}`;
  }
}

/** A build of a Swarming bucket: see the module comment. */
export async function swarmingBuildWorkflow(input: SwarmingBuildWorkflowInput): Promise<Build> {
  const { timeouts, swarming: spec } = input;
  const st: SwarmingBuildState = input.state ?? {
    build: input.build,
    scheduledAtMs: Date.parse(input.build.createTime),
    persistedVersion: 0,
    createAttempted: false,
    pollRequested: false,
    lastPollMs: Date.parse(input.build.createTime),
    cancelTask: false,
  };
  const b = st.build;
  const maxHistoryEvents = input.maxHistoryEvents ?? DEFAULT_MAX_HISTORY_EVENTS;
  let tagsChanged = input.state === undefined;
  const clockVersions = patched(CLOCK_VERSIONS_PATCH);

  const nowIso = (): string => new Date(Date.now()).toISOString();
  const touch = (): number => touchBuild(b, Date.now(), clockVersions);
  const note = (kind: BuildEvent['kind'], message: string): void => noteBuildEvent(b, kind, message, Date.now());
  const end = (status: Build['status'], details: StatusDetails, summary: string | undefined): void => {
    if (isEnded(b.status)) return;
    b.status = status;
    b.statusDetails = details;
    b.endTime = nowIso();
    if (summary !== undefined) b.summaryMarkdown = summary;
    note('ENDED', `${status}${summary ? `: ${summary}` : ''}`);
    touch();
  };
  /** Kiln itself ends the build (cancel, timeouts): the task has to go too. */
  const endByKiln = (status: Build['status'], details: StatusDetails, summary: string | undefined): void => {
    end(status, details, summary);
    st.cancelTask = true;
  };
  const showDetails = (): void => {
    const lines = [`**${builderPath(b.builder)} #${b.number}** — ${b.status} (Swarming ${spec.hostname})`];
    if (st.taskId) lines.push(`task: ${st.taskId}`);
    if (b.url) lines.push(`task URL: ${b.url}`);
    setCurrentDetails(lines.join('\n\n'));
  };

  // ---- handlers, registered before anything else ----

  setHandler(getBuildQuery, () => b);
  const refuse = (_req: unknown): never => refuseLeaseMode(b);
  setHandler(leaseUpdate, refuse, { validator: refuse });
  setHandler(startUpdate, refuse, { validator: refuse });
  setHandler(heartbeatUpdate, refuse, { validator: refuse });
  setHandler(succeedUpdate, refuse, { validator: refuse });
  setHandler(failUpdate, refuse, { validator: refuse });
  setHandler(setPriorityUpdate, refuse, { validator: refuse });

  setHandler(cancelSignal, (req) => {
    if (isEnded(b.status)) return;
    note('CANCEL_REQUESTED', `canceled by ${req.canceledBy ?? 'unknown'}${req.reason ? `: ${req.reason}` : ''}`);
    if (req.canceledBy !== undefined) b.canceledBy = req.canceledBy;
    endByKiln('CANCELED', {}, req.reason);
  });

  setHandler(noteSignal, (req) => {
    note(req.kind, req.message);
    touch();
  });

  setHandler(swarmingNotifySignal, (req) => {
    if (st.taskId !== undefined && req.taskId !== st.taskId) {
      log.warn('notification for another task ignored', { buildId: b.id, taskId: req.taskId, ours: st.taskId });
      return;
    }
    st.pollRequested = true;
  });

  // ---- steps ----

  /** Storage refused the build for good: it ends INFRA_FAILURE and its task is canceled (see `storeBuild`). */
  const failUnstorable = (summary: string): void => {
    if (isEnded(b.status)) touch();
    else endByKiln('INFRA_FAILURE', {}, summary);
  };

  const persist = async (): Promise<void> => {
    const v = b.version;
    if (!(await storeBuild(b, undefined, failUnstorable))) return;
    st.persistedVersion = Math.max(st.persistedVersion, v);
    upsertSearchAttributes([
      { key: KilnStatus, value: b.status },
      ...(tagsChanged ? [{ key: KilnTags, value: clockVersions ? visibleTags(b.tags) : b.tags }] : []),
    ]);
    tagsChanged = false;
  };

  /** Applies a task result to the build. */
  const apply = (r: TaskResultView): void => {
    if (isEnded(b.status)) return;
    let mapped;
    try {
      mapped = buildStatusFromTask(r);
    } catch (e) {
      log.warn('task result ignored', { buildId: b.id, taskId: r.taskId, error: failureMessage(e) });
      return;
    }
    if (mapped.status === 'SCHEDULED') return;
    if (b.startTime === undefined && (mapped.status === 'STARTED' || r.startedTs !== undefined)) {
      b.startTime = r.startedTs ?? nowIso();
    }
    if (mapped.status === 'STARTED') {
      if (b.status === 'SCHEDULED') {
        b.status = 'STARTED';
        note('STARTED', `Swarming task ${r.taskId} is running${r.botId ? ` on bot ${r.botId}` : ''}`);
        touch();
      }
      return;
    }
    end(mapped.status, mapped.statusDetails, taskSummary(r));
  };

  /** Renders and creates the task; a build that cannot get one ends INFRA_FAILURE. */
  const createTask = async (): Promise<void> => {
    st.createAttempted = true;
    let prepared;
    try {
      prepared = prepareSwarmingTask(spec, b, Math.floor(Math.random() * 100));
    } catch (e) {
      if (!(e instanceof KilnError)) throw e;
      end('INFRA_FAILURE', {}, `cannot build the Swarming task: ${e.message}`);
      return;
    }
    let created;
    try {
      created = await createSwarmingTask({ hostname: spec.hostname, request: prepared.request });
    } catch (e) {
      end('INFRA_FAILURE', {}, `Swarming NewTask failed: ${failureMessage(e)}`);
      return;
    }
    st.taskId = created.taskId;
    st.lastPollMs = Date.now();
    b.tags = [...new Set([...b.tags, ...swarmingBuildTags(spec.hostname, created)])];
    tagsChanged = true;
    b.url = swarmingTaskUrl(spec.bucket.url_format, {
      swarmingHostname: spec.hostname,
      taskId: created.taskId,
      bucket: b.builder.bucket,
      builder: b.builder.builder,
    });
    const which = prepared.template.canary ? 'canary' : 'stable';
    note('SWARMING_TASK', `Swarming task ${created.taskId} created (${which} template ${prepared.template.revision})`);
    touch();
    if (created.result) apply(created.result);
    showDetails();
  };

  /** GetResult, applied to the build. A task Swarming no longer knows ends the build INFRA_FAILURE. */
  const poll = async (taskId: string): Promise<void> => {
    st.pollRequested = false;
    st.lastPollMs = Date.now();
    try {
      apply(await getSwarmingTaskResult({ hostname: spec.hostname, taskId }));
    } catch (e) {
      const permanent = e instanceof ActivityFailure && e.cause instanceof ApplicationFailure && e.cause.nonRetryable;
      if (permanent) end('INFRA_FAILURE', {}, `cannot read Swarming task ${taskId}: ${failureMessage(e)}`);
      else log.warn('polling the task failed; the sync timer tries again', { buildId: b.id, error: failureMessage(e) });
    }
    showDetails();
  };

  /** Kiln's own timers: pending or running too long ends the build (and then the task). */
  const fireDeadlines = (): void => {
    const now = Date.now();
    if (isEnded(b.status)) return;
    if (b.status === 'SCHEDULED' && now >= st.scheduledAtMs + timeouts.schedulingTimeoutMs) {
      endByKiln(
        'INFRA_FAILURE',
        { timeout: true, resourceExhaustion: true },
        'not started within the scheduling timeout',
      );
    } else if (b.status === 'STARTED' && b.startTime && now >= Date.parse(b.startTime) + timeouts.executionTimeoutMs) {
      endByKiln('INFRA_FAILURE', { timeout: true }, 'execution timeout');
    }
  };

  const nextWakeMs = (): number => {
    const ds = [st.lastPollMs + spec.syncIntervalMs];
    if (b.status === 'SCHEDULED') ds.push(st.scheduledAtMs + timeouts.schedulingTimeoutMs);
    if (b.status === 'STARTED' && b.startTime) ds.push(Date.parse(b.startTime) + timeouts.executionTimeoutMs);
    return Math.min(...ds);
  };

  // ---- main loop ----

  showDetails();
  for (;;) {
    if (!isEnded(b.status) && !st.createAttempted) {
      // NewTask may retry for minutes: meanwhile keep persisting, so a cancel shows at once.
      let created = false;
      const creating = createTask().finally(() => {
        created = true;
      });
      while (!created) {
        const version = b.version;
        await condition(() => created || b.version !== version);
        if (b.version > st.persistedVersion) await persist();
      }
      await creating;
    }
    fireDeadlines();
    if (b.version > st.persistedVersion) {
      await persist();
      showDetails();
    }
    if (isEnded(b.status)) break;

    const info = workflowInfo();
    if (info.continueAsNewSuggested || info.historyLength >= maxHistoryEvents) {
      await condition(allHandlersFinished);
      if (b.version === st.persistedVersion && !isEnded(b.status)) {
        log.info('continuing as new', { buildId: b.id, historyLength: info.historyLength });
        return await continueAsNew<typeof swarmingBuildWorkflow>({ ...input, state: st });
      }
      continue;
    }

    if (st.taskId !== undefined && (st.pollRequested || Date.now() >= st.lastPollMs + spec.syncIntervalMs)) {
      await poll(st.taskId);
      continue;
    }

    const version = b.version;
    await condition(() => b.version !== version || st.pollRequested, Math.max(1, nextWakeMs() - Date.now()));
  }

  if (st.cancelTask && st.taskId !== undefined) {
    try {
      const r = await cancelSwarmingTask({ hostname: spec.hostname, taskId: st.taskId });
      log.info('Swarming task canceled', { buildId: b.id, taskId: st.taskId, ...r });
    } catch (e) {
      log.warn('could not cancel the Swarming task', { buildId: b.id, taskId: st.taskId, error: failureMessage(e) });
    }
  }
  await condition(allHandlersFinished);
  while (b.version > st.persistedVersion) await persist();
  await announceBuildEnd(b); // ---- launchpad: the end reaches promotions and notifications (patched) ----
  return b;
}
