/**
 * `buildWorkflow`: one build, from SCHEDULED to an ended status, in lease mode (pull) — see
 * docs/architecture.md "One build = one workflow". The workflow is the source of truth for a live
 * build; every transition is written to storage by a local activity and mirrored in search
 * attributes. The rules live in `LeaseMachine` (src/domain/buildMachine.ts); this is the shell that
 * registers the handlers, persists, sleeps until the next deadline and continues as new.
 *
 * Messages: updates with validators for the calls that need an answer (lease, start, heartbeat,
 * succeed, fail, setPriority); signals for fire-and-forget (cancel, notes); a query for reading.
 */
import {
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  defineUpdate,
  getExternalWorkflowHandle,
  allHandlersFinished,
  log,
  patched,
  setHandler,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import { type Build, type BuildTimeouts, isEnded } from '../src/domain/build.ts';
import {
  type CompleteKind,
  type CompleteRequest,
  type HeartbeatRequest,
  type LeaseBuildState,
  type LeaseRequest,
  type LogWriterCheck,
  type StartRequest,
  initialCoreState,
  LeaseMachine,
} from '../src/domain/buildMachine.ts';
import {
  KilnLastHeartbeatAt,
  KilnLeaseExpiresAt,
  KilnLeaseHolder,
  KilnStatus,
} from '../src/domain/searchAttributes.ts';
import { announceBuildEnd } from './buildEnded.ts';
import {
  BuildShell,
  CLOCK_VERSIONS_PATCH,
  DeadlineTimer,
  PATCH_SET_1,
  cancelSignal,
  getBuildQuery,
  noteSignal,
  refuseIf,
} from './buildCore.ts';

export type {
  CancelRequest,
  CompleteRequest,
  HeartbeatRequest,
  LeaseRequest,
  LogWriterCheck,
  NoteRequest,
  StartRequest,
} from '../src/domain/buildMachine.ts';
export { CLOCK_VERSIONS_PATCH, cancelSignal, getBuildQuery, noteSignal };

/** A granted lease: the key is the capability for every later call on this build. */
export interface LeaseGrant {
  leaseKey: string;
  leaseExpiration: string;
  build: Build;
}

/** The answer to a heartbeat. */
export interface HeartbeatReply {
  leaseExpiration: string;
}

/** Input of `buildWorkflow`. */
export interface BuildWorkflowInput {
  /** The build as scheduled (status SCHEDULED, number allocated). */
  build: Build;
  timeouts: BuildTimeouts;
  /** Carried over by continue-as-new; absent on the first run. */
  state?: BuildWorkflowState;
  /**
   * Continue as new once a run's history passes this many events, even before the server suggests
   * it. Tests lower it to force continue-as-new early.
   * @default 2000
   */
  maxHistoryEvents?: number;
  /**
   * The change verification this build reports to while it is not that workflow's child: set when
   * a repair restarted a verification's broken child build as a run of its own (src/builds/repair.ts).
   */
  parentWorkflowId?: string;
}

/** Everything a run hands to the next one. */
export type BuildWorkflowState = LeaseBuildState;

export const leaseUpdate = defineUpdate<LeaseGrant, [LeaseRequest]>('lease');
export const startUpdate = defineUpdate<Build, [StartRequest]>('start');
export const heartbeatUpdate = defineUpdate<HeartbeatReply, [HeartbeatRequest]>('heartbeat');
export const succeedUpdate = defineUpdate<Build, [CompleteRequest]>('succeed');
export const failUpdate = defineUpdate<Build, [CompleteRequest]>('fail');
export const setPriorityUpdate = defineUpdate<Build, [{ priority: number }]>('setPriority');
/**
 * Answers once storage holds the build (its first write), so `schedule` (update-with-start) returns
 * a build that peek and GET already see, while storage stays written only by this workflow.
 */
export const storedUpdate = defineUpdate<Build>('stored');
/**
 * Notes a late report from an earlier lease holder in the build's history. The validator refuses
 * keys this build never handed out, so a stranger's junk report changes nothing.
 */
export const staleReportUpdate = defineUpdate<void, [{ leaseKey: string; report: string }]>('noteStaleReport');

/** What a build tells its parent workflow (a change verification) after each persisted transition. */
export interface BuildProgress {
  buildId: string;
  status: Build['status'];
  leaseHolder?: string;
  leaseGeneration: number;
  leaseResets: number;
  url?: string;
  version: number;
  /** The build's summary; sent only by a repaired run (`parentWorkflowId`), whose end the parent learns this way. */
  summary?: string;
}

/** Sent by a child build to its parent; see `BuildProgress`. */
export const buildProgressSignal = defineSignal<[BuildProgress]>('buildProgress');

/**
 * Sent by a repair to a change verification just before it restarts the verification's broken child
 * build as a run of its own: the child's end then comes as a `buildProgress` with an ended status,
 * not as the child's result (which becomes "terminated").
 */
export const buildRepairSignal = defineSignal<[{ buildId: string }]>('buildRepair');

/**
 * May `leaseKey` upload the build's log? Yes for the current lease, and for the lease that was
 * current when the build ended (so a canceled runner can still upload what it has). A query, so
 * log chunks never add to the workflow's history.
 */
export const logWriterQuery = defineQuery<LogWriterCheck, [string]>('logWriter');

/**
 * Patch: one deadline timer re-armed only when a nearer deadline appears (not on every transition),
 * the holder's last contact in search attributes on lease/start and throttled on heartbeats.
 */
const LEAN_PATCH = 'kiln-lean-timer-and-heartbeat-visibility';

/**
 * Registers every lease-mode message handler on `shell` over `m`, in the order buffered messages
 * are delivered in; `showDetails` refreshes the Temporal UI's current details.
 */
function handleLeaseMessages(
  m: LeaseMachine,
  shell: BuildShell<LeaseBuildState>,
  showDetails: (lastHeartbeat?: string) => void,
): void {
  const b = m.build;
  const now = (): number => shell.now();

  shell.handleGetBuild();
  setHandler(storedUpdate, async () => {
    await shell.persisted(1);
    return b;
  });
  setHandler(logWriterQuery, (leaseKey) => m.logWriter(leaseKey, now()));

  setHandler(
    leaseUpdate,
    async (req): Promise<LeaseGrant> => {
      // Validators ran one by one before their handlers, so a second racing lease was refused there.
      if (m.lease(req, now(), () => uuid4()).changed) showDetails();
      const grant = m.grant(now());
      // ---- issue 18: lease and start in one step (only lease-next asks; no earlier history has `start`) ----
      if (req.start !== undefined && m.start({ leaseKey: grant.leaseKey, ...req.start }, now()).changed) showDetails();
      await shell.persisted(b.version);
      return { ...grant, build: b };
    },
    { validator: (req) => refuseIf(m.refuseLease(req, now())) },
  );

  setHandler(
    startUpdate,
    async (req): Promise<Build> => {
      if (m.start(req, now()).changed) showDetails();
      await shell.persisted(b.version);
      return b;
    },
    { validator: (req) => refuseIf(m.refuseStart(req, now())) },
  );

  setHandler(
    heartbeatUpdate,
    (req): HeartbeatReply => {
      const at = now();
      const { leaseExpiration, refreshVisibility } = m.heartbeat(req, at);
      if (refreshVisibility) {
        upsertSearchAttributes([
          { key: KilnLeaseExpiresAt, value: new Date(leaseExpiration) },
          { key: KilnLastHeartbeatAt, value: new Date(at) },
        ]);
      }
      showDetails(new Date(at).toISOString());
      // Not persisted to storage: heartbeats only move the lease, which lives in the workflow
      // and in search attributes; this keeps a heartbeat at one workflow task.
      return { leaseExpiration };
    },
    { validator: (req) => refuseIf(m.refuseHeartbeat(req, now())) },
  );

  const completeHandler =
    (kind: CompleteKind) =>
    async (req: CompleteRequest): Promise<Build> => {
      shell.settle(m.complete(kind, req, now()));
      await shell.persisted(b.version);
      return b;
    };
  const completeValidator = (kind: CompleteKind) => (req: CompleteRequest) =>
    refuseIf(m.refuseComplete(kind, req, now()));
  setHandler(succeedUpdate, completeHandler('succeed'), { validator: completeValidator('succeed') });
  setHandler(failUpdate, completeHandler('fail'), { validator: completeValidator('fail') });

  setHandler(
    setPriorityUpdate,
    async ({ priority }): Promise<Build> => {
      m.setPriority(priority, now());
      await shell.persisted(b.version);
      return b;
    },
    { validator: ({ priority }) => refuseIf(m.refuseSetPriority(priority)) },
  );

  shell.handleCancel();

  setHandler(
    staleReportUpdate,
    async ({ report }) => {
      await shell.persisted(m.noteStaleReport(report, now()).version);
    },
    { validator: ({ leaseKey }) => refuseIf(m.refuseStaleReport(leaseKey)) },
  );

  shell.handleNotes();
}

/** A build in lease mode: see the module comment. */
export async function buildWorkflow(input: BuildWorkflowInput): Promise<Build> {
  // Runs started before these patches replay (and go on) the way they began. `PATCH_SET_1` first: a
  // run that has it calls none of the others (it stands for them all).
  const patchSet1 = patched(PATCH_SET_1);
  const lean = patchSet1 || patched(LEAN_PATCH);
  const clockVersions = patchSet1 || patched(CLOCK_VERSIONS_PATCH);
  const st: BuildWorkflowState = input.state ?? initialCoreState(input.build);
  const m = new LeaseMachine(st, input.timeouts, { lean, clockVersions });
  const b = st.build;

  /**
   * A child build (of a change verification) tells its parent about every persisted transition,
   * so the parent can post "taken" / "rescheduled" messages. Builds without a parent send nothing,
   * so histories of builds started before this existed replay unchanged.
   */
  const notifyParent = async (): Promise<void> => {
    // A repaired run is no child, but still reports to the verification (input.parentWorkflowId).
    const parentId = workflowInfo().parent?.workflowId ?? input.parentWorkflowId;
    if (parentId === undefined) return;
    const progress: BuildProgress = {
      buildId: b.id,
      status: b.status,
      leaseHolder: b.leaseHolder,
      leaseGeneration: b.leaseGeneration,
      leaseResets: b.leaseResets,
      url: b.url,
      version: b.version,
      ...(input.parentWorkflowId !== undefined && b.summaryMarkdown !== undefined
        ? { summary: b.summaryMarkdown }
        : {}),
    };
    await getExternalWorkflowHandle(parentId)
      .signal(buildProgressSignal, progress)
      .catch((e: unknown) => log.warn('could not notify the parent workflow', { buildId: b.id, error: String(e) }));
  };

  const shell = new BuildShell(m, {
    maxHistoryEvents: input.maxHistoryEvents,
    searchAttributes: () => [
      { key: KilnStatus, value: b.status },
      { key: KilnLeaseHolder, value: b.leaseHolder ?? null },
      { key: KilnLeaseExpiresAt, value: b.leaseExpiration ? new Date(b.leaseExpiration) : null },
      ...(lean
        ? [{ key: KilnLastHeartbeatAt, value: st.lastContactMs === undefined ? null : new Date(st.lastContactMs) }]
        : []),
    ],
    afterPersist: notifyParent,
    announceInStore: true,
    patchSet1,
  });
  const now = (): number => shell.now();

  const showDetails = (lastHeartbeat?: string): void => {
    const lines: string[] = [];
    if (b.leaseHolder) lines.push(`lease holder: ${b.leaseHolder}`);
    if (b.leaseExpiration) lines.push(`lease expires: ${b.leaseExpiration}`);
    if (lastHeartbeat) lines.push(`last heartbeat: ${lastHeartbeat}`);
    if (b.leaseResets > 0) lines.push(`lease resets: ${b.leaseResets}`);
    shell.showDetails(lines);
  };

  // ---- handlers, registered before anything else ----

  handleLeaseMessages(m, shell, showDetails);

  // ---- main loop ----

  /** Acts on whichever deadline has passed: lease expiry, scheduling or execution timeout. */
  const fireDeadlines = (): void => {
    const step = shell.settle(m.fireDeadlines(now()));
    if (step.expired === 'ended') log.info('lease expired, no resets left', { buildId: b.id, holder: step.holder });
    if (step.expired === 'reset') showDetails();
  };
  const nextDeadlineMs = (): number => m.nextDeadlineMs(now());

  /** The one deadline timer of the lean loop: re-armed only when a nearer deadline appears. */
  const timer = new DeadlineTimer();

  showDetails();
  for (;;) {
    fireDeadlines();
    await shell.persistUntilCaughtUp();
    if (isEnded(b.status)) break;

    if (await shell.continueAsNewWhenLong(() => continueAsNew<typeof buildWorkflow>({ ...input, state: st }))) {
      continue;
    }

    // Sleep until a deadline or until something needs persisting. Heartbeats that extend the
    // lease do not wake the loop; the timer re-arms to the new expiry when it fires.
    // A change made while the last persist was in flight is already newer than storage: wake at once.
    const version = b.version;
    if (lean) {
      // A later deadline (a heartbeat moved the lease) keeps the armed timer; when it fires early,
      // fireDeadlines finds nothing due and the next pass arms the timer for the new deadline.
      timer.arm(nextDeadlineMs());
      await condition(
        () =>
          timer.fired || b.version !== version || m.unpersisted || nextDeadlineMs() < timer.at || shell.historyIsLong(),
      );
      timer.fired = false;
      continue;
    }
    const deadline = nextDeadlineMs();
    await condition(
      () => b.version !== version || m.unpersisted || nextDeadlineMs() < deadline || shell.historyIsLong(),
      Math.max(1, deadline - Date.now()),
    );
  }

  // ---- launchpad: the end reaches promotions and notifications (patched; since issue 18 in the store ----
  // ---- that first held the ended build) ----
  if (!shell.announced) await announceBuildEnd(b);
  await condition(allHandlersFinished);
  return b;
}
