/**
 * Lost workflow tasks. A build's storage write is a local activity: it runs inside a workflow task,
 * before that task is durable. When the Temporal server dies between the write and the task's
 * completion, storage holds a state change the workflow never made. The rule: storage may lag the
 * workflow, never lead it in a way that sticks.
 *
 * Here a hook around the worker's storage SIGKILLs the Temporal dev server right after a lease,
 * start, end or reset write, over many lease cycles, and restarts it on the same database, while
 * runner slots drive builds (see leaseCycles.ts). Afterwards every build has ended SUCCESS exactly
 * once, storage holds exactly what its workflow returned, no build was invisible to peek for longer
 * than its lease while its workflow could lease it, no build was leased twice at once, and every
 * history replays.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { BuildRepairer } from '../../src/builds/repair.ts';
import { BuildService } from '../../src/builds/service.ts';
import { parseConfig, Registry } from '../../src/config/load.ts';
import { type Build } from '../../src/domain/build.ts';
import { buildWorkflowId } from '../../src/domain/buildId.ts';
import { openStorage } from '../../src/storage/open.ts';
import { type Storage } from '../../src/storage/storage.ts';
import { getBuildQuery } from '../../workflows/build.ts';
import { replayFailure } from '../../workers/replay.ts';
import { type SupervisedWorker } from '../../workers/supervisor.ts';
import { type Child, restartDevServer, spawnDevServerOnFreePort } from '../support/processes.ts';
import { itLeavesNoStrayErrors } from '../support/strayErrors.ts';
import { supervisedWorker, testLogger } from '../support/temporal.ts';
import {
  checkBuilds,
  describeError,
  faultFigures,
  runLeaseCycles,
  through,
  type WorkflowView,
  type WriteKind,
  writeKind,
} from './leaseCycles.ts';

/** At least this many builds, and more until the server has been killed `KILLS` times. */
const BUILDS = Number(process.env.KILN_LOST_TASK_BUILDS ?? '16');
const KILLS = Number(process.env.KILN_LOST_TASK_KILLS ?? '8');
const LEASE_MS = 3000;
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

