/**
 * `npm run bench`, a long build (issue 18 item 5) on the Java time-skipping test server: a build
 * whose runner heartbeats every 10 s of server time for `hours` (12 by default: 4,320 heartbeats),
 * run as the child of a stand-in parent (test/bench/longBuildParent.ts). Its first lease is left to
 * expire, so the second holder's build carries a past lease key. Checked after the build succeeds:
 * every run's history stays ≤ 4,096 events, the build continued as new, the lease held throughout
 * (no heartbeat refused, no reset beyond the first), a late report from the first lease after the
 * continue-as-new is still recognised and noted, and the parent still hears of the end.
 */
import { fileURLToPath } from 'node:url';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { type Build } from '../../src/domain/build.ts';
import { buildWorkflowId, newBuildId } from '../../src/domain/buildId.ts';
import { KilnError } from '../../src/domain/errors.ts';
import { timeoutsOf } from '../../src/builds/service.ts';
import { scheduledBuild } from '../support/builds.ts';
import { harness } from '../support/temporal.ts';
import { startTimeSkippingEnv } from '../support/verification.ts';
import { longBuildParent } from './longBuildParent.ts';

const CONFIG = `
projects:
  - name: bench
    buckets:
      - name: long
        builders:
          - { name: twelve-hours, leaseDurationSecs: 60, maxLeaseResets: 2, executionTimeoutSecs: 86400 }
`;
const builder = { project: 'bench', bucket: 'long', builder: 'twelve-hours' };
const HISTORY_LIMIT = 4096;

export interface LongBuildFigures {
  hours: number;
  heartbeats: number;
  heartbeatErrors: number;
  runs: number;
  eventsPerRun: number[];
  maxEventsPerRun: number;
  eventsPerHeartbeat: number;
  /** Every check of the module comment held. */
  ok: boolean;
  problems: string[];
  wallSecs: number;
}

