/**
 * What the HTTP API (and so `kiln schedules` and `kiln promotions`) does with schedulers and
 * promotions: list them with their state (Temporal Schedules, poller health from storage), pause,
 * unpause and trigger them, list promotion attempts, and run a promotion dry run on a worker.
 */
import { randomUUID } from 'node:crypto';
import { type Client, ScheduleNotFoundError, WorkflowNotFoundError } from '@temporalio/client';
import { durationMs, promotionName } from '../config/launchpad.ts';
import { type KilnConfig } from '../config/schema.ts';
import { KilnError } from '../domain/errors.ts';
import { formatDuration } from '../domain/launchpad/duration.ts';
import { type PromotionAttempt } from '../domain/launchpad/promotion.ts';
import { pausePollerSignal, pollNowSignal } from '../../workflows/gitPoller.ts';
import { promotionDryRunWorkflow } from '../../workflows/promotion.ts';
import { launchpadIds } from './context.ts';
import { type LaunchpadStore } from './store.ts';

/** One scheduler (periodic, on-commit) or periodic merge, as `kiln schedules list` shows it. */
export interface ScheduleView {
  name: string;
  kind: 'periodic' | 'on-commit' | 'merge';
  /** `cron 0 3 * * * (UTC)`, `every 6h`, or `poll every 60s`. */
  when: string;
  /** Builders it schedules; for a merge, `repo from → to`. */
  what: string;
  buckets: string[];
  paused: boolean;
  note?: string;
  nextRunTime?: string;
  lastRunTime?: string;
  /** On-commit: the poller's last commit handled, last success and last error. */
  lastCommit?: string;
  lastSuccessTime?: string;
  lastError?: string;
  lastErrorTime?: string;
}

/** Options of `LaunchpadApi`. */
export interface LaunchpadApiOptions {
  client: Client;
  config: KilnConfig;
  store: LaunchpadStore;
  taskQueue: string;
}

/** See the module comment. */
export class LaunchpadApi {
  constructor(private readonly o: LaunchpadApiOptions) {}

  /** Buckets whose roles govern `name` (a scheduler, merge or promotion); undefined when unknown. */
  bucketsOf(name: string): string[] | undefined {
    const c = this.o.config;
    const repoBucket = (repo: string) => c.repositories.find((r) => r.name === repo)?.bucket;
    const ofBuilders = (bs: string[]) => [...new Set(bs.map((b) => b.split('/').slice(0, 2).join('/')))];
    const s = c.schedulers.find((x) => x.name === name);
    if (s) {
      const rb = s.kind === 'on-commit' ? repoBucket(s.repo) : undefined;
      return rb ? [rb] : ofBuilders(s.builders);
    }
    const m = c.merges.find((x) => x.name === name);
    if (m) {
      const rb = repoBucket(m.repo);
      return rb ? [rb] : [];
    }
    const p = c.promotions.find((x) => promotionName(x) === name);
    if (p) {
      const rb = repoBucket(p.repo);
      return rb ? [rb] : ofBuilders(p.when);
    }
    return undefined;
  }

