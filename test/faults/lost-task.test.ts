/**
 * Lost workflow tasks. A build's storage write is a local activity: it runs inside a workflow task,
 * before that task is durable. When the Temporal server dies between the write and the task's
 * completion, storage holds a state change the workflow never made. The rule: storage may lag the
 * workflow, never lead it in a way that sticks.
 *
 * Here a hook around the worker's storage SIGKILLs the Temporal dev server right after a lease,
 * start, end or reset write, over many lease cycles, and restarts it on the same database. A test
 * runner peeks, leases, starts, heartbeats and succeeds builds meanwhile, sometimes abandoning a
 * lease whose answer it lost. Afterwards every build has ended SUCCESS exactly once, storage holds
 * exactly what its workflow returned, no build was invisible to peek for longer than its lease while
 * its workflow could lease it, and no build was leased twice at once.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { BuildService } from '../../src/builds/service.ts';
import { parseConfig, Registry } from '../../src/config/load.ts';
import { type Build, isEnded } from '../../src/domain/build.ts';
import { buildWorkflowId } from '../../src/domain/buildId.ts';
import { KilnError } from '../../src/domain/errors.ts';
import { openStorage } from '../../src/storage/open.ts';
import { type Storage } from '../../src/storage/storage.ts';
import { getBuildQuery } from '../../workflows/build.ts';
import { createKilnWorker, workflowBundle } from '../../workers/worker.ts';
import { type Child, freePort, spawnDevServer } from '../support/processes.ts';
import { testLogger } from '../support/temporal.ts';

/** At least this many builds, and more until the server has been killed `KILLS` times. */
const BUILDS = Number(process.env.KILN_LOST_TASK_BUILDS ?? '16');
const CONCURRENCY = 4;
const KILLS = Number(process.env.KILN_LOST_TASK_KILLS ?? '10');
const LEASE_MS = 3000;
/** Peek may miss a leasable build for its stored lease, plus this much for restarts and a loaded machine. */
const INVISIBLE_SLACK_MS = 20_000;
const builder = { project: 'lost', bucket: 'ci', builder: 'work' };

const CONFIG = `
projects:
  - name: lost
    buckets:
      - name: ci
        builders:
          - name: work
            leaseDurationSecs: 3
            maxLeaseResets: 100
`;

/** Which kind of write the next kill follows. */
type WriteKind = 'lease' | 'start' | 'end' | 'reset';

function kindOf(b: Build): WriteKind | undefined {
  if (isEnded(b.status)) return 'end';
  if (b.status === 'STARTED') return 'start';
  if (b.leaseExpiration !== undefined) return 'lease';
  return b.leaseResets > 0 ? 'reset' : undefined;
}

/** An error with its causes, for failure messages. */
function describeError(e: unknown): string {
  const parts: string[] = [];
  for (
    let x = e as { message?: string; code?: unknown; details?: unknown; cause?: unknown } | undefined;
    x;
    x = x.cause as typeof x
  ) {
    parts.push(`${String(x.message ?? x)}${x.code !== undefined ? ` [${String(x.code)}]` : ''}`);
    if (parts.length > 5) break;
  }
  return parts.join(' ← ');
}

/** True for errors that mean "Temporal (or the worker) is not there right now": retry. */
function isOutage(e: unknown): boolean {
  return !(e instanceof KilnError) || e.code === 'UNAVAILABLE' || e.code === 'INTERNAL';
}

