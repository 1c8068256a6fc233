/**
 * `swarmingBuildWorkflow`: one build of a Swarming bucket, from SCHEDULED to an ended status, in
 * Swarming mode (push) — see docs/architecture.md "Swarming mode". Same workflow ID (`build/<id>`),
 * same query, cancel and note signals, same storage writes and search attributes as lease mode
 * (the shared `BuildShell`); the lease-mode updates are refused with INVALID_BUILD_STATE because no
 * runner may lease a Swarming build. The rules live in `SwarmingMachine`
 * (src/domain/swarming/machine.ts).
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
  setHandler,
} from '@temporalio/workflow';
import { announceBuildEnd } from './buildEnded.ts';
import type { createActivities } from '../activities/index.ts';
import { type Build, type BuildTimeouts, isEnded } from '../src/domain/build.ts';
import { KilnError } from '../src/domain/errors.ts';
import { KilnStatus, KilnTags, visibleTags } from '../src/domain/searchAttributes.ts';
import { prepareSwarmingTask, type SwarmingBuildSpec } from '../src/domain/swarming/build.ts';
import { initialSwarmingState, type SwarmingBuildState, SwarmingMachine } from '../src/domain/swarming/machine.ts';
import { swarmingBuildTags, swarmingTaskUrl } from '../src/domain/swarming/template.ts';
import { failUpdate, heartbeatUpdate, leaseUpdate, setPriorityUpdate, startUpdate, succeedUpdate } from './build.ts';
import { BuildShell, CLOCK_VERSIONS_PATCH, PATCH_SET_1 } from './buildCore.ts';

export type { SwarmingBuildState } from '../src/domain/swarming/machine.ts';

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

/** What the steps of a Swarming build work on. */
interface SwarmingRun {
  m: SwarmingMachine;
  shell: BuildShell<SwarmingBuildState>;
  spec: SwarmingBuildSpec;
  showDetails: () => void;
  /** The build's tags changed: the next persist writes them to search attributes. */
  markTagsChanged: () => void;
}

/** Registers every Swarming-mode message handler, in the order buffered messages are delivered in. */
function handleSwarmingMessages(m: SwarmingMachine, shell: BuildShell<SwarmingBuildState>): void {
  const b = m.build;
  shell.handleGetBuild();
  const refuse = (_req: unknown): never => refuseLeaseMode(b);
  setHandler(leaseUpdate, refuse, { validator: refuse });
  setHandler(startUpdate, refuse, { validator: refuse });
  setHandler(heartbeatUpdate, refuse, { validator: refuse });
  setHandler(succeedUpdate, refuse, { validator: refuse });
  setHandler(failUpdate, refuse, { validator: refuse });
  setHandler(setPriorityUpdate, refuse, { validator: refuse });
  shell.handleCancel();
  shell.handleNotes();
  setHandler(swarmingNotifySignal, (req) => {
    if (!m.notified(req.taskId)) {
      log.warn('notification for another task ignored', { buildId: b.id, taskId: req.taskId, ours: m.st.taskId });
    }
  });
}

/** Applies a task result to the build. */
function apply({ m, shell }: SwarmingRun, r: TaskResultView): void {
  const step = shell.settle(m.apply(r, shell.now()));
  if (step.ignored) log.warn('task result ignored', { buildId: m.build.id, taskId: r.taskId, error: step.ignored });
}

/** Renders and creates the task; a build that cannot get one ends INFRA_FAILURE. */
async function createTask(run: SwarmingRun): Promise<void> {
  const { m, shell, spec } = run;
  const b = m.build;
  m.creating();
  let prepared;
  try {
    prepared = prepareSwarmingTask(spec, b, Math.floor(Math.random() * 100));
  } catch (e) {
    if (!(e instanceof KilnError)) throw e;
    shell.settle(m.end('INFRA_FAILURE', {}, `cannot build the Swarming task: ${e.message}`, shell.now()));
    return;
  }
  let created;
  try {
    created = await createSwarmingTask({ hostname: spec.hostname, request: prepared.request });
  } catch (e) {
    shell.settle(m.end('INFRA_FAILURE', {}, `Swarming NewTask failed: ${failureMessage(e)}`, shell.now()));
    return;
  }
  const url = swarmingTaskUrl(spec.bucket.url_format, {
    swarmingHostname: spec.hostname,
    taskId: created.taskId,
    bucket: b.builder.bucket,
    builder: b.builder.builder,
  });
  const buildTags = swarmingBuildTags(spec.hostname, created);
  m.taskCreated({ taskId: created.taskId, buildTags, url, template: prepared.template }, shell.now());
  run.markTagsChanged();
  if (created.result) apply(run, created.result);
  run.showDetails();
}

