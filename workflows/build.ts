/**
 * `buildWorkflow`: one build, from SCHEDULED to an ended status, in lease mode (pull) — see
 * DESIGN.md "One build = one workflow". The workflow is the source of truth for a live build;
 * every transition is written to storage by a local activity and mirrored in search attributes.
 *
 * Messages: updates with validators for the calls that need an answer (lease, start, heartbeat,
 * succeed, fail, setPriority); signals for fire-and-forget (cancel, notes); a query for reading.
 */
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  defineUpdate,
  getExternalWorkflowHandle,
  allHandlersFinished,
  log,
  patched,
  setCurrentDetails,
  setHandler,
  sleep,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import {
  type Build,
  type BuildEvent,
  type BuildLeaseKeys,
  type BuildOutput,
  type BuildTimeouts,
  type StatusDetails,
  builderPath,
  isEnded,
  noteBuildEvent,
  touchBuild,
} from '../src/domain/build.ts';
import { type ErrorCode } from '../src/domain/errors.ts';
import {
  KilnLastHeartbeatAt,
  KilnLeaseExpiresAt,
  KilnLeaseHolder,
  KilnStatus,
} from '../src/domain/searchAttributes.ts';
import { announceBuildEnd } from './buildEnded.ts';
import { storeBuild } from './storeBuild.ts';

/** What a runner asks for when it leases a build. */
export interface LeaseRequest {
  /** Lease length; the builder's default when absent, capped at the builder's maximum. */
  leaseDurationMs?: number;
  /** Who leases (runner or tinderbox name), shown to operators. */
  holder?: string;
  /** A retried lease with the same id returns the same grant instead of BUILD_IS_LEASED. */
  requestId?: string;
}

/** A granted lease: the key is the capability for every later call on this build. */
export interface LeaseGrant {
  leaseKey: string;
  leaseExpiration: string;
  build: Build;
}

/** Start a leased build. */
export interface StartRequest {
  leaseKey: string;
  url?: string;
}

/** Extend a lease. */
export interface HeartbeatRequest {
  leaseKey: string;
  leaseDurationMs?: number;
}

/** The answer to a heartbeat. */
export interface HeartbeatReply {
  leaseExpiration: string;
}

/** End a leased build. `succeed` and `fail` share this shape. */
export interface CompleteRequest {
  leaseKey: string;
  output?: BuildOutput;
  summaryMarkdown?: string;
  url?: string;
  /** Only for `fail`: whose fault it was. @default 'BUILD_FAILURE' */
  failureReason?: 'BUILD_FAILURE' | 'INFRA_FAILURE';
}

/** Cancel a build; idempotent. */
export interface CancelRequest {
  reason?: string;
  canceledBy?: string;
}

/** A note for the build's own history (e.g. a stale report the API refused). */
export interface NoteRequest {
  kind: BuildEvent['kind'];
  message: string;
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
}

/** Everything a run hands to the next one. */
export interface BuildWorkflowState {
  build: Build;
  leaseKey?: string;
  leaseRequestId?: string;
  /** When the build last entered SCHEDULED (ms): the scheduling timeout counts from here. */
  scheduledAtMs: number;
  persistedVersion: number;
  /** The lease key whose succeed/fail ended the build, so a retried report gets the same answer. */
  endedByLeaseKey?: string;
  /** The lease key that was current when the build ended (any way), so its holder can finish the log. */
  leaseKeyAtEnd?: string;
  /** Recent lease keys that are no longer current (bounded), so a late report from one can be noted. */
  pastLeaseKeys?: string[];
  /** The lease holder's last sign of life (lease, start, heartbeat) as last put in search attributes. */
  lastContactMs?: number;
}

export const leaseUpdate = defineUpdate<LeaseGrant, [LeaseRequest]>('lease');
export const startUpdate = defineUpdate<Build, [StartRequest]>('start');
export const heartbeatUpdate = defineUpdate<HeartbeatReply, [HeartbeatRequest]>('heartbeat');
export const succeedUpdate = defineUpdate<Build, [CompleteRequest]>('succeed');
export const failUpdate = defineUpdate<Build, [CompleteRequest]>('fail');
export const setPriorityUpdate = defineUpdate<Build, [{ priority: number }]>('setPriority');
export const cancelSignal = defineSignal<[CancelRequest]>('cancel');
export const noteSignal = defineSignal<[NoteRequest]>('note');
export const getBuildQuery = defineQuery<Build>('getBuild');
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
}

