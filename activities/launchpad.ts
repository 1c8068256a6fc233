/**
 * Activities of the Launchpad features: git polls and the builds they schedule, periodic builds,
 * promotion and merge attempts, notification planning and delivery, and the build-end hook that
 * routes a build's end to promotions and notifications. All are idempotent: a build's request ID,
 * a promotion's ancestry check and a delivery's record make a retry change nothing that already
 * happened. Without Launchpad deps (a worker built without them) the build-end hook does nothing
 * and the others fail with LAUNCHPAD_NOT_CONFIGURED.
 */
import { Context } from '@temporalio/activity';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { WorkflowIdConflictPolicy, WorkflowIdReusePolicy } from '@temporalio/common';
import { activityFailure } from './failure.ts';
import { durationMs } from '../src/config/launchpad.ts';
import { type Build, builderPath, isEnded } from '../src/domain/build.ts';
import {
  type BuildEndEvent,
  deliveryKey,
  type KilnNotificationEvent,
  rulesConcernBuilder,
  targetsFor,
} from '../src/domain/launchpad/notification.ts';
import { type PromotionAttempt, type PromotionCandidate } from '../src/domain/launchpad/promotion.ts';
import { type LaunchpadContext, launchpadIds, parseBuilderPath } from '../src/launchpad/context.ts';
import { DeliveryError, Notifier } from '../src/launchpad/notifier.ts';
import { type CommitToBuild, pollBranch, type PollResult, scheduleCommitBuilds } from '../src/launchpad/poller.ts';
import {
  type PromotionOutcome,
  type PromotionRequest,
  runPromotion,
  TransientPromotionError,
} from '../src/launchpad/promoter.ts';
import { notifyEventWorkflow } from '../workflows/notify.ts';
import { candidateSignal, promotionWorkflow } from '../workflows/promotion.ts';

/** Heartbeats every few seconds while `fn` runs, so a killed worker's attempt is retried within the heartbeat timeout. */
async function heartbeating<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const c = Context.current();
  const t = setInterval(() => c.heartbeat(), 3000);
  try {
    return await fn(c.cancellationSignal);
  } finally {
    clearInterval(t);
  }
}

function notConfigured(): never {
  throw activityFailure(
    'LAUNCHPAD_NOT_CONFIGURED',
    'this worker has no schedulers, promotions or notifications configured',
    {
      nonRetryable: true,
    },
  );
}

/** A planned delivery: one event to one target. */
export interface PlannedDelivery {
  key: string;
  target: string;
  event: KilnNotificationEvent;
}

