/**
 * The rules of one build, as a pure state machine: what every message does to the build and when
 * its next deadline falls. Both build workflows are thin shells over these classes (they register
 * the handlers, persist, sleep and continue as new); unit tests drive the classes directly.
 *
 * Pure: no Temporal, no Node built-ins, no clock of its own. Every method takes the time (`now`, ms)
 * from its caller, which in a workflow is the workflow task's deterministic clock. Methods that
 * change the build bump its version (`touchBuild`) and return a `Step`; refusals come back as values
 * (`Refusal`) for the shell to throw in its own failure type.
 */
import {
  type Build,
  type BuildEvent,
  type BuildLeaseKeys,
  type BuildOutput,
  type BuildStatus,
  type BuildTimeouts,
  type StatusDetails,
  isEnded,
  noteBuildEvent,
  touchBuild,
} from './build.ts';
import { type ErrorCode } from './errors.ts';

/** A message refused: one of Kiln's fixed error codes and a sentence for the caller. */
export interface Refusal {
  code: ErrorCode;
  message: string;
}

/** What a method did: the build's version after it, whether it changed or ended the build. */
export interface Step {
  /** The build changed (its version went up): storage must catch up. */
  changed: boolean;
  /** This step ended the build (it happens once per build). */
  ended: boolean;
  /** The build's version after the step. */
  version: number;
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

/** What every build's state holds, whichever mode runs it; handed over by continue-as-new. */
export interface BuildCoreState {
  build: Build;
  /** When the build last entered SCHEDULED (ms): the scheduling timeout counts from here. */
  scheduledAtMs: number;
  /** The highest version storage has acknowledged. */
  persistedVersion: number;
}

/** The first state of a build just scheduled. */
export function initialCoreState(build: Build): BuildCoreState {
  return { build, scheduledAtMs: Date.parse(build.createTime), persistedVersion: 0 };
}

/** The shared rules: notes, version bumps, ending, cancel, and Kiln's scheduling/execution timeouts. */
export class BuildMachine<S extends BuildCoreState = BuildCoreState> {
  /**
   * @param st the state the machine changes in place (the workflow hands it to its next run).
   * @param clockVersions versions follow the workflow clock (`nextBuildVersion`); false for runs
   *   started before that patch.
   */
  constructor(
    readonly st: S,
    readonly timeouts: BuildTimeouts,
    readonly clockVersions: boolean,
  ) {}

  /** The build this machine runs. */
  get build(): Build {
    return this.st.build;
  }

  /** True when storage is behind the build. */
  get unpersisted(): boolean {
    return this.st.build.version > this.st.persistedVersion;
  }

  /** Storage acknowledged `version`. */
  persistedUpTo(version: number): void {
    this.st.persistedVersion = Math.max(this.st.persistedVersion, version);
  }

  /** Records a change: bumps the version and update time. */
  protected touch(now: number): Step {
    return { changed: true, ended: false, version: touchBuild(this.st.build, now, this.clockVersions) };
  }

  /** Nothing changed. */
  protected same(): Step {
    return { changed: false, ended: false, version: this.st.build.version };
  }

  protected noteEvent(kind: BuildEvent['kind'], message: string, now: number): void {
    noteBuildEvent(this.st.build, kind, message, now);
  }

  /** A note signal: added to the build's history, which counts as a change. */
  note(req: NoteRequest, now: number): Step {
    this.noteEvent(req.kind, req.message, now);
    return this.touch(now);
  }

  /** Ends the build with `status` (once: a build that has ended stays as it is). */
  end(
    status: BuildStatus,
    details: StatusDetails,
    summary: string | undefined,
    now: number,
    output?: BuildOutput,
  ): Step {
    const b = this.st.build;
    if (isEnded(b.status)) return this.same();
    b.status = status;
    b.statusDetails = details;
    b.endTime = new Date(now).toISOString();
    if (summary !== undefined) b.summaryMarkdown = summary;
    if (output !== undefined) b.output = output;
    this.onEnd();
    this.noteEvent('ENDED', `${status}${summary ? `: ${summary}` : ''}`, now);
    return { ...this.touch(now), ended: true };
  }

  /** What a mode does to its own state as the build ends (before the ENDED note). */
  protected onEnd(): void {}

  /** A cancel: ends the build CANCELED unless it has ended. */
  cancel(req: CancelRequest, now: number): Step {
    const b = this.st.build;
    if (isEnded(b.status)) return this.same();
    this.noteEvent(
      'CANCEL_REQUESTED',
      `canceled by ${req.canceledBy ?? 'unknown'}${req.reason ? `: ${req.reason}` : ''}`,
      now,
    );
    if (req.canceledBy !== undefined) b.canceledBy = req.canceledBy;
    return this.end('CANCELED', {}, req.reason, now);
  }

