/**
 * The Swarming-mode build rules (push), on the shared `BuildMachine`: a task result moves the build
 * (task state → build status), Kiln's own endings (cancel, timeouts, a build storage refuses) mark
 * the task for CancelTask, and the sync timer says when to poll the task. Pure like the rest of the
 * domain: the workflow passes the time and does the calls.
 */
import { type BuildTimeouts, isEnded } from '../build.ts';
import { type BuildCoreState, type CancelRequest, type Step, BuildMachine, initialCoreState } from '../buildMachine.ts';
import { buildStatusFromTask, type TaskOutcome } from './status.ts';

/** What the build learns of its task from Swarming (GetResult, or NewTask deduplicated onto a task). */
export interface SwarmingTaskResult extends TaskOutcome {
  taskId: string;
  startedTs?: string;
  exitCode?: number;
  botId?: string;
}

/** The task NewTask created, as the build records it. */
export interface CreatedSwarmingTask {
  taskId: string;
  /** The build's tags for it (`swarmingBuildTags`). */
  buildTags: string[];
  /** The task's page (`swarmingTaskUrl`). */
  url: string;
  /** Which task template rendered it. */
  template: { canary: boolean; revision: string };
}

/** Everything a Swarming-mode build hands to its next run. */
export interface SwarmingBuildState extends BuildCoreState {
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

/** The first state of a Swarming build just scheduled. */
export function initialSwarmingState(build: BuildCoreState['build']): SwarmingBuildState {
  return {
    ...initialCoreState(build),
    createAttempted: false,
    pollRequested: false,
    lastPollMs: Date.parse(build.createTime),
    cancelTask: false,
  };
}

/** Human summary of a final task state. */
export function taskSummary(r: SwarmingTaskResult): string {
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

/** See the module comment. */
export class SwarmingMachine extends BuildMachine<SwarmingBuildState> {
  /**
   * @param syncIntervalMs how long the build goes without polling its task when no notification comes.
   */
  constructor(
    st: SwarmingBuildState,
    timeouts: BuildTimeouts,
    clockVersions: boolean,
    readonly syncIntervalMs: number,
  ) {
    super(st, timeouts, clockVersions);
  }

  /** Kiln itself ended the build: its task has to go too. */
  private byKiln<T extends Step>(step: T): T {
    if (step.ended) this.st.cancelTask = true;
    return step;
  }

  override cancel(req: CancelRequest, now: number): Step {
    return this.byKiln(super.cancel(req, now));
  }

  override failUnstorable(summary: string, now: number): Step {
    return this.byKiln(super.failUnstorable(summary, now));
  }

  /** Kiln's own timers: pending or running too long ends the build (and then the task). */
  fireDeadlines(now: number): Step {
    if (isEnded(this.st.build.status)) return this.same();
    return this.byKiln(this.fireTimeouts(now));
  }

  /** Task creation is about to be tried (once per build). */
  creating(): void {
    this.st.createAttempted = true;
  }

  /** NewTask answered: the build records the task's tags and page. */
  taskCreated(task: CreatedSwarmingTask, now: number): Step {
    const b = this.st.build;
    this.st.taskId = task.taskId;
    this.st.lastPollMs = now;
    b.tags = [...new Set([...b.tags, ...task.buildTags])];
    b.url = task.url;
    const which = task.template.canary ? 'canary' : 'stable';
    this.noteEvent(
      'SWARMING_TASK',
      `Swarming task ${task.taskId} created (${which} template ${task.template.revision})`,
      now,
    );
    return this.touch(now);
  }

  /** A notification for `taskId`: poll at the next turn. False (ignored) for another task's. */
  notified(taskId: string): boolean {
    if (this.st.taskId !== undefined && taskId !== this.st.taskId) return false;
    this.st.pollRequested = true;
    return true;
  }

  /** The task to poll now (a notification came or the sync timer is due), if any. */
  taskToPoll(now: number): string | undefined {
    const { taskId, pollRequested, lastPollMs } = this.st;
    return taskId !== undefined && (pollRequested || now >= lastPollMs + this.syncIntervalMs) ? taskId : undefined;
  }

  /** A poll is about to ask Swarming. */
  polling(now: number): void {
    this.st.pollRequested = false;
    this.st.lastPollMs = now;
  }

  /**
   * Applies a task result to the build: RUNNING starts it, a final state ends it. A result that
   * maps to no status is ignored (`ignored` says why, for the log).
   */
  apply(r: SwarmingTaskResult, now: number): Step & { ignored?: string } {
    const b = this.st.build;
    if (isEnded(b.status)) return this.same();
    let mapped;
    try {
      mapped = buildStatusFromTask(r);
    } catch (e) {
      return { ...this.same(), ignored: e instanceof Error ? e.message : String(e) };
    }
    if (mapped.status === 'SCHEDULED') return this.same();
    if (b.startTime === undefined && (mapped.status === 'STARTED' || r.startedTs !== undefined)) {
      b.startTime = r.startedTs ?? new Date(now).toISOString();
    }
    if (mapped.status === 'STARTED') {
      if (b.status !== 'SCHEDULED') return this.same();
      b.status = 'STARTED';
      this.noteEvent('STARTED', `Swarming task ${r.taskId} is running${r.botId ? ` on bot ${r.botId}` : ''}`, now);
      return this.touch(now);
    }
    return this.end(mapped.status, mapped.statusDetails, taskSummary(r), now);
  }

  /** When the loop must wake: the sync timer, or Kiln's scheduling or execution timeout. */
  nextWakeMs(): number {
    return Math.min(this.st.lastPollMs + this.syncIntervalMs, ...this.timeoutDeadlines());
  }
}