/** Runs the phase on its own time-skipping server (needs `KILN_SETUP_EXTRAS=java-test-server`). */
export async function longBuildPhase(opts: {
  hours: number;
  /** Continue-as-new threshold of the build (the workflow's default when absent). */
  maxHistoryEvents?: number;
  log: (line: string) => void;
}): Promise<LongBuildFigures> {
  const t0 = performance.now();
  const env: TestWorkflowEnvironment = await startTimeSkippingEnv();
  const h = await harness(env, CONFIG);
  const problems: string[] = [];
  try {
    const kilnWorker = await h.newWorker();
    const parentQueue = `${h.taskQueue}-parent`;
    const parentWorker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: parentQueue,
      workflowsPath: fileURLToPath(new URL('./longBuildParent.ts', import.meta.url)),
    });
    return await parentWorker.runUntil(
      kilnWorker.runUntil(async () => {
        const now = new Date(await env.currentTimeMs());
        const build: Build = scheduledBuild(newBuildId(now.getTime(), 1), builder, now.toISOString(), {
          tags: [`builder:${builder.builder}`],
        });
        const cfg = h.registry.builder(builder);
        if (!cfg) throw new Error('no builder config');
        const parent = await env.client.workflow.start(longBuildParent, {
          taskQueue: parentQueue,
          workflowId: `long-parent-${build.id}`,
          args: [
            {
              child: { build, timeouts: timeoutsOf(cfg), maxHistoryEvents: opts.maxHistoryEvents },
              workflowId: buildWorkflowId(build.id),
              taskQueue: h.taskQueue,
            },
          ],
        });
        const stored = async (pred: (b: Build) => boolean, what: string): Promise<Build> => {
          for (let i = 0; i < 600; i++) {
            const b = await h.storage.getBuild(build.id);
            if (b && pred(b)) return b;
            await new Promise((r) => setTimeout(r, 100));
          }
          throw new Error(`long build: ${what} never happened`);
        };
        await stored(() => true, 'first store');
        // The API side as in production: heartbeats answered from the lease while more than half of it is
        // left, with the test server's clock (refreshed before each call) as the workflows' clock.
        let serverNow = await env.currentTimeMs();
        const service = h.newService({ answerHeartbeatsFromLeases: true, clock: () => serverNow });

        // The first holder goes silent: its lease expires and the build is offered again.
        const first = await service.lease(build.id, { holder: 'first', leaseDurationMs: 60_000 });
        await env.sleep(70_000);
        await stored((b) => b.leaseResets === 1 && b.status === 'SCHEDULED', 'the first lease expiring');

        serverNow = await env.currentTimeMs();
        const second = await service.lease(build.id, { holder: 'second', leaseDurationMs: 60_000 });
        await service.start(build.id, { leaseKey: second.leaseKey });
        const heartbeats = Math.round((opts.hours * 3600) / 10);
        let heartbeatErrors = 0;
        for (let i = 1; i <= heartbeats; i++) {
          await env.sleep(10_000);
          serverNow = await env.currentTimeMs();
          try {
            await service.heartbeat(build.id, { leaseKey: second.leaseKey, leaseDurationMs: 60_000 });
          } catch (e) {
            heartbeatErrors++;
            if (heartbeatErrors <= 3) problems.push(`heartbeat ${i}: ${(e as Error).message}`);
          }
          if (i % 720 === 0) opts.log(`  long build: ${i / 360} h of ${opts.hours} h heartbeated`);
        }
        if (heartbeatErrors > 0) problems.push(`${heartbeatErrors} heartbeats refused`);

        // A late report from the first lease, after the continue-as-new: refused and noted.
        try {
          await h.service.succeed(build.id, { leaseKey: first.leaseKey });
          problems.push('a report with the expired first lease was accepted');
        } catch (e) {
          if (!(e instanceof KilnError) || e.code !== 'LEASE_EXPIRED') {
            problems.push(`late report: ${e instanceof KilnError ? e.code : String(e)} instead of LEASE_EXPIRED`);
          }
        }
        const done = await h.service.succeed(build.id, { leaseKey: second.leaseKey });
        if (done.status !== 'SUCCESS') problems.push(`ended ${done.status}`);
        if (done.leaseResets !== 1) problems.push(`${done.leaseResets} lease resets, expected 1`);
        if (!done.events.some((e) => e.kind === 'STALE_REPORT_REFUSED')) {
          problems.push('the late report was not noted in the build');
        }
        const { build: childResult, progress } = await parent.result();
        if (childResult.status !== 'SUCCESS') problems.push(`the parent saw the build end ${childResult.status}`);
        const last = progress[progress.length - 1];
        if (last?.status !== 'SUCCESS' || last.leaseGeneration !== done.leaseGeneration) {
          problems.push(`the parent's last notification: ${JSON.stringify(last)}`);
        }

        // Every run, from the last back along continuedExecutionRunId.
        const eventsPerRun: number[] = [];
        let runId: string | undefined = (await env.client.workflow.getHandle(buildWorkflowId(build.id)).describe())
          .runId;
        while (runId) {
          type Started = {
            workflowExecutionStartedEventAttributes?: { continuedExecutionRunId?: string | null } | null;
          };
          const history: { events?: Started[] | null } = await env.client.workflow
            .getHandle(buildWorkflowId(build.id), runId)
            .fetchHistory();
          const events: Started[] = history.events ?? [];
          eventsPerRun.unshift(events.length);
          runId = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
        }
        const maxEventsPerRun = Math.max(...eventsPerRun);
        if (maxEventsPerRun > HISTORY_LIMIT) problems.push(`a run has ${maxEventsPerRun} events`);
        if (eventsPerRun.length < 2 && eventsPerRun.reduce((a, b) => a + b, 0) > HISTORY_LIMIT) {
          problems.push('no continue-as-new');
        }
        const total = eventsPerRun.reduce((a, b) => a + b, 0);
        return {
          hours: opts.hours,
          heartbeats,
          heartbeatErrors,
          runs: eventsPerRun.length,
          eventsPerRun,
          maxEventsPerRun,
          eventsPerHeartbeat: total / Math.max(1, heartbeats),
          ok: problems.length === 0,
          problems,
          wallSecs: (performance.now() - t0) / 1000,
        };
      }),
    );
  } finally {
    await h.storage.close();
    await env.teardown();
  }
}

/** The phase's figures as a Markdown table. */
export function longBuildTable(f: LongBuildFigures): string {
  return [
    '| figure | value |',
    '|---|---|',
    `| hours heartbeated (every 10 s, time-skipping) | ${f.hours} (${f.heartbeats} heartbeats, ${f.heartbeatErrors} refused) |`,
    `| runs (continue-as-new) | ${f.runs} |`,
    `| events per run (max) | ${f.eventsPerRun.join(', ')} (${f.maxEventsPerRun}) |`,
    `| events per heartbeat | ${f.eventsPerHeartbeat.toFixed(2)} |`,
    `| lease, late report and parent carried across runs | ${f.ok ? 'yes' : `NO: ${f.problems.join('; ')}`} |`,
    `| wall time s | ${f.wallSecs.toFixed(0)} |`,
  ].join('\n');
}
