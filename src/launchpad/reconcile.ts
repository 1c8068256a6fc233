/**
 * At worker start, makes Temporal match the config: a Temporal Schedule per periodic scheduler and
 * per periodic merge (created, updated, or deleted when gone from the config: none is left behind),
 * a poller workflow per on-commit scheduler (started if not running; removed ones are canceled),
 * and no promotion coordinator for a promotion that is gone. Paused schedules stay paused across
 * restarts. Schedules are told apart per deployment by the task queue in their ID.
 * Also checks, before the worker takes work, that every branch the config names exists.
 */
import {
  type Client,
  ScheduleAlreadyRunning,
  type ScheduleOptions,
  type ScheduleOverlapPolicy,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
} from '@temporalio/client';
import { WorkflowIdConflictPolicy, WorkflowIdReusePolicy } from '@temporalio/common';
import type pino from 'pino';
import { durationMs, type OverlapPolicy, promotionName } from '../config/launchpad.ts';
import { ConfigError } from '../config/load.ts';
import { type KilnConfig } from '../config/schema.ts';
import { promotionTags } from '../domain/launchpad/promotion.ts';
import { KilnStatus, KilnTags } from '../domain/searchAttributes.ts';
import { gitPollerWorkflow } from '../../workflows/gitPoller.ts';
import { periodicBuildWorkflow } from '../../workflows/periodicBuild.ts';
import { promotionAttemptWorkflow } from '../../workflows/promotion.ts';
import { launchpadIds } from './context.ts';
import { credentialEnv, GitError, runGit } from './git.ts';

const OVERLAP: Record<OverlapPolicy, ScheduleOverlapPolicy> = {
  skip: 'SKIP',
  'buffer-one': 'BUFFER_ONE',
  'buffer-all': 'BUFFER_ALL',
  'cancel-other': 'CANCEL_OTHER',
  'terminate-other': 'TERMINATE_OTHER',
  'allow-all': 'ALLOW_ALL',
};

/** What reconciling did, for logs and tests. */
export interface ReconcileReport {
  created: string[];
  updated: string[];
  deleted: string[];
  pollersStarted: string[];
  pollersStopped: string[];
  promotionsStopped: string[];
}

/** The schedules the config asks for, by ID. */
export function desiredSchedules(config: KilnConfig, taskQueue: string): Map<string, ScheduleOptions> {
  const out = new Map<string, ScheduleOptions>();
  const spec = (o: { cron?: string; every?: string; timezone: string }) =>
    o.cron !== undefined
      ? { cronExpressions: [o.cron], timezone: o.timezone }
      : { intervals: [{ every: durationMs(o.every ?? '1h') }] };
  for (const s of config.schedulers) {
    if (s.kind !== 'periodic') continue;
    const scheduleId = launchpadIds.schedule(taskQueue, s.name);
    out.set(scheduleId, {
      scheduleId,
      spec: spec(s),
      action: {
        type: 'startWorkflow',
        workflowType: periodicBuildWorkflow,
        args: [{ scheduler: s.name }],
        taskQueue,
        workflowId: scheduleId,
        staticSummary: `Periodic builds of ${s.name}: ${s.builders.join(', ')}`,
      },
      policies: { overlap: OVERLAP[s.overlap], catchupWindow: durationMs(s.catchupWindow) },
      memo: { kiln: { kind: 'periodic', name: s.name, builders: s.builders } },
    });
  }
  for (const m of config.merges) {
    const scheduleId = launchpadIds.merge(taskQueue, m.name);
    const spec2 = { repo: m.repo, from: m.from, to: m.to, mode: m.mode };
    out.set(scheduleId, {
      scheduleId,
      spec: spec(m),
      action: {
        type: 'startWorkflow',
        workflowType: promotionAttemptWorkflow,
        args: [{ kind: 'merge', name: m.name, spec: spec2 }],
        taskQueue,
        workflowId: scheduleId,
        typedSearchAttributes: [
          { key: KilnStatus, value: 'RUNNING' },
          { key: KilnTags, value: promotionTags({ name: m.name, kind: 'merge', ...spec2 }) },
        ],
        staticSummary: `Periodic merge ${m.name}: ${m.repo} ${m.from} → ${m.to}`,
      },
      policies: { overlap: OVERLAP[m.overlap], catchupWindow: durationMs(m.catchupWindow) },
      memo: { kiln: { kind: 'merge', name: m.name, repo: m.repo, from: m.from, to: m.to } },
    });
  }
  return out;
}