  /**
   * Storage refused the build for good (after `refuseUnstorableBuild` made it storable): it ends
   * INFRA_FAILURE with `summary`, or, when it had ended, its new content is a change to store.
   */
  failUnstorable(summary: string, now: number): Step {
    if (isEnded(this.st.build.status)) return this.touch(now);
    return this.end('INFRA_FAILURE', {}, summary, now);
  }

  /** The keys storage checks reports against; none for a build that hands out no keys. */
  leaseKeys(): BuildLeaseKeys | undefined {
    return undefined;
  }

  /** Ends the build when its scheduling or execution timeout has passed. */
  fireTimeouts(now: number): Step {
    const b = this.st.build;
    if (b.status === 'SCHEDULED' && now >= this.st.scheduledAtMs + this.timeouts.schedulingTimeoutMs) {
      return this.end(
        'INFRA_FAILURE',
        { timeout: true, resourceExhaustion: true },
        'not started within the scheduling timeout',
        now,
      );
    }
    if (b.status === 'STARTED' && b.startTime && now >= Date.parse(b.startTime) + this.timeouts.executionTimeoutMs) {
      return this.end('INFRA_FAILURE', { timeout: true }, 'execution timeout', now);
    }
    return this.same();
  }

  /** When the scheduling or execution timeout falls, for the build's status now. */
  protected timeoutDeadlines(): number[] {
    const b = this.st.build;
    const ds: number[] = [];
    if (b.status === 'SCHEDULED') ds.push(this.st.scheduledAtMs + this.timeouts.schedulingTimeoutMs);
    if (b.status === 'STARTED' && b.startTime) ds.push(Date.parse(b.startTime) + this.timeouts.executionTimeoutMs);
    return ds;
  }
}

// ---- lease mode ----

/** What a runner asks for when it leases a build. */
export interface LeaseRequest {
  /** Lease length; the builder's default when absent, capped at the builder's maximum. */
  leaseDurationMs?: number;
  /** Who leases (runner or tinderbox name), shown to operators. */
  holder?: string;
  /** A retried lease with the same id returns the same grant instead of BUILD_IS_LEASED. */
  requestId?: string;
  /** Start the build in the same step (lease-next with `start`, issue 18): one workflow task, one write. */
  start?: { url?: string };
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

/** How a leased build may end: `succeed` or `fail`. */
export type CompleteKind = 'succeed' | 'fail';

/** The statuses each way of ending a leased build leads to (a retried report is matched against them). */
export const COMPLETE_OUTCOMES: Readonly<Record<CompleteKind, readonly BuildStatus[]>> = {
  succeed: ['SUCCESS'],
  fail: ['FAILURE', 'INFRA_FAILURE'],
};

/** End a leased build. `succeed` and `fail` share this shape. */
export interface CompleteRequest {
  leaseKey: string;
  output?: BuildOutput;
  summaryMarkdown?: string;
  url?: string;
  /** Only for `fail`: whose fault it was. @default 'BUILD_FAILURE' */
  failureReason?: 'BUILD_FAILURE' | 'INFRA_FAILURE';
}

/** Whether a lease key may write the build's log: refused with the same codes a heartbeat would get. */
export type LogWriterCheck = { ok: true } | { ok: false; code: ErrorCode; message: string };

/**
 * A lease key: `<generation>.<nonce>`. Only the workflow makes keys and only Kiln's server reads
 * them (`leaseKeyGeneration`); runners treat them as opaque capabilities.
 */
export function newLeaseKey(generation: number, nonce: string): string {
  return `${generation}.${nonce}`;
}

/** The lease generation a key was made for (0 for a string that is not a lease key). */
export function leaseKeyGeneration(leaseKey: string): number {
  const n = Number.parseInt(leaseKey.split('.')[0] ?? '', 10);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

/** How many retired lease keys a build remembers, to note late reports from them. */
export const PAST_LEASE_KEYS = 10;

/** Everything a lease-mode build hands to its next run. */
export interface LeaseBuildState extends BuildCoreState {
  leaseKey?: string;
  leaseRequestId?: string;
  /** The lease key whose succeed/fail ended the build, so a retried report gets the same answer. */
  endedByLeaseKey?: string;
  /** The lease key that was current when the build ended (any way), so its holder can finish the log. */
  leaseKeyAtEnd?: string;
  /** Recent lease keys that are no longer current (bounded), so a late report from one can be noted. */
  pastLeaseKeys?: string[];
  /** The lease holder's last sign of life (lease, start, heartbeat) as last put in search attributes. */
  lastContactMs?: number;
}

/** Options of a lease-mode machine, fixed per workflow run (they come from `patched()`). */
export interface LeaseMachineOptions {
  clockVersions: boolean;
  /** Track the holder's last contact and throttle its search-attribute refresh on heartbeats. */
  lean: boolean;
}

/** What a lease expiry did to the build. */
export interface ExpiryStep extends Step {
  /** The lease expired: `reset` returned the build to SCHEDULED, `ended` ended it (no resets left). */
  expired?: 'reset' | 'ended';
  /** Who held the expired lease. */
  holder?: string;
}

/** The answer to a heartbeat, and whether the shell should refresh the lease's search attributes. */
export interface HeartbeatStep {
  leaseExpiration: string;
  refreshVisibility: boolean;
}

/**
 * Heartbeats refresh the lease's search attributes at most this often: each refresh is a history
 * event and a visibility write, and the stuck-build filters look minutes back, not seconds.
 */
export const HEARTBEAT_VISIBILITY_MS = 15_000;

/** Far enough to mean "no deadline": the shell sleeps this long at most. */
const NO_DEADLINE_MS = 24 * 3600_000;

/**
 * The lease-mode rules (pull): one live lease key at a time, its expiry and reset, start,
 * heartbeat, succeed/fail with retried reports answered again, late reports from retired keys.
 * Each `refuse*` is the validator of a message: undefined when the message may run.
 */
export class LeaseMachine extends BuildMachine<LeaseBuildState> {
  readonly lean: boolean;

  constructor(st: LeaseBuildState, timeouts: BuildTimeouts, opts: LeaseMachineOptions) {
    super(st, timeouts, opts.clockVersions);
    this.lean = opts.lean;
  }

  private leaseExpired(now: number): boolean {
    const exp = this.st.build.leaseExpiration;
    return exp !== undefined && Date.parse(exp) <= now;
  }

  /** True when `leaseKey` is the live key: current and not expired. */
  isLive(leaseKey: string, now: number): boolean {
    return this.st.leaseKey !== undefined && leaseKey === this.st.leaseKey && !this.leaseExpired(now);
  }

  private refuseDuration(ms: number | undefined): Refusal | undefined {
    if (ms !== undefined && (!Number.isFinite(ms) || ms <= 0)) {
      return { code: 'INVALID_ARGUMENT', message: 'leaseDuration must be positive' };
    }
    return undefined;
  }

  private duration(ms: number | undefined): number {
    return ms === undefined ? this.timeouts.defaultLeaseMs : Math.min(ms, this.timeouts.maxLeaseMs);
  }

  /** Refuses a key for start/heartbeat/succeed/fail unless it is live on a build that has not ended. */
  private refuseKey(leaseKey: string, now: number): Refusal | undefined {
    const b = this.st.build;
    if (isEnded(b.status)) {
      return {
        code: 'BUILD_IS_COMPLETED',
        message: `build ${b.id} has ended with status ${b.status}; stop working on it`,
      };
    }
    if (!this.isLive(leaseKey, now)) {
      return {
        code: 'LEASE_EXPIRED',
        message: `lease key is not current for build ${b.id}; the lease expired or was reset: stop`,
      };
    }
    return undefined;
  }

  /** Ends the live key's life; it stays known (bounded) so a late report from it can be noted. */
  private retireKey(): void {
    const st = this.st;
    if (st.leaseKey !== undefined)
      st.pastLeaseKeys = [...(st.pastLeaseKeys ?? []), st.leaseKey].slice(-PAST_LEASE_KEYS);
    st.leaseKey = undefined;
  }

  protected override onEnd(): void {
    const b = this.st.build;
    b.leaseExpiration = undefined;
    b.leaseHolder = undefined;
    this.st.leaseKeyAtEnd = this.st.leaseKey;
    this.retireKey();
  }

  /** True when `req` retries the lease that is live (same request id): it gets the same grant. */
  isLeaseRetry(req: LeaseRequest, now: number): boolean {
    return (
      req.requestId !== undefined &&
      req.requestId === this.st.leaseRequestId &&
      this.st.leaseKey !== undefined &&
      !this.leaseExpired(now)
    );
  }

  refuseLease(req: LeaseRequest, now: number): Refusal | undefined {
    const b = this.st.build;
    if (isEnded(b.status))
      return { code: 'BUILD_IS_COMPLETED', message: `build ${b.id} has ended with status ${b.status}` };
    if (this.isLeaseRetry(req, now)) return undefined;
    if (b.status !== 'SCHEDULED' || this.st.leaseKey !== undefined) {
      return { code: 'BUILD_IS_LEASED', message: `build ${b.id} is already leased` };
    }
    return this.refuseDuration(req.leaseDurationMs);
  }

  /**
   * Leases the build: a new generation and key (`nonce` is called once, for the key's random part),
   * or nothing for a retry of the live lease. Call after `refuseLease` said yes.
   */
  lease(req: LeaseRequest, now: number, nonce: () => string): Step {
    if (this.isLeaseRetry(req, now)) return this.same();
    const b = this.st.build;
    const durationMs = this.duration(req.leaseDurationMs);
    b.leaseGeneration += 1;
    this.st.leaseKey = newLeaseKey(b.leaseGeneration, nonce());
    this.st.leaseRequestId = req.requestId;
    b.leaseHolder = req.holder ?? 'unknown';
    b.leaseExpiration = new Date(now + durationMs).toISOString();
    if (this.lean) this.st.lastContactMs = now;
    this.noteEvent(
      'LEASED',
      `leased by ${b.leaseHolder} until ${b.leaseExpiration} (generation ${b.leaseGeneration})`,
      now,
    );
    return this.touch(now);
  }

  /** The live lease as a grant answers it. */
  grant(now: number): { leaseKey: string; leaseExpiration: string } {
    return {
      leaseKey: this.st.leaseKey ?? '',
      leaseExpiration: this.st.build.leaseExpiration ?? new Date(now).toISOString(),
    };
  }

  refuseStart(req: StartRequest, now: number): Refusal | undefined {
    return this.refuseKey(req.leaseKey, now);
  }

  /** Starts the build (a second start changes nothing). */
  start(req: StartRequest, now: number): Step {
    const b = this.st.build;
    if (b.status !== 'SCHEDULED') return this.same();
    b.status = 'STARTED';
    b.startTime = new Date(now).toISOString();
    if (this.lean) this.st.lastContactMs = now;
    if (req.url !== undefined) b.url = req.url;
    this.noteEvent('STARTED', `started by ${b.leaseHolder ?? 'unknown'}`, now);
    return this.touch(now);
  }

  refuseHeartbeat(req: HeartbeatRequest, now: number): Refusal | undefined {
    return this.refuseKey(req.leaseKey, now) ?? this.refuseDuration(req.leaseDurationMs);
  }

  /**
   * Extends the lease. Not a change to store: the lease lives in the workflow and in search
   * attributes, which the shell refreshes when `refreshVisibility` says so.
   */
  heartbeat(req: HeartbeatRequest, now: number): HeartbeatStep {
    const b = this.st.build;
    b.leaseExpiration = new Date(now + this.duration(req.leaseDurationMs)).toISOString();
    const last = this.st.lastContactMs;
    const refreshVisibility = !this.lean || last === undefined || now - last >= HEARTBEAT_VISIBILITY_MS;
    if (refreshVisibility && this.lean) this.st.lastContactMs = now;
    return { leaseExpiration: b.leaseExpiration, refreshVisibility };
  }

  /** True when `req` retries the report that already ended the build the same way: answer it again. */
  isCompleteRetry(kind: CompleteKind, req: CompleteRequest): boolean {
    const b = this.st.build;
    return isEnded(b.status) && this.st.endedByLeaseKey === req.leaseKey && COMPLETE_OUTCOMES[kind].includes(b.status);
  }

  refuseComplete(kind: CompleteKind, req: CompleteRequest, now: number): Refusal | undefined {
    return this.isCompleteRetry(kind, req) ? undefined : this.refuseKey(req.leaseKey, now);
  }

  /** Ends the build as its lease holder reports (a retried report changes nothing). */
  complete(kind: CompleteKind, req: CompleteRequest, now: number): Step {
    const b = this.st.build;
    if (isEnded(b.status)) return this.same();
    if (req.url !== undefined) b.url = req.url;
    const status = kind === 'succeed' ? 'SUCCESS' : req.failureReason === 'INFRA_FAILURE' ? 'INFRA_FAILURE' : 'FAILURE';
    if (b.startTime === undefined) b.startTime = new Date(now).toISOString();
    this.st.endedByLeaseKey = req.leaseKey;
    return this.end(status, {}, req.summaryMarkdown, now, req.output);
  }

  refuseSetPriority(priority: number): Refusal | undefined {
    if (!Number.isInteger(priority) || priority < 0 || priority > 255) {
      return { code: 'INVALID_ARGUMENT', message: 'priority must be an integer in [0, 255]' };
    }
    const b = this.st.build;
    if (b.status !== 'SCHEDULED') {
      return { code: 'INVALID_BUILD_STATE', message: `priority can change only while SCHEDULED (${b.status})` };
    }
    return undefined;
  }

  setPriority(priority: number, now: number): Step {
    const b = this.st.build;
    if (b.priority === priority) return this.same();
    this.noteEvent('PRIORITY_CHANGED', `priority ${b.priority} → ${priority}`, now);
    b.priority = priority;
    return this.touch(now);
  }

  /** Only keys this build retired may have a late report noted; a stranger's key changes nothing. */
  refuseStaleReport(leaseKey: string): Refusal | undefined {
    if ((this.st.pastLeaseKeys ?? []).includes(leaseKey)) return undefined;
    return { code: 'LEASE_EXPIRED', message: 'not a lease key of this build' };
  }

  noteStaleReport(report: string, now: number): Step {
    this.noteEvent('STALE_REPORT_REFUSED', `late ${report} from an expired lease refused`, now);
    return this.touch(now);
  }

  /**
   * May `leaseKey` upload the build's log? Yes for the live key, and once the build has ended, for
   * the key that was current at the end or that ended it (so a canceled runner can upload what it has).
   */
  logWriter(leaseKey: string, now: number): LogWriterCheck {
    const b = this.st.build;
    if (isEnded(b.status)) {
      if (leaseKey === this.st.leaseKeyAtEnd || leaseKey === this.st.endedByLeaseKey) return { ok: true };
      return { ok: false, code: 'BUILD_IS_COMPLETED', message: `build ${b.id} has ended with status ${b.status}` };
    }
    if (!this.isLive(leaseKey, now)) {
      return { ok: false, code: 'LEASE_EXPIRED', message: `lease key is not current for build ${b.id}` };
    }
    return { ok: true };
  }

  /** Every key the build still answers to, for storage (`BuildLeaseKeys`); none before clock versions. */
  override leaseKeys(): BuildLeaseKeys | undefined {
    if (!this.clockVersions) return undefined;
    const st = this.st;
    const known = [st.leaseKey, st.leaseKeyAtEnd, st.endedByLeaseKey, ...(st.pastLeaseKeys ?? [])];
    return {
      known: [...new Set(known.filter((k): k is string => k !== undefined))],
      ...(st.endedByLeaseKey !== undefined ? { endedBy: st.endedByLeaseKey } : {}),
    };
  }

  /**
   * Acts on whichever deadline has passed: an expired lease resets the build to SCHEDULED (or ends
   * it INFRA_FAILURE when no resets are left); otherwise the scheduling and execution timeouts.
   */
  fireDeadlines(now: number): ExpiryStep {
    const b = this.st.build;
    if (isEnded(b.status)) return this.same();
    if (this.st.leaseKey !== undefined && this.leaseExpired(now)) {
      const holder = b.leaseHolder ?? 'unknown';
      if (b.leaseResets >= this.timeouts.maxLeaseResets) {
        const summary = `lease of ${holder} expired ${b.leaseResets + 1} time(s)`;
        return { ...this.end('INFRA_FAILURE', { leaseExpired: true }, summary, now), expired: 'ended', holder };
      }
      b.leaseResets += 1;
      b.leaseGeneration += 1;
      this.retireKey();
      this.st.leaseRequestId = undefined;
      b.leaseExpiration = undefined;
      b.leaseHolder = undefined;
      b.status = 'SCHEDULED';
      b.startTime = undefined;
      this.st.lastContactMs = undefined;
      this.st.scheduledAtMs = now;
      this.noteEvent(
        'LEASE_EXPIRED',
        `lease of ${holder} expired; rescheduled (reset ${b.leaseResets} of ${this.timeouts.maxLeaseResets})`,
        now,
      );
      return { ...this.touch(now), expired: 'reset', holder };
    }
    return this.fireTimeouts(now);
  }

  /** When `fireDeadlines` next has something to do (a day from `now` when nothing is due). */
  nextDeadlineMs(now: number): number {
    const exp = this.st.build.leaseExpiration;
    const ds = [...(exp !== undefined ? [Date.parse(exp)] : []), ...this.timeoutDeadlines()];
    return ds.length > 0 ? Math.min(...ds) : now + NO_DEADLINE_MS;
  }
}