/** GetResult, applied to the build. A task Swarming no longer knows ends the build INFRA_FAILURE. */
async function poll(run: SwarmingRun, taskId: string): Promise<void> {
  const { m, shell, spec } = run;
  m.polling(shell.now());
  try {
    apply(run, await getSwarmingTaskResult({ hostname: spec.hostname, taskId }));
  } catch (e) {
    const permanent = e instanceof ActivityFailure && e.cause instanceof ApplicationFailure && e.cause.nonRetryable;
    if (permanent) {
      const summary = `cannot read Swarming task ${taskId}: ${failureMessage(e)}`;
      shell.settle(m.end('INFRA_FAILURE', {}, summary, shell.now()));
    } else {
      log.warn('polling the task failed; the sync timer tries again', {
        buildId: m.build.id,
        error: failureMessage(e),
      });
    }
  }
  run.showDetails();
}

/**
 * Patch: the loop stores until storage has caught up (a change made while a persist was in flight
 * is stored at once, not at the next wake), as lease mode does.
 */
const PERSIST_CAUGHT_UP_PATCH = 'kiln-swarming-persist-caught-up';

/** A build of a Swarming bucket: see the module comment. */
export async function swarmingBuildWorkflow(input: SwarmingBuildWorkflowInput): Promise<Build> {
  const { swarming: spec } = input;
  // `PATCH_SET_1` first: a run that has it calls none of the others (it stands for them all).
  const patchSet1 = patched(PATCH_SET_1);
  const clockVersions = patchSet1 || patched(CLOCK_VERSIONS_PATCH);
  const caughtUp = patchSet1 || patched(PERSIST_CAUGHT_UP_PATCH);
  const st: SwarmingBuildState = input.state ?? initialSwarmingState(input.build);
  const m = new SwarmingMachine(st, input.timeouts, clockVersions, spec.syncIntervalMs);
  const b = st.build;
  let tagsChanged = input.state === undefined;

  const shell = new BuildShell(m, {
    maxHistoryEvents: input.maxHistoryEvents,
    modeLabel: `(Swarming ${spec.hostname})`,
    searchAttributes: () => {
      const tags = tagsChanged ? [{ key: KilnTags, value: clockVersions ? visibleTags(b.tags) : b.tags }] : [];
      tagsChanged = false;
      return [{ key: KilnStatus, value: b.status }, ...tags];
    },
    patchSet1,
  });
  const now = (): number => shell.now();
  const showDetails = (): void => {
    const lines: string[] = [];
    if (st.taskId) lines.push(`task: ${st.taskId}`);
    if (b.url) lines.push(`task URL: ${b.url}`);
    shell.showDetails(lines);
  };
  /** Stores the build: until storage has caught up, or (runs from before that patch) once. */
  const persist = async (): Promise<void> => {
    if (caughtUp) await shell.persistUntilCaughtUp();
    else await shell.persist();
  };

  const run: SwarmingRun = { m, shell, spec, showDetails, markTagsChanged: () => (tagsChanged = true) };

  // ---- handlers, registered before anything else (in this order, which buffered messages follow) ----

  handleSwarmingMessages(m, shell);

  // ---- main loop ----

  showDetails();
  for (;;) {
    if (!isEnded(b.status) && !st.createAttempted) {
      // NewTask may retry for minutes: meanwhile keep persisting, so a cancel shows at once.
      let created = false;
      const creating = createTask(run).finally(() => {
        created = true;
      });
      while (!created) {
        const version = b.version;
        await condition(() => created || b.version !== version || (caughtUp && m.unpersisted));
        if (m.unpersisted) await persist();
      }
      await creating;
    }
    shell.settle(m.fireDeadlines(now()));
    if (m.unpersisted) {
      await persist();
      showDetails();
    }
    if (isEnded(b.status)) break;

    if (await shell.continueAsNewWhenLong(() => continueAsNew<typeof swarmingBuildWorkflow>({ ...input, state: st }))) {
      continue;
    }

    const taskId = m.taskToPoll(now());
    if (taskId !== undefined) {
      await poll(run, taskId);
      continue;
    }

    const version = b.version;
    await condition(
      () => b.version !== version || st.pollRequested || (caughtUp && m.unpersisted),
      Math.max(1, m.nextWakeMs() - Date.now()),
    );
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
  await shell.persistUntilCaughtUp();
  await announceBuildEnd(b, patchSet1); // ---- launchpad: the end reaches promotions and notifications (patched) ----
  return b;
}
