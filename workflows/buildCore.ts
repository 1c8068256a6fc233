/**
 * The shell both build workflows share (lease mode in build.ts, Swarming mode in swarmingBuild.ts):
 * the messages every build answers (getBuild, cancel, note), storing the build until storage has
 * caught up, search attributes and current details, and continue-as-new when the history grows
 * long. The rules themselves live in the pure `BuildMachine` (src/domain/buildMachine.ts); this
 * file only connects them to Temporal. Workflow code: deterministic, no I/O of its own.
 */
import {
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  defineQuery,
  defineSignal,
  log,
  patched,
  setCurrentDetails,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { type SearchAttributeUpdatePair } from '@temporalio/common';
import { type Build, builderPath, isEnded } from '../src/domain/build.ts';
import {
  type BuildCoreState,
  type BuildMachine,
  type CancelRequest,
  type NoteRequest,
  type Refusal,
  type Step,
} from '../src/domain/buildMachine.ts';
import { storeBuild } from './storeBuild.ts';

export const cancelSignal = defineSignal<[CancelRequest]>('cancel');
export const noteSignal = defineSignal<[NoteRequest]>('note');
export const getBuildQuery = defineQuery<Build>('getBuild');

/**
 * Patch: versions from the workflow task's clock (`nextBuildVersion`), so a write made by a task the
 * server lost is always superseded by the next durable one; lease keys written with each build.
 */
export const CLOCK_VERSIONS_PATCH = 'kiln-clock-versions';
/**
 * Patch: an ended build's current details say how it ended (the Temporal UI lists every ended build
 * as Completed, FAILURE included: the workflow did its job). Runs from before replay without it.
 */
const ENDED_DETAILS_PATCH = 'kiln-ended-details';
/**
 * Patch: the store that first holds the ended build also announces its end (`recordBuild` with
 * `announce`), one local activity instead of two (issue 18). Runs from before announce after the
 * loop (`announceBuildEnd`).
 */
export const ANNOUNCE_IN_STORE_PATCH = 'kiln-announce-in-store';
/**
 * Patch: one marker for every build-workflow patch above and before it (`LEAN_PATCH` in
 * workflows/build.ts, `PERSIST_CAUGHT_UP_PATCH` in workflows/swarmingBuild.ts, `BUILD_ENDED_PATCH`
 * in workflows/buildEnded.ts). A run that has it takes each of them as applied without calling
 * `patched()` for it: the SDK records every `patched()` as a marker and a `TemporalChangeVersion`
 * upsert, so a lease-mode build has 3 markers and 3 upserts fewer, and a Swarming build 3 (issue 18).
 * Runs started before it call each patch as they did. A patch added later gets its own marker again,
 * until the next patch set folds it in. It also leaves out a search-attribute upsert that would
 * change nothing (the first store's, whose values the start already set): one upsert fewer per build.
 */
export const PATCH_SET_1 = 'kiln-patch-set-1';
/** At-a-glance marks for the ended details. */
const ENDED_MARK: Partial<Record<Build['status'], string>> = {
  SUCCESS: '✅',
  FAILURE: '❌',
  INFRA_FAILURE: '⚠️',
  CANCELED: '⛔',
};

/** Throws a refusal (see `BuildMachine`) as a non-retryable failure with Kiln's error code: for validators. */
export function refuseIf(refusal: Refusal | undefined): void {
  if (refusal !== undefined) {
    throw ApplicationFailure.create({ type: refusal.code, message: refusal.message, nonRetryable: true });
  }
}

/** Continue as new past this many events even before the server suggests it. */
export const DEFAULT_MAX_HISTORY_EVENTS = 2000;

/** What a build workflow tells its shell. */
export interface BuildShellOptions {
  /** Continue as new past this many events (tests lower it). @default DEFAULT_MAX_HISTORY_EVENTS */
  maxHistoryEvents?: number;
  /** Said after the status in the headline of the current details (e.g. which Swarming runs it). */
  modeLabel?: string;
  /** The search attributes to write after each stored version. */
  searchAttributes: () => SearchAttributeUpdatePair[];
  /** Runs after each stored version and its search attributes (e.g. tell a parent workflow). */
  afterPersist?: () => Promise<void>;
  /** The first store of the ended build announces its end (behind `ANNOUNCE_IN_STORE_PATCH`). */
  announceInStore?: boolean;
  /** The run has `PATCH_SET_1`: the shell's patches count as applied without their own markers. */
  patchSet1?: boolean;
}

/** Would upserting `pairs` change a search attribute of this run (absent, null and [] alike)? */
function changesSearchAttributes(pairs: SearchAttributeUpdatePair[]): boolean {
  const current = workflowInfo().typedSearchAttributes;
  return pairs.some(({ key, value }) => !sameSearchAttributeValue(current.get(key), value));
}

function sameSearchAttributeValue(a: unknown, b: unknown): boolean {
  const absent = (x: unknown) => x === undefined || x === null || (Array.isArray(x) && x.length === 0);
  if (absent(a) || absent(b)) return absent(a) && absent(b);
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => x === b[i]);
  return a === b;
}

/** The Temporal side of one build: see the module comment. */
export class BuildShell<S extends BuildCoreState> {
  readonly build: Build;
  private readonly maxHistoryEvents: number;
  /** A store announced the build's end: the workflow must not announce it again. */
  announced = false;