describe('fault suite: the Temporal server dies between a storage write and its workflow task', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-lost-task-'));
  const taskQueue = `kiln-lost-task-${process.pid}`;
  let port: number;
  let temporal: Child;
  let storage: Storage;
  let connection: Connection;
  let nativeConnection: NativeConnection;
  let worker: Worker;
  let workerRun: Promise<void>;
  let service: BuildService;
  let client: Client;

  /** The kill the hook is armed with, if any. */
  let armed: WriteKind | undefined;
  let restarting: Promise<void> | undefined;
  const killed: { kind: WriteKind; build: Build }[] = [];

  const restartTemporal = async (): Promise<void> => {
    await sleep(500 + Math.random() * 1500);
    temporal = await spawnDevServer(port, join(dir, 'temporal.db'));
  };

  /** The worker's storage: after a matching write, the Temporal server dies before the task completes. */
  const hooked = (real: Storage): Storage =>
    new Proxy(real, {
      get(target, prop, receiver) {
        if (prop === 'recordBuild') {
          return async (...args: Parameters<Storage['recordBuild']>) => {
            await target.recordBuild(...args);
            const b = args[0];
            if (armed !== undefined && kindOf(b) === armed && restarting === undefined) {
              armed = undefined;
              killed.push({ kind: kindOf(b) ?? 'lease', build: b });
              await temporal.kill('SIGKILL');
              restarting = restartTemporal().finally(() => (restarting = undefined));
            }
          };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });

  before(async () => {
    port = await freePort();
    temporal = await spawnDevServer(port, join(dir, 'temporal.db'));
    storage = await openStorage({ kind: 'embedded' });
    const registry = new Registry(parseConfig(CONFIG, 'lost-task.yaml', { LOG_LEVEL: 'silent' }));
    connection = await Connection.connect({ address: `127.0.0.1:${port}` });
    client = new Client({ connection });
    service = new BuildService({ client, storage, registry, taskQueue, logger: testLogger });
    nativeConnection = await NativeConnection.connect({ address: `127.0.0.1:${port}` });
    worker = await createKilnWorker({
      connection: nativeConnection,
      namespace: 'default',
      taskQueue,
      deps: { storage: hooked(storage), logger: testLogger },
    });
    workerRun = worker.run();
  });

  after(async () => {
    armed = undefined;
    await restarting;
    if (worker?.getState() === 'RUNNING') worker.shutdown();
    await workerRun?.catch(() => undefined);
    await nativeConnection?.close();
    await connection?.close();
    await temporal?.kill('SIGKILL');
    await storage?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Retries `fn` through outages (Temporal restarting) for up to 3 minutes. */
  async function through<T>(fn: () => Promise<T>, what: string): Promise<T> {
    const deadline = Date.now() + 180_000;
    for (;;) {
      try {
        return await fn();
      } catch (e) {
        if (!isOutage(e) || Date.now() > deadline) throw new Error(`${what}: ${describeError(e)}`, { cause: e });
        await sleep(200);
      }
    }
  }

  it('ends every build exactly once, keeps none invisible past its lease and leases none twice', async () => {
    const figures = { leases: 0, abandoned: 0, invisibleMaxMs: 0, storageLed: 0 };
    const violations: string[] = [];
    const results = new Map<string, Build>();
    let scheduled = 0;
    const more = (): boolean => scheduled < BUILDS || (killed.length < KILLS && scheduled < BUILDS * 10);
    /** Set on the first violation or when time runs out: every slot stops and the test reports. */
    let stop = false;
    const giveUpAt = Date.now() + 7 * 60_000;
    const violate = async (id: string, v: string): Promise<void> => {
      violations.push(v);
      stop = true;
      // Keep the history for a post-mortem: replay it with Worker.runReplayHistory.
      const file = join(tmpdir(), `kiln-lost-task-${id}.json`);
      const history = await client.workflow
        .getHandle(buildWorkflowId(id))
        .fetchHistory()
        .catch(() => undefined);
      if (history) {
        writeFileSync(file, JSON.stringify(history));
        violations.push(`history of ${id} saved in ${file}`);
      }
    };

    /** The workflow's own view of the build (needs Temporal and the worker). */
    const truth = (id: string): Promise<Build> => client.workflow.getHandle(buildWorkflowId(id)).query(getBuildQuery);

    /** One runner slot: schedules builds and drives each through lease cycles to SUCCESS. */
    const slot = async (): Promise<void> => {
      let current: string | undefined;
      try {
        await drive((id) => (current = id));
      } catch (e) {
        await violate(current ?? '0', `build ${current}: ${describeError(e)}`);
      }
    };

    /** Schedules builds and drives each through lease cycles to SUCCESS. */
    const drive = async (onBuild: (id: string) => void): Promise<void> => {
      while (more() && !stop) {
        scheduled += 1;
        const b = await through(() => service.schedule({ builder }), 'schedule');
        onBuild(b.id);
        let invisibleSince: number | undefined;
        let attempt = 0;
        for (;;) {
          if (stop) return;
          if (Date.now() > giveUpAt) {
            const [t, s] = [await truth(b.id).catch(String), await storage.getBuild(b.id)];
            return violate(
              b.id,
              `build ${b.id} not ended in time; workflow ${JSON.stringify(t)}; storage ${JSON.stringify(s)}`,
            );
          }
          const peeked = await through(() => service.peek({ buckets: ['lost/ci'], limit: 100 }), 'peek').catch(
            () => [] as Build[],
          );
          if (!peeked.some((x) => x.id === b.id)) {
            // Not offered: fine while the workflow holds a lease or has ended; otherwise it must show up in time.
            const t = await truth(b.id).catch(() => undefined);
            if (t && isEnded(t.status)) break;
            if (t && t.status === 'SCHEDULED' && t.leaseExpiration === undefined) {
              invisibleSince ??= Date.now();
              const ms = Date.now() - invisibleSince;
              figures.invisibleMaxMs = Math.max(figures.invisibleMaxMs, ms);
              if (ms > LEASE_MS + INVISIBLE_SLACK_MS) {
                const s = await storage.getBuild(b.id);
                return violate(
                  b.id,
                  `build ${b.id} leasable by its workflow (v${t.version}) but not in peek for ${ms} ms; storage: ${JSON.stringify(s)}`,
                );
              }
            } else invisibleSince = undefined;
            await sleep(200);
            continue;
          }
          invisibleSince = undefined;
          attempt += 1;
          const requestId = `${b.id}-${attempt}`;
          let grant;
          try {
            grant = await service.lease(b.id, { holder: `slot-${attempt}`, requestId, leaseDurationMs: LEASE_MS });
          } catch (e) {
            if (!isOutage(e)) continue; // BUILD_IS_LEASED: our lost lease, or the workflow is about to reset it
            if (Math.random() < 0.5) {
              figures.abandoned += 1; // a runner that gives up: the build must come back through peek
              continue;
            }
            grant = await through(
              () => service.lease(b.id, { holder: `slot-${attempt}`, requestId, leaseDurationMs: LEASE_MS }),
              'lease retry',
            ).catch(() => undefined);
            if (!grant) continue;
          }
          figures.leases += 1;
          const key = grant.leaseKey;
          try {
            await through(() => service.start(b.id, { leaseKey: key }), 'start');
            await through(() => service.heartbeat(b.id, { leaseKey: key, leaseDurationMs: LEASE_MS }), 'heartbeat');
            await through(() => service.succeed(b.id, { leaseKey: key }), 'succeed');
          } catch (e) {
            const code = (e as Error).cause instanceof KilnError ? ((e as Error).cause as KilnError).code : undefined;
            if (code === 'LEASE_EXPIRED') continue; // the lease ran out during an outage: lease again
            if (code !== 'BUILD_IS_COMPLETED') throw e;
          }
        }
        const ended = await through(
          () => client.workflow.getHandle(buildWorkflowId(b.id)).result() as Promise<Build>,
          'result',
        );
        results.set(b.id, ended);
      }
    };

    /** Arms the hook again and again, each time after the last restart finished. */
    let driving = true;
    const chaos = async (): Promise<void> => {
      const kinds: WriteKind[] = ['lease', 'lease', 'start', 'end', 'reset'];
      while (driving && !stop && killed.length < KILLS) {
        await sleep(300 + Math.random() * 1200);
        await restarting;
        const before = killed.length;
        armed = kinds[Math.floor(Math.random() * kinds.length)];
        for (let i = 0; i < 100 && driving && killed.length === before; i++) await sleep(100);
        armed = undefined;
        await restarting;
        const last = killed[killed.length - 1];
        if (killed.length > before && last) {
          // Did storage lead the workflow after this kill? (It should, often: that is the fault.)
          const t = await through(() => truth(last.build.id), 'query after restart').catch(() => undefined);
          const s = await storage.getBuild(last.build.id);
          if (t && s && JSON.stringify(s) !== JSON.stringify(t) && s.version >= t.version) figures.storageLed += 1;
        }
      }
    };

    const chaosRun = chaos();
    try {
      await Promise.all(Array.from({ length: CONCURRENCY }, () => slot()));
    } finally {
      driving = false;
      await chaosRun;
    }

    assert.deepEqual(violations, []);
    assert.equal(results.size, scheduled);
    for (const [id, wf] of results) {
      assert.equal(wf.status, 'SUCCESS', `build ${id}: ${wf.status} ${wf.summaryMarkdown ?? ''}`);
      const stored = await storage.getBuild(id);
      assert.deepEqual(stored, wf, `build ${id}: storage holds what the workflow returned`);
      assert.equal(wf.events.filter((e) => e.kind === 'ENDED').length, 1, `build ${id} ended once`);
      let live = false;
      for (const e of wf.events) {
        if (e.kind === 'LEASED') {
          assert.ok(!live, `build ${id} leased twice without an expiry: ${JSON.stringify(wf.events)}`);
          live = true;
        } else if (e.kind === 'LEASE_EXPIRED' || e.kind === 'ENDED') live = false;
      }
    }
    const summary = {
      builds: scheduled,
      kills: killed.length,
      killedAfter: Object.fromEntries(
        (['lease', 'start', 'end', 'reset'] as const).map((k) => [k, killed.filter((x) => x.kind === k).length]),
      ),
      ...figures,
      lost: scheduled - results.size,
      doubled: [...results.values()].filter((b) => b.events.filter((e) => e.kind === 'ENDED').length > 1).length,
    };
    console.log(`lost-task fault figures: ${JSON.stringify(summary)}`);
    // Every history the faults produced replays on the workflow code without a nondeterminism error.
    for (const id of results.keys()) {
      const history = await client.workflow.getHandle(buildWorkflowId(id)).fetchHistory();
      await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history, `replay-${id}`).catch(
        (e: unknown) => {
          const file = join(tmpdir(), `kiln-lost-task-${id}.json`);
          writeFileSync(file, JSON.stringify(history));
          throw new Error(`build ${id}'s history does not replay (saved in ${file})`, { cause: e });
        },
      );
    }
    assert.ok(killed.length >= Math.min(KILLS, 3), `the hook killed the server ${killed.length} times`);
  });
});