/** Sent by a child build to its parent; see `BuildProgress`. */
export const buildProgressSignal = defineSignal<[BuildProgress]>('buildProgress');

/** Whether a lease key may write the build's log: refused with the same codes a heartbeat would get. */
export type LogWriterCheck = { ok: true } | { ok: false; code: ErrorCode; message: string };

/**
 * May `leaseKey` upload the build's log? Yes for the current lease, and for the lease that was
 * current when the build ended (so a canceled runner can still upload what it has). A query, so
 * log chunks never add to the workflow's history.
 */
export const logWriterQuery = defineQuery<LogWriterCheck, [string]>('logWriter');

/** Refuse a message with one of Kiln's fixed error codes. */
function refuse(code: ErrorCode, message: string): never {
  throw ApplicationFailure.create({ type: code, message, nonRetryable: true });
}

const DEFAULT_MAX_HISTORY_EVENTS = 2000;
/**
 * Heartbeats refresh `KilnLastHeartbeatAt`/`KilnLeaseExpiresAt` at most this often: each refresh is
 * a history event and a visibility write, and the stuck-build filters look minutes back, not seconds.
 */
const HEARTBEAT_VISIBILITY_MS = 15_000;
/**
 * Patch: one deadline timer re-armed only when a nearer deadline appears (not on every transition),
 * the holder's last contact in search attributes on lease/start and throttled on heartbeats.
 */
const LEAN_PATCH = 'kiln-lean-timer-and-heartbeat-visibility';
/**
 * Patch: an ended build's current details say how it ended (the Temporal UI lists every ended build
 * as Completed, FAILURE included: the workflow did its job). Runs from before replay without it.
 */
const ENDED_DETAILS_PATCH = 'kiln-ended-details';
/** At-a-glance marks for the ended details. */
const ENDED_MARK: Partial<Record<Build['status'], string>> = {
  SUCCESS: '✅',
  FAILURE: '❌',
  INFRA_FAILURE: '⚠️',
  CANCELED: '⛔',
};
/**
 * Patch: versions from the workflow task's clock (`nextBuildVersion`), so a write made by a task the
 * server lost is always superseded by the next durable one; lease keys written with each build.
 */
export const CLOCK_VERSIONS_PATCH = 'kiln-clock-versions';