  constructor(
    readonly machine: BuildMachine<S>,
    private readonly o: BuildShellOptions,
  ) {
    this.build = machine.build;
    this.maxHistoryEvents = o.maxHistoryEvents ?? DEFAULT_MAX_HISTORY_EVENTS;
  }

  /** The workflow task's clock. */
  now(): number {
    return Date.now();
  }

  /** Shows the running build in the Temporal UI: a headline, then the mode's `lines`. */
  showDetails(lines: string[]): void {
    const b = this.build;
    const label = this.o.modeLabel !== undefined ? ` ${this.o.modeLabel}` : '';
    const headline = `**${builderPath(b.builder)} #${b.number}** — ${b.status}${label}`;
    setCurrentDetails([headline, ...lines].join('\n\n'));
  }

  /** Call with every step: one that ended the build shows how it ended (patched). */
  settle<T extends Step>(step: T): T {
    if (step.ended && (this.o.patchSet1 === true || patched(ENDED_DETAILS_PATCH))) {
      const b = this.build;
      const summary = b.summaryMarkdown;
      setCurrentDetails(
        `**${builderPath(b.builder)} #${b.number}** — ${ENDED_MARK[b.status] ?? ''} ${b.status}${summary ? `\n\n${summary}` : ''}`,
      );
    }
    return step;
  }

  /** Registers the getBuild query; first, before any other handler. */
  handleGetBuild(): void {
    setHandler(getBuildQuery, () => this.build);
  }

  /** Registers the cancel signal; `ended` runs when the cancel ended the build. */
  handleCancel(ended?: () => void): void {
    setHandler(cancelSignal, (req) => {
      const step = this.settle(this.machine.cancel(req, this.now()));
      if (step.ended) ended?.();
    });
  }

  /** Registers the note signal. */
  handleNotes(): void {
    setHandler(noteSignal, (req) => {
      this.machine.note(req, this.now());
    });
  }

  /** Resolves when storage has seen version `v` (the main loop stores it). */
  persisted(v: number): Promise<void> {
    return condition(() => this.machine.st.persistedVersion >= v);
  }

  /**
   * Stores the build once (`storeBuild`), then its search attributes. When storage refuses the build
   * for good, `failUnstorable` ends it (`ended` runs then) and the caller's next persist stores that.
   */
  async persist(ended?: () => void): Promise<void> {
    const m = this.machine;
    const v = this.build.version;
    const announce =
      this.o.announceInStore === true &&
      !this.announced &&
      isEnded(this.build.status) &&
      (this.o.patchSet1 === true || patched(ANNOUNCE_IN_STORE_PATCH));
    const fail = (summary: string): void => {
      const step = this.settle(m.failUnstorable(summary, this.now()));
      if (step.ended) ended?.();
    };
    const stored = await storeBuild(this.build, m.leaseKeys(), fail, announce);
    if (!stored) return;
    if (announce) this.announced = true;
    m.persistedUpTo(v);
    const attributes = this.o.searchAttributes();
    // With the patch set, an upsert that would change nothing is left out (the first store's: the
    // start already set them): an event and a visibility write fewer.
    if (this.o.patchSet1 !== true || changesSearchAttributes(attributes)) upsertSearchAttributes(attributes);
    await this.o.afterPersist?.();
  }

  /**
   * Stores until storage has caught up: a message handled while a persist was in flight (a cancel,
   * a report) waits for its own version to be stored, so the loop must not end or sleep before.
   */
  async persistUntilCaughtUp(ended?: () => void): Promise<void> {
    while (this.machine.unpersisted) await this.persist(ended);
  }

  /** The history is long enough to continue as new. */
  historyIsLong(): boolean {
    const info = workflowInfo();
    return info.continueAsNewSuggested || info.historyLength >= this.maxHistoryEvents;
  }

  /**
   * When the history is long: waits for the handlers to finish, then continues as new (`next` does,
   * with the state) when everything is stored and the build still runs. Returns true when the
   * caller's loop should go round again instead (something changed meanwhile); false when the
   * history is not long.
   */
  async continueAsNewWhenLong(next: () => Promise<never>): Promise<boolean> {
    if (!this.historyIsLong()) return false;
    const info = workflowInfo();
    await condition(allHandlersFinished);
    if (!this.machine.unpersisted && !isEnded(this.build.status)) {
      log.info('continuing as new', { buildId: this.build.id, historyLength: info.historyLength });
      await next();
    }
    return true;
  }
}

/**
 * One deadline timer, re-armed only when a nearer deadline appears (not on every transition): a
 * later deadline keeps the armed timer, which then fires early and finds nothing due.
 */
export class DeadlineTimer {
  private timer: { at: number; scope: CancellationScope } | undefined;
  /** The armed timer fired; the caller resets it once it has acted. */
  fired = false;

  /** When the armed timer fires (0 when none is armed). */
  get at(): number {
    return this.timer?.at ?? 0;
  }

  /** Arms the timer for `at` unless one is armed for no later. */
  arm(at: number): void {
    if (this.timer !== undefined && this.timer.at <= at) return;
    this.timer?.scope.cancel();
    const t = { at, scope: new CancellationScope() };
    this.timer = t;
    t.scope
      .run(() => sleep(Math.max(1, at - Date.now())))
      .then(
        () => {
          if (this.timer === t) {
            this.timer = undefined;
            this.fired = true;
          }
        },
        () => undefined, // canceled: a nearer deadline took its place
      );
  }
}