  /** Every scheduler and periodic merge with its state. */
  async listSchedules(): Promise<ScheduleView[]> {
    const c = this.o.config;
    const out: ScheduleView[] = [];
    const describe = async (id: string) => {
      try {
        return await this.o.client.schedule.getHandle(id).describe();
      } catch (e) {
        if (e instanceof ScheduleNotFoundError) return undefined;
        throw e;
      }
    };
    const timing = (x: { cron?: string; every?: string; timezone: string }) =>
      x.cron !== undefined ? `cron ${x.cron} (${x.timezone})` : `every ${formatDuration(durationMs(x.every ?? '0s'))}`;
    const scheduleState = async (id: string) => {
      const d = await describe(id);
      if (!d) return { paused: false, note: 'not created yet (no worker has started with this config)' };
      const last = d.info.recentActions[d.info.recentActions.length - 1];
      return {
        paused: d.state.paused,
        ...(d.state.note ? { note: d.state.note } : {}),
        ...(d.info.nextActionTimes[0] ? { nextRunTime: d.info.nextActionTimes[0].toISOString() } : {}),
        ...(last ? { lastRunTime: last.takenAt.toISOString() } : {}),
      };
    };
    for (const s of c.schedulers) {
      if (s.kind === 'periodic') {
        out.push({
          name: s.name,
          kind: 'periodic',
          when: timing(s),
          what: s.builders.join(', '),
          buckets: this.bucketsOf(s.name) ?? [],
          ...(await scheduleState(launchpadIds.schedule(this.o.taskQueue, s.name))),
        });
      } else {
        const st = await this.o.store.getPollerStatus(launchpadIds.poller(this.o.taskQueue, s.name));
        out.push({
          name: s.name,
          kind: 'on-commit',
          when: `poll ${s.repo} ${s.branch} every ${formatDuration(durationMs(s.pollInterval))}${s.mode === 'newest' ? ` (newest; tree stable ${formatDuration(durationMs(s.treeStableTimer))})` : ''}`,
          what: s.builders.join(', '),
          buckets: this.bucketsOf(s.name) ?? [],
          paused: st?.paused ?? false,
          ...(st?.lastCommit ? { lastCommit: st.lastCommit } : {}),
          ...(st?.lastSuccessTime ? { lastSuccessTime: st.lastSuccessTime } : {}),
          ...(st?.lastError && (!st.lastSuccessTime || (st.lastErrorTime ?? '') > st.lastSuccessTime)
            ? { lastError: st.lastError, ...(st.lastErrorTime ? { lastErrorTime: st.lastErrorTime } : {}) }
            : {}),
        });
      }
    }
    for (const m of c.merges) {
      out.push({
        name: m.name,
        kind: 'merge',
        when: timing(m),
        what: `merge ${m.repo} ${m.from} → ${m.to} (${m.mode})`,
        buckets: this.bucketsOf(m.name) ?? [],
        ...(await scheduleState(launchpadIds.merge(this.o.taskQueue, m.name))),
      });
    }
    return out;
  }

  /** Pauses, unpauses or triggers (runs now) a scheduler or periodic merge. */
  async act(name: string, action: 'pause' | 'unpause' | 'trigger', note?: string): Promise<void> {
    const c = this.o.config;
    const s = c.schedulers.find((x) => x.name === name);
    const m = c.merges.find((x) => x.name === name);
    if (!s && !m) throw new KilnError('NOT_FOUND', `no scheduler or periodic merge named ${name}`);
    if (s?.kind === 'on-commit') {
      const h = this.o.client.workflow.getHandle(launchpadIds.poller(this.o.taskQueue, name));
      try {
        if (action === 'trigger') await h.signal(pollNowSignal, { reason: note ?? 'triggered by an operator' });
        else await h.signal(pausePollerSignal, { paused: action === 'pause' });
      } catch (e) {
        if (e instanceof WorkflowNotFoundError)
          throw new KilnError('UNAVAILABLE', `the poller of ${name} is not running (has a worker started?)`);
        throw e;
      }
      if (action !== 'trigger') {
        const id = launchpadIds.poller(this.o.taskQueue, name);
        const prior = await this.o.store.getPollerStatus(id);
        await this.o.store.recordPollerStatus({
          ...(prior ?? { id, scheduler: name, repo: s.repo, branch: s.branch }),
          paused: action === 'pause',
          updateTime: new Date().toISOString(),
        });
      }
      return;
    }
    const id = s ? launchpadIds.schedule(this.o.taskQueue, name) : launchpadIds.merge(this.o.taskQueue, name);
    const h = this.o.client.schedule.getHandle(id);
    try {
      if (action === 'pause') await h.pause(note ?? 'paused with kiln schedules pause');
      else if (action === 'unpause') await h.unpause(note ?? 'unpaused with kiln schedules unpause');
      else await h.trigger();
    } catch (e) {
      if (e instanceof ScheduleNotFoundError)
        throw new KilnError('UNAVAILABLE', `the schedule of ${name} does not exist yet (has a worker started?)`);
      throw e;
    }
  }

  listPromotions(q: { repo?: string; name?: string; build?: string; limit?: number }): Promise<PromotionAttempt[]> {
    return this.o.store.listAttempts(q);
  }

  /** Runs the dry run on a worker (git and credentials live there) and waits for it. */
  async dryRun(repo?: string) {
    try {
      return await this.o.client.withDeadline(Date.now() + 120_000, () =>
        this.o.client.workflow.execute(promotionDryRunWorkflow, {
          workflowId: `promotion-dry-run/${randomUUID()}`,
          taskQueue: this.o.taskQueue,
          args: [repo === undefined ? {} : { repo }],
          workflowExecutionTimeout: '5m',
        }),
      );
    } catch (e) {
      throw new KilnError('UNAVAILABLE', 'the dry run did not finish (is a worker running?); retry', { cause: e });
    }
  }
}