describe('fault suite: the Temporal server dies between a storage write and its workflow task', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-lost-task-'));
  const taskQueue = `kiln-lost-task-${process.pid}`;
  let port: number;
  let temporal: Child;
  let storage: Storage;
  let connection: Connection;
  let nativeConnection: NativeConnection;
  let worker: SupervisedWorker;
  let service: BuildService;
  let client: Client;
  let repairer: BuildRepairer;
  let repairs: { stop(): Promise<void> } | undefined;

  /** The kill the hook is armed with, if any. */
  let armed: WriteKind | undefined;
  let restarting: Promise<void> | undefined;
  const killed: { kind: WriteKind; build: Build }[] = [];

  const restartTemporal = async (): Promise<void> => {
    await sleep(500 + Math.random() * 1500);
    temporal = await restartDevServer(port, join(dir, 'temporal.db'));
  };
  /** Restarts that failed (the test fails on them at the end, by name, rather than on a stray rejection). */
  const restartErrors: string[] = [];

  /** The worker's storage: after a matching write, the Temporal server dies before the task completes. */
  const hooked = (real: Storage): Storage =>
    new Proxy(real, {
      get(target, prop, receiver) {
        // Both write paths: a worker with build metrics stores through recordBuildReplacing.
        if (prop === 'recordBuild' || prop === 'recordBuildReplacing') {
          return async (...args: Parameters<Storage['recordBuild']>) => {
            const written = await target[prop](...args);
            const kind = writeKind(args[0]);
            if (armed !== undefined && kind === armed && restarting === undefined) {
              armed = undefined;
              killed.push({ kind, build: args[0] });
              await temporal.kill('SIGKILL');
              restarting = restartTemporal()
                .catch((e: unknown) => void restartErrors.push(describeError(e)))
                .finally(() => (restarting = undefined));
            }
            return written;
          };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });

  before(async () => {
    ({ port, temporal } = await spawnDevServerOnFreePort(join(dir, 'temporal.db')));
    storage = await openStorage({ kind: 'embedded' });
    const registry = new Registry(parseConfig(CONFIG, 'lost-task.yaml', { LOG_LEVEL: 'silent' }));
    connection = await Connection.connect({ address: `127.0.0.1:${port}` });
    client = new Client({ connection });
    // As `kiln api` does, with a quicker sweep: a build stopped on a nondeterminism error goes on from storage.
    repairer = new BuildRepairer({ client, storage, taskQueue, logger: testLogger, overdueSecs: 5, replayFailure });
    repairs = repairer.start(2000);
    service = new BuildService({
      client,
      storage,
      registry,
      taskQueue,
      logger: testLogger,
      onUnanswered: (id) => repairer.noteUnanswered(id),
    });
    nativeConnection = await NativeConnection.connect({ address: `127.0.0.1:${port}` });
    // As in `kiln worker`: a fresh worker (empty workflow cache) after every server outage.
    worker = await supervisedWorker({ connection: nativeConnection, port, taskQueue, storage: hooked(storage) });
  });

  after(async () => {
    armed = undefined;
    await restarting;
    await repairs?.stop();
    worker?.shutdown();
    await worker?.done.catch(() => undefined);
    await nativeConnection?.close();
    await connection?.close();
    await temporal?.kill('SIGKILL');
    await storage?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ends every build exactly once, keeps none invisible past its lease and leases none twice', async () => {
    const handle = (id: string) => client.workflow.getHandle(buildWorkflowId(id));
    const view: WorkflowView = {
      query: (id) => handle(id).query(getBuildQuery),
      closed: async (id) => (await handle(id).describe()).status.name !== 'RUNNING',
      result: (id) => handle(id).result() as Promise<Build>,
      history: (id) => handle(id).fetchHistory(),
    };
    let storageLed = 0;
    let driving = true;

    /** Arms the hook again and again, each time after the last restart finished. */
    const chaos = async (): Promise<void> => {
      const kinds: WriteKind[] = ['lease', 'lease', 'start', 'end', 'reset'];
      while (driving && killed.length < KILLS) {
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
          // Only for a figure: a query that cannot be answered soon must not hold up the next kill.
          const t = await Promise.race([
            through(() => view.query(last.build.id), 'query after restart').catch(() => undefined),
            sleep(15_000).then(() => undefined),
          ]);
          const s = await storage.getBuild(last.build.id);
          if (t && s && JSON.stringify(s) !== JSON.stringify(t) && s.version >= t.version) storageLed += 1;
        }
      }
    };
    const moreUntil = Date.now() + 4 * 60_000;
    const chaosRun = chaos();
    let r;
    try {
      r = await runLeaseCycles({
        calls: {
          schedule: () => service.schedule({ builder }),
          peek: () => service.peek({ buckets: ['lost/ci'], limit: 100 }),
          lease: async (id, q) =>
            (await service.lease(id, { holder: q.holder, requestId: q.requestId, leaseDurationMs: q.leaseMs }))
              .leaseKey,
          start: (id, leaseKey) => service.start(id, { leaseKey }),
          heartbeat: (id, leaseKey, ms) => service.heartbeat(id, { leaseKey, leaseDurationMs: ms }),
          succeed: (id, leaseKey) => service.succeed(id, { leaseKey }),
        },
        view,
        stored: (id) => storage.getBuild(id),
        slots: 4,
        // More builds until the server was killed KILLS times (a kill and its restart take ~12 s, while
        // builds end at up to 1/s), for at most 4 minutes.
        more: (scheduled) => scheduled < BUILDS || (killed.length < KILLS && Date.now() < moreUntil),
        leaseMs: LEASE_MS,
        invisibleSlackMs: 20_000,
        giveUpAt: Date.now() + 7 * 60_000,
        label: 'lost-task',
      });
    } finally {
      driving = false;
      await chaosRun;
    }
    const killedAfter = Object.fromEntries(
      (['lease', 'start', 'end', 'reset'] as const).map((k) => [k, killed.filter((x) => x.kind === k).length]),
    );
    const figures = {
      ...faultFigures(r),
      kills: killed.length,
      killedAfter,
      storageLed,
      workers: worker.generation,
      repaired: repairer.repaired.length,
    };
    console.log(`lost-task fault figures: ${JSON.stringify(figures)}`);
    assert.deepEqual(restartErrors, [], 'every restart of the Temporal server worked');
    const { unreplayable } = await checkBuilds(r, (id) => storage.getBuild(id), view, 'lost-task');
    console.log(`lost-task: ${unreplayable.length} ended builds whose history does not replay`);
    assert.ok(killed.length >= Math.min(KILLS, 3), `the hook killed the server ${killed.length} times`);
    // Each outage replaced the worker (more when a probe was slow under load): no cache outlived one.
    assert.ok(worker.generation > killed.length, `${worker.generation} workers for ${killed.length} kills`);
  });
});

// Last: an error raised by the teardown above (outside any test) fails here, by name, with its stack.
itLeavesNoStrayErrors();