/** See the module comment. */
export async function reconcileLaunchpad(o: {
  client: Client;
  config: KilnConfig;
  taskQueue: string;
  logger: pino.Logger;
}): Promise<ReconcileReport> {
  const { client, config, taskQueue } = o;
  const report: ReconcileReport = {
    created: [],
    updated: [],
    deleted: [],
    pollersStarted: [],
    pollersStopped: [],
    promotionsStopped: [],
  };
  const desired = desiredSchedules(config, taskQueue);
  const prefix = launchpadIds.schedulePrefix(taskQueue);
  const existing: string[] = [];
  for await (const s of client.schedule.list()) if (s.scheduleId.startsWith(prefix)) existing.push(s.scheduleId);
  const update = async (id: string, want: ScheduleOptions) => {
    await client.schedule.getHandle(id).update((prev) => ({
      ...prev,
      spec: want.spec,
      action: want.action,
      policies: { ...prev.policies, ...want.policies },
    }));
    report.updated.push(id);
  };
  for (const [id, want] of desired) {
    if (existing.includes(id)) {
      await update(id, want);
      continue;
    }
    try {
      await client.schedule.create(want);
      report.created.push(id);
    } catch (e) {
      if (!(e instanceof ScheduleAlreadyRunning)) throw e;
      await update(id, want); // another worker created it a moment ago, or visibility lagged
    }
  }
  for (const id of existing) {
    if (desired.has(id)) continue;
    await client.schedule.getHandle(id).delete();
    report.deleted.push(id);
  }
  const pollers = new Set<string>();
  for (const s of config.schedulers) {
    if (s.kind !== 'on-commit') continue;
    const workflowId = launchpadIds.poller(taskQueue, s.name);
    pollers.add(workflowId);
    const running = await client.workflow
      .getHandle(workflowId)
      .describe()
      .then((d) => d.status.name === 'RUNNING')
      .catch((e: unknown) => {
        if (e instanceof WorkflowNotFoundError) return false;
        throw e;
      });
    if (running) continue;
    try {
      await client.workflow.start(gitPollerWorkflow, {
        workflowId,
        taskQueue,
        args: [{ scheduler: s.name }],
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
        workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
        staticSummary: `Git poller ${s.name}: ${s.repo} ${s.branch} → ${s.builders.join(', ')}`,
      });
      report.pollersStarted.push(workflowId);
    } catch (e) {
      if (!(e instanceof WorkflowExecutionAlreadyStartedError)) throw e; // another worker started it just now
    }
  }
  const promotions = new Set(config.promotions.map((p) => launchpadIds.promotion(taskQueue, promotionName(p))));
  const stopGone = async (type: string, keep: Set<string>, into: string[]) => {
    const q = `WorkflowType = '${type}' AND ExecutionStatus = 'Running' AND TaskQueue = '${taskQueue}'`;
    for await (const w of client.workflow.list({ query: q })) {
      if (keep.has(w.workflowId)) continue;
      try {
        await client.workflow.getHandle(w.workflowId).cancel();
        into.push(w.workflowId);
      } catch (e) {
        if (!(e instanceof WorkflowNotFoundError)) throw e;
      }
    }
  };
  await stopGone('gitPollerWorkflow', pollers, report.pollersStopped);
  await stopGone('promotionWorkflow', promotions, report.promotionsStopped);
  o.logger.info(report, 'schedulers, pollers and promotions reconciled with the config');
  return report;
}

/**
 * Checks that every branch the config names exists in its repository (one `git ls-remote` per
 * repository). A missing branch is a ConfigError naming the file and key; an unreachable remote is
 * only logged (its poller will keep trying and show the error).
 */
export async function checkLaunchpadBranches(config: KilnConfig, logger: pino.Logger): Promise<void> {
  const file = config.configFile ?? 'config';
  const uses: { repo: string; branch: string; key: string }[] = [];
  config.schedulers.forEach((s, i) => {
    if (s.kind === 'on-commit') uses.push({ repo: s.repo, branch: s.branch, key: `schedulers[${i}].branch` });
  });
  config.promotions.forEach((p, i) => {
    uses.push({ repo: p.repo, branch: p.from, key: `promotions[${i}].from` });
    uses.push({ repo: p.repo, branch: p.to, key: `promotions[${i}].to` });
  });
  config.merges.forEach((m, i) => {
    uses.push({ repo: m.repo, branch: m.from, key: `merges[${i}].from` });
    uses.push({ repo: m.repo, branch: m.to, key: `merges[${i}].to` });
  });
  const byRepo = new Map<string, typeof uses>();
  for (const u of uses) byRepo.set(u.repo, [...(byRepo.get(u.repo) ?? []), u]);
  await Promise.all(
    [...byRepo].map(async ([name, list]) => {
      const repo = config.repositories.find((r) => r.name === name);
      if (!repo) return;
      let heads: Set<string>;
      try {
        const r = await runGit(['ls-remote', '--heads', '--', repo.url], {
          env: credentialEnv(repo),
          timeoutMs: 60_000,
        });
        heads = new Set(r.stdout.split('\n').map((l) => l.split('\t')[1] ?? ''));
      } catch (e) {
        const why = e instanceof GitError ? `${e.kind}: ${e.message}` : String(e);
        logger.warn({ repo: name, url: repo.url, error: why }, 'cannot check branches: remote not reachable now');
        return;
      }
      for (const u of list) {
        if (!heads.has(`refs/heads/${u.branch}`))
          throw new ConfigError(`${file}: ${u.key}: branch ${u.branch} does not exist in ${name} (${repo.url})`);
      }
    }),
  );
}