/** A build in lease mode: see the module comment. */
export async function buildWorkflow(input: BuildWorkflowInput): Promise<Build> {
  const { timeouts } = input;
  const st: BuildWorkflowState = input.state ?? {
    build: input.build,
    scheduledAtMs: Date.parse(input.build.createTime),
    persistedVersion: 0,
  };
  const b = st.build;
  const maxHistoryEvents = input.maxHistoryEvents ?? DEFAULT_MAX_HISTORY_EVENTS;
  // Runs started before this patch replay (and go on) the way they began.
  const lean = patched(LEAN_PATCH);
  const clockVersions = patched(CLOCK_VERSIONS_PATCH);

  const nowIso = (): string => new Date(Date.now()).toISOString();

  /** Every state change goes through here: bumps the version so the main loop persists it. */
  const touch = (): number => touchBuild(b, Date.now(), clockVersions);
  const note = (kind: BuildEvent['kind'], message: string): void => noteBuildEvent(b, kind, message, Date.now());

  /** Ends the current lease key's life; it stays known (bounded) so a late report from it can be noted. */
  const retireKey = (): void => {
    if (st.leaseKey !== undefined) st.pastLeaseKeys = [...(st.pastLeaseKeys ?? []), st.leaseKey].slice(-10);
    st.leaseKey = undefined;
  };

  /** Resolves when storage has seen version `v` (the main loop writes it). */
  const persisted = (v: number): Promise<void> => condition(() => st.persistedVersion >= v);

  const leaseExpiredNow = (): boolean => b.leaseExpiration !== undefined && Date.parse(b.leaseExpiration) <= Date.now();

  const leaseDuration = (ms: number | undefined): number => {
    if (ms === undefined) return timeouts.defaultLeaseMs;
    if (!Number.isFinite(ms) || ms <= 0) refuse('INVALID_ARGUMENT', 'leaseDuration must be positive');
    return Math.min(ms, timeouts.maxLeaseMs);
  };

  /** Validates a lease key for start/heartbeat/succeed/fail. */
  const checkKey = (leaseKey: string): void => {
    if (isEnded(b.status)) {
      refuse('BUILD_IS_COMPLETED', `build ${b.id} has ended with status ${b.status}; stop working on it`);
    }
    if (st.leaseKey === undefined || leaseKey !== st.leaseKey || leaseExpiredNow()) {
      refuse('LEASE_EXPIRED', `lease key is not current for build ${b.id}; the lease expired or was reset: stop`);
    }
  };

  const end = (
    status: Build['status'],
    details: StatusDetails,
    summary: string | undefined,
    output?: BuildOutput,
  ): number => {
    b.status = status;
    b.statusDetails = details;
    b.endTime = nowIso();
    if (summary !== undefined) b.summaryMarkdown = summary;
    if (output !== undefined) b.output = output;
    b.leaseExpiration = undefined;
    b.leaseHolder = undefined;
    st.leaseKeyAtEnd = st.leaseKey;
    retireKey();
    note('ENDED', `${status}${summary ? `: ${summary}` : ''}`);
    if (patched(ENDED_DETAILS_PATCH)) {
      setCurrentDetails(
        `**${builderPath(b.builder)} #${b.number}** — ${ENDED_MARK[status] ?? ''} ${status}${summary ? `\n\n${summary}` : ''}`,
      );
    }
    return touch();
  };

  const showDetails = (lastHeartbeat?: string): void => {
    const lines = [`**${builderPath(b.builder)} #${b.number}** — ${b.status}`];
    if (b.leaseHolder) lines.push(`lease holder: ${b.leaseHolder}`);
    if (b.leaseExpiration) lines.push(`lease expires: ${b.leaseExpiration}`);
    if (lastHeartbeat) lines.push(`last heartbeat: ${lastHeartbeat}`);
    if (b.leaseResets > 0) lines.push(`lease resets: ${b.leaseResets}`);
    setCurrentDetails(lines.join('\n\n'));
  };

  // ---- handlers, registered before anything else ----

  setHandler(getBuildQuery, () => b);
  setHandler(storedUpdate, async () => {
    await persisted(1);
    return b;
  });
  setHandler(logWriterQuery, (leaseKey): LogWriterCheck => {
    if (isEnded(b.status)) {
      if (leaseKey === st.leaseKeyAtEnd || leaseKey === st.endedByLeaseKey) return { ok: true };
      return { ok: false, code: 'BUILD_IS_COMPLETED', message: `build ${b.id} has ended with status ${b.status}` };
    }
    if (st.leaseKey === undefined || leaseKey !== st.leaseKey || leaseExpiredNow()) {
      return { ok: false, code: 'LEASE_EXPIRED', message: `lease key is not current for build ${b.id}` };
    }
    return { ok: true };
  });

  /** True when `req` retries the lease that is current (same request id): answer it again. */
  const isLeaseRetry = (req: LeaseRequest): boolean =>
    req.requestId !== undefined &&
    req.requestId === st.leaseRequestId &&
    st.leaseKey !== undefined &&
    !leaseExpiredNow();

  setHandler(
    leaseUpdate,
    async (req): Promise<LeaseGrant> => {
      if (!isLeaseRetry(req)) {
        // Validators ran one by one before their handlers, so a second racing lease was refused there.
        const durationMs = leaseDuration(req.leaseDurationMs);
        b.leaseGeneration += 1;
        st.leaseKey = `${b.leaseGeneration}.${uuid4()}`;
        st.leaseRequestId = req.requestId;
        b.leaseHolder = req.holder ?? 'unknown';
        b.leaseExpiration = new Date(Date.now() + durationMs).toISOString();
        if (lean) st.lastContactMs = Date.now();
        note('LEASED', `leased by ${b.leaseHolder} until ${b.leaseExpiration} (generation ${b.leaseGeneration})`);
        touch();
        showDetails();
      }
      const grant = { leaseKey: st.leaseKey ?? '', leaseExpiration: b.leaseExpiration ?? nowIso() };
      await persisted(b.version);
      return { ...grant, build: b };
    },
    {
      validator: (req) => {
        if (isEnded(b.status)) refuse('BUILD_IS_COMPLETED', `build ${b.id} has ended with status ${b.status}`);
        if (isLeaseRetry(req)) return;
        if (b.status !== 'SCHEDULED' || st.leaseKey !== undefined) {
          refuse('BUILD_IS_LEASED', `build ${b.id} is already leased`);
        }
        leaseDuration(req.leaseDurationMs);
      },
    },
  );

  setHandler(
    startUpdate,
    async (req): Promise<Build> => {
      if (b.status === 'SCHEDULED') {
        b.status = 'STARTED';
        b.startTime = nowIso();
        if (lean) st.lastContactMs = Date.now();
        if (req.url !== undefined) b.url = req.url;
        note('STARTED', `started by ${b.leaseHolder ?? 'unknown'}`);
        touch();
        showDetails();
      }
      await persisted(b.version);
      return b;
    },
    {
      validator: (req) => {
        checkKey(req.leaseKey);
      },
    },
  );

  setHandler(
    heartbeatUpdate,
    (req): HeartbeatReply => {
      const durationMs = leaseDuration(req.leaseDurationMs);
      const now = Date.now();
      b.leaseExpiration = new Date(now + durationMs).toISOString();
      const hb = new Date(now);
      if (!lean || st.lastContactMs === undefined || now - st.lastContactMs >= HEARTBEAT_VISIBILITY_MS) {
        upsertSearchAttributes([
          { key: KilnLeaseExpiresAt, value: new Date(b.leaseExpiration) },
          { key: KilnLastHeartbeatAt, value: hb },
        ]);
        if (lean) st.lastContactMs = now;
      }
      showDetails(hb.toISOString());
      // Not persisted to storage: heartbeats only move the lease, which lives in the workflow
      // and in search attributes; this keeps a heartbeat at one workflow task.
      return { leaseExpiration: b.leaseExpiration };
    },
    {
      validator: (req) => {
        checkKey(req.leaseKey);
        leaseDuration(req.leaseDurationMs);
      },
    },
  );

  const outcomes = { succeed: ['SUCCESS'], fail: ['FAILURE', 'INFRA_FAILURE'] } as const;

  const completeHandler =
    (kind: 'succeed' | 'fail') =>
    async (req: CompleteRequest): Promise<Build> => {
      if (!isEnded(b.status)) {
        if (req.url !== undefined) b.url = req.url;
        const status =
          kind === 'succeed' ? 'SUCCESS' : req.failureReason === 'INFRA_FAILURE' ? 'INFRA_FAILURE' : 'FAILURE';
        if (b.startTime === undefined) b.startTime = nowIso();
        st.endedByLeaseKey = req.leaseKey;
        end(status, {}, req.summaryMarkdown, req.output);
      }
      await persisted(b.version);
      return b;
    };

  const completeValidator =
    (kind: 'succeed' | 'fail') =>
    (req: CompleteRequest): void => {
      // A retried report that already ended the build the same way is answered again.
      const retried =
        isEnded(b.status) &&
        st.endedByLeaseKey === req.leaseKey &&
        (outcomes[kind] as readonly string[]).includes(b.status);
      if (!retried) checkKey(req.leaseKey);
    };
  setHandler(succeedUpdate, completeHandler('succeed'), { validator: completeValidator('succeed') });
  setHandler(failUpdate, completeHandler('fail'), { validator: completeValidator('fail') });

  setHandler(
    setPriorityUpdate,
    async ({ priority }): Promise<Build> => {
      if (b.priority !== priority) {
        note('PRIORITY_CHANGED', `priority ${b.priority} → ${priority}`);
        b.priority = priority;
        touch();
      }
      await persisted(b.version);
      return b;
    },
    {
      validator: ({ priority }) => {
        if (!Number.isInteger(priority) || priority < 0 || priority > 255) {
          refuse('INVALID_ARGUMENT', 'priority must be an integer in [0, 255]');
        }
        if (b.status !== 'SCHEDULED')
          refuse('INVALID_BUILD_STATE', `priority can change only while SCHEDULED (${b.status})`);
      },
    },
  );

  setHandler(cancelSignal, (req) => {
    if (isEnded(b.status)) return;
    note('CANCEL_REQUESTED', `canceled by ${req.canceledBy ?? 'unknown'}${req.reason ? `: ${req.reason}` : ''}`);
    if (req.canceledBy !== undefined) b.canceledBy = req.canceledBy;
    end('CANCELED', {}, req.reason);
  });

  setHandler(
    staleReportUpdate,
    async ({ report }) => {
      note('STALE_REPORT_REFUSED', `late ${report} from an expired lease refused`);
      await persisted(touch());
    },
    {
      validator: ({ leaseKey }) => {
        if (!(st.pastLeaseKeys ?? []).includes(leaseKey)) refuse('LEASE_EXPIRED', 'not a lease key of this build');
      },
    },
  );

  setHandler(noteSignal, (req) => {
    note(req.kind, req.message);
    touch();
  });

  // ---- main loop ----

  /**
   * A child build (of a change verification) tells its parent about every persisted transition,
   * so the parent can post "taken" / "rescheduled" messages. Builds without a parent send nothing,
   * so histories of builds started before this existed replay unchanged.
   */
  const notifyParent = async (): Promise<void> => {
    const parent = workflowInfo().parent;
    if (parent === undefined) return;
    const progress: BuildProgress = {
      buildId: b.id,
      status: b.status,
      leaseHolder: b.leaseHolder,
      leaseGeneration: b.leaseGeneration,
      leaseResets: b.leaseResets,
      url: b.url,
      version: b.version,
    };
    await getExternalWorkflowHandle(parent.workflowId)
      .signal(buildProgressSignal, progress)
      .catch((e: unknown) => log.warn('could not notify the parent workflow', { buildId: b.id, error: String(e) }));
  };

  /** The keys this build answers to, for storage to check reports against (see `BuildLeaseKeys`). */
  const leaseKeys = (): BuildLeaseKeys | undefined => {
    if (!clockVersions) return undefined;
    const known = [st.leaseKey, st.leaseKeyAtEnd, st.endedByLeaseKey, ...(st.pastLeaseKeys ?? [])];
    return {
      known: [...new Set(known.filter((k): k is string => k !== undefined))],
      ...(st.endedByLeaseKey !== undefined ? { endedBy: st.endedByLeaseKey } : {}),
    };
  };

  /** Storage refused the build for good: it ends INFRA_FAILURE (see `storeBuild`). */
  const failUnstorable = (summary: string): void => {
    if (isEnded(b.status)) touch();
    else end('INFRA_FAILURE', {}, summary);
  };

  const persist = async (): Promise<void> => {
    const v = b.version;
    if (!(await storeBuild(b, leaseKeys(), failUnstorable))) return;
    st.persistedVersion = Math.max(st.persistedVersion, v);
    upsertSearchAttributes([
      { key: KilnStatus, value: b.status },
      { key: KilnLeaseHolder, value: b.leaseHolder ?? null },
      { key: KilnLeaseExpiresAt, value: b.leaseExpiration ? new Date(b.leaseExpiration) : null },
      ...(lean
        ? [{ key: KilnLastHeartbeatAt, value: st.lastContactMs === undefined ? null : new Date(st.lastContactMs) }]
        : []),
    ]);
    await notifyParent();
  };

  /** Acts on whichever deadline has passed: lease expiry, scheduling or execution timeout. */
  const fireDeadlines = (): void => {
    const now = Date.now();
    if (isEnded(b.status)) return;
    if (st.leaseKey !== undefined && leaseExpiredNow()) {
      const holder = b.leaseHolder ?? 'unknown';
      if (b.leaseResets >= timeouts.maxLeaseResets) {
        log.info('lease expired, no resets left', { buildId: b.id, holder });
        end('INFRA_FAILURE', { leaseExpired: true }, `lease of ${holder} expired ${b.leaseResets + 1} time(s)`);
      } else {
        b.leaseResets += 1;
        b.leaseGeneration += 1;
        retireKey();
        st.leaseRequestId = undefined;
        b.leaseExpiration = undefined;
        b.leaseHolder = undefined;
        b.status = 'SCHEDULED';
        b.startTime = undefined;
        st.lastContactMs = undefined;
        st.scheduledAtMs = now;
        note(
          'LEASE_EXPIRED',
          `lease of ${holder} expired; rescheduled (reset ${b.leaseResets} of ${timeouts.maxLeaseResets})`,
        );
        touch();
      }
      showDetails();
      return;
    }
    if (b.status === 'SCHEDULED' && now >= st.scheduledAtMs + timeouts.schedulingTimeoutMs) {
      end('INFRA_FAILURE', { timeout: true, resourceExhaustion: true }, 'not started within the scheduling timeout');
      return;
    }
    if (b.status === 'STARTED' && b.startTime && now >= Date.parse(b.startTime) + timeouts.executionTimeoutMs) {
      end('INFRA_FAILURE', { timeout: true }, 'execution timeout');
    }
  };

  const nextDeadlineMs = (): number => {
    const ds: number[] = [];
    if (b.leaseExpiration !== undefined) ds.push(Date.parse(b.leaseExpiration));
    if (b.status === 'SCHEDULED') ds.push(st.scheduledAtMs + timeouts.schedulingTimeoutMs);
    if (b.status === 'STARTED' && b.startTime) ds.push(Date.parse(b.startTime) + timeouts.executionTimeoutMs);
    return ds.length > 0 ? Math.min(...ds) : Date.now() + 24 * 3600_000;
  };

  const historyIsLong = (): boolean => {
    const info = workflowInfo();
    return info.continueAsNewSuggested || info.historyLength >= maxHistoryEvents;
  };

  /** The one deadline timer of the lean loop: re-armed only when a nearer deadline appears. */
  let timer: { at: number; scope: CancellationScope } | undefined;
  let timerFired = false;
  const armTimer = (at: number): void => {
    if (timer !== undefined && timer.at <= at) return;
    timer?.scope.cancel();
    const t = { at, scope: new CancellationScope() };
    timer = t;
    t.scope
      .run(() => sleep(Math.max(1, at - Date.now())))
      .then(
        () => {
          if (timer === t) {
            timer = undefined;
            timerFired = true;
          }
        },
        () => undefined, // canceled: a nearer deadline took its place
      );
  };

  showDetails();
  for (;;) {
    fireDeadlines();
    // A loop, not an if: a message handled while a persist was in flight (a cancel, a report) waits
    // for its own version to be stored, so the loop must not end or sleep before storing it.
    while (b.version > st.persistedVersion) await persist();
    if (isEnded(b.status)) break;

    if (historyIsLong()) {
      const info = workflowInfo();
      await condition(allHandlersFinished);
      if (b.version === st.persistedVersion && !isEnded(b.status)) {
        log.info('continuing as new', { buildId: b.id, historyLength: info.historyLength });
        return await continueAsNew<typeof buildWorkflow>({ ...input, state: st });
      }
      continue;
    }

    // Sleep until a deadline or until something needs persisting. Heartbeats that extend the
    // lease do not wake the loop; the timer re-arms to the new expiry when it fires.
    // A change made while the last persist was in flight is already newer than storage: wake at once.
    const version = b.version;
    if (lean) {
      // A later deadline (a heartbeat moved the lease) keeps the armed timer; when it fires early,
      // fireDeadlines finds nothing due and the next pass arms the timer for the new deadline.
      armTimer(nextDeadlineMs());
      await condition(
        () =>
          timerFired ||
          b.version !== version ||
          b.version > st.persistedVersion ||
          nextDeadlineMs() < (timer?.at ?? 0) ||
          historyIsLong(),
      );
      timerFired = false;
      continue;
    }
    const deadline = nextDeadlineMs();
    await condition(
      () => b.version !== version || b.version > st.persistedVersion || nextDeadlineMs() < deadline || historyIsLong(),
      Math.max(1, deadline - Date.now()),
    );
  }

  await announceBuildEnd(b); // ---- launchpad: the end reaches promotions and notifications (patched) ----
  await condition(allHandlersFinished);
  return b;
}