/** Creates the Launchpad activities; `ctx` undefined → the build-end hook is a no-op, the rest refuse. */
export function createLaunchpadActivities(ctx: LaunchpadContext | undefined) {
  const need = (): LaunchpadContext => ctx ?? notConfigured();
  const notifier = ctx ? new Notifier(ctx.store) : undefined;

  /** Starts the notification workflow of one event (once per event: its ID is the event's). */
  const startNotification = async (c: LaunchpadContext, workflowId: string, event: NotifyInput): Promise<void> => {
    try {
      await c.client.workflow.start(notifyEventWorkflow, {
        workflowId,
        taskQueue: c.taskQueue,
        args: [event],
        workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
        staticSummary: `Notify: ${event.kind === 'build' ? `build ${event.buildId}` : `promotion attempt ${event.attempt.id}`}`,
      });
    } catch (e) {
      if (!(e instanceof WorkflowExecutionAlreadyStartedError)) throw e;
    }
  };

  return {
    /**
     * The build-end hook (called by both build workflows after the final persist): starts the
     * build's notification workflow when a rule concerns its builder, and tells each promotion whose
     * required builders are now all green for the build's commit. Idempotent: the notification
     * workflow's ID is the build's, and promotions ignore a commit they already have.
     */
    async announceBuildEnded(input: { build: Build }): Promise<void> {
      if (!ctx) return;
      const b = input.build;
      if (!isEnded(b.status)) return;
      const rules = ctx.config.notifications?.rules ?? [];
      if (rulesConcernBuilder(b.builder, rules)) {
        await startNotification(ctx, launchpadIds.buildNotification(b.id), { kind: 'build', buildId: b.id });
      }
      const commit = b.input.gitilesCommit;
      if (b.status !== 'SUCCESS' || !commit) return;
      const repo = ctx.repoOfCommit(commit);
      if (!repo) return;
      const path = builderPath(b.builder);
      for (const p of ctx.promotions()) {
        if (p.repo !== repo.name || `refs/heads/${p.from}` !== commit.ref || !p.when.includes(path)) continue;
        const g = await ctx.isGreen(repo, commit.id, p.when);
        if (!g.green) continue;
        const candidate: PromotionCandidate = { commit: commit.id, buildId: b.id };
        await ctx.client.workflow.signalWithStart(promotionWorkflow, {
          workflowId: launchpadIds.promotion(ctx.taskQueue, p.name),
          taskQueue: ctx.taskQueue,
          args: [{ promotion: p.name, spec: { repo: p.repo, from: p.from, to: p.to, mode: p.mode } }],
          signal: candidateSignal,
          signalArgs: [candidate],
          staticSummary: `Promotion ${p.name}: ${p.repo} ${p.from} → ${p.to} when ${p.when.join(', ')} pass`,
        });
      }
    },

    /** Fetches an on-commit scheduler's branch and lists new commits (records the poller's health). */
    async pollBranch(input: { scheduler: string; lastSeen?: string }): Promise<PollResult> {
      const c = need();
      return heartbeating(() => pollBranch(c, input.scheduler, input.lastSeen));
    },

    /** Schedules an on-commit scheduler's builders for one commit; the same commit always gets the same builds. */
    async scheduleCommitBuilds(input: { scheduler: string; commit: CommitToBuild }): Promise<string[]> {
      return scheduleCommitBuilds(need(), input.scheduler, input.commit);
    },

    /** Schedules a periodic scheduler's builders for one scheduled run (`runId` makes it idempotent). */
    async schedulePeriodicBuilds(input: { scheduler: string; runId: string }): Promise<string[]> {
      const c = need();
      const s = c.periodicScheduler(input.scheduler);
      if (!s) return [];
      const ids: string[] = [];
      for (const path of s.builders) {
        const builder = parseBuilderPath(path);
        const b = await c.builds.schedule({
          builder,
          requestId: `${input.runId}/${builder.builder}`,
          properties: { ...s.properties, scheduler: s.name },
          tags: [`scheduler:${s.name}`],
          createdBy: `scheduler:${s.name}`,
        });
        ids.push(b.id);
      }
      return ids;
    },

    /** True when every build in `ids` has ended. */
    async buildsEnded(input: { ids: string[] }): Promise<boolean> {
      const c = need();
      for (const id of input.ids) {
        const b = await c.storage.getBuild(id);
        if (b && !isEnded(b.status)) return false;
      }
      return true;
    },

    /** Writes a promotion attempt's state; older versions are ignored, so retries are safe. */
    async recordPromotionAttempt(input: { attempt: PromotionAttempt }): Promise<void> {
      await need().store.recordAttempt(input.attempt);
    },

    /** One promotion or merge attempt's git work: see src/launchpad/promoter.ts. */
    async runPromotion(input: PromotionRequest): Promise<PromotionOutcome> {
      const c = need();
      try {
        return await heartbeating((signal) => runPromotion(c, input, signal));
      } catch (e) {
        if (e instanceof TransientPromotionError)
          throw activityFailure('REMOTE_UNREACHABLE', e.message, { nonRetryable: false });
        throw e;
      }
    },

    /** Every configured promotion and merge (of `repo`): what it would push now, pushing nothing. */
    async dryRunPromotions(input: { repo?: string }): Promise<({ kind: string; name: string } & PromotionOutcome)[]> {
      const c = need();
      const now = new Date().toISOString();
      const out: ({ kind: string; name: string } & PromotionOutcome)[] = [];
      const jobs = [
        ...c.promotions().map((p) => ({ kind: 'promotion' as const, name: p.name, repo: p.repo })),
        ...c.config.merges.map((m) => ({ kind: 'merge' as const, name: m.name, repo: m.repo })),
      ].filter((j) => input.repo === undefined || j.repo === input.repo);
      for (const j of jobs) {
        try {
          out.push({
            kind: j.kind,
            name: j.name,
            ...(await heartbeating((signal) =>
              runPromotion(c, { kind: j.kind, name: j.name, mergeTime: now, dryRun: true }, signal),
            )),
          });
        } catch (e) {
          out.push({
            kind: j.kind,
            name: j.name,
            state: 'FAILED',
            repo: j.repo,
            from: '',
            to: '',
            mode: 'fast-forward',
            builds: [],
            superseded: [],
            supersededBuilds: [],
            reason: (e as Error).message,
            dryRun: true,
          });
        }
      }
      return out;
    },

    /** Starts the notification workflow of a promotion attempt's end (once per attempt). */
    async announcePromotionEnded(input: { attempt: PromotionAttempt }): Promise<void> {
      const c = need();
      const rules = c.config.notifications?.rules ?? [];
      if (rules.length === 0) return;
      await startNotification(c, launchpadIds.promotionNotification(input.attempt.id), {
        kind: 'promotion',
        attempt: input.attempt,
      });
    },

    /** The deliveries an event makes under the notification rules: one per target, each with its key. */
    async planNotifications(input: NotifyInput): Promise<{ deliveries: PlannedDelivery[]; giveUpAfterMs: number }> {
      const c = need();
      const giveUpAfterMs = durationMs(c.config.notifications?.giveUpAfter ?? '24h');
      const rules = c.config.notifications?.rules ?? [];
      let event: KilnNotificationEvent;
      if (input.kind === 'build') {
        const b = await c.storage.getBuild(input.buildId);
        if (!b || !isEnded(b.status)) return { deliveries: [], giveUpAfterMs };
        event = await buildEvent(c, b);
      } else {
        const a = input.attempt;
        const p = a.kind === 'promotion' ? c.promotion(a.name) : undefined;
        const projects = c.bucketsOf(a.repo, p?.when ?? []).map((x) => x.split('/')[0] ?? '');
        event = {
          type: 'promotion',
          attempt: a,
          projects: [...new Set(projects)],
          link: `${c.publicUrl}/api/v1/promotions?repo=${encodeURIComponent(a.repo)}`,
        };
      }
      const deliveries = targetsFor(event, rules).map((target) => ({ key: deliveryKey(event, target), target, event }));
      return { deliveries, giveUpAfterMs };
    },

    /** Sends one planned delivery, at most once per key (see src/launchpad/notifier.ts). */
    async deliverNotification(input: PlannedDelivery): Promise<{ state: string; attempts: number }> {
      const c = need();
      const target = c.config.notifications?.targets.find((t) => t.name === input.target);
      if (!target || !notifier) {
        throw activityFailure('TARGET_NOT_CONFIGURED', `notification target ${input.target} is no longer configured`, {
          nonRetryable: true,
        });
      }
      try {
        return await heartbeating(() => notifier.deliver(input.key, target, input.event));
      } catch (e) {
        if (e instanceof DeliveryError)
          throw activityFailure('DELIVERY_FAILED', e.message, { nonRetryable: e.permanent });
        throw e;
      }
    },

    /** Marks a delivery given up after its last try. */
    async giveUpNotification(input: { key: string; target: string; error: string }): Promise<void> {
      await notifier?.giveUp(input.key, input.target, input.error);
    },
  };
}

/** What a notification workflow is about. */
export type NotifyInput = { kind: 'build'; buildId: string } | { kind: 'promotion'; attempt: PromotionAttempt };

/** A build's end as a notification event: with its commit, blamelist, link and the builder's previous ended status. */
async function buildEvent(c: LaunchpadContext, b: Build): Promise<BuildEndEvent> {
  let previousStatus: Build['status'] | undefined;
  const page = await c.storage.searchBuilds({ builder: b.builder, limit: 50 });
  for (const x of page.builds) {
    if (x.number < b.number && isEnded(x.status)) {
      previousStatus = x.status;
      break;
    }
  }
  const blame = b.input.properties.blamelist;
  return {
    type: 'build',
    buildId: b.id,
    builder: b.builder,
    number: b.number,
    status: b.status,
    ...(previousStatus ? { previousStatus } : {}),
    ...(b.summaryMarkdown ? { summary: b.summaryMarkdown } : {}),
    ...(b.input.gitilesCommit ? { commit: b.input.gitilesCommit } : {}),
    ...(Array.isArray(blame) ? { blamelist: blame.map(String) } : {}),
    link: c.buildLink(b.id),
    ...(b.endTime ? { endTime: b.endTime } : {}),
  };
}

/** The activity type workflows proxy. */
export type LaunchpadActivities = ReturnType<typeof createLaunchpadActivities>;
