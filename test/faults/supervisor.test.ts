/**
 * The worker supervisor (workers/supervisor.ts): when the Temporal server dies, the worker is
 * stopped, and a fresh one (empty workflow cache) runs once the server answers again, so no cached
 * workflow carries a task the server lost. A build leased before the outage ends after it; a stop
 * during the outage ends the supervisor without waiting for the server.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { BuildService } from '../../src/builds/service.ts';
import { parseConfig, Registry } from '../../src/config/load.ts';
import { openStorage } from '../../src/storage/open.ts';
import { type Storage } from '../../src/storage/storage.ts';
import { type Child, restartDevServer, spawnDevServerOnFreePort } from '../support/processes.ts';
import { eventually, supervisedWorker, testLogger } from '../support/temporal.ts';

const CONFIG = `
projects:
  - name: sup
    buckets:
      - name: ci
        builders:
          - name: work
`;
const builder = { project: 'sup', bucket: 'ci', builder: 'work' };

describe('worker supervisor: a fresh worker after every Temporal outage', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-supervisor-'));
  const taskQueue = `kiln-supervisor-${process.pid}`;
  let port: number;
  let temporal: Child;
  let storage: Storage;
  let connection: Connection;
  let nativeConnection: NativeConnection;
  let service: BuildService;

  before(async () => {
    ({ port, temporal } = await spawnDevServerOnFreePort(join(dir, 'temporal.db')));
    storage = await openStorage({ kind: 'embedded' });
    const registry = new Registry(parseConfig(CONFIG, 'supervisor.yaml', { LOG_LEVEL: 'silent' }));
    connection = await Connection.connect({ address: `127.0.0.1:${port}` });
    service = new BuildService({
      client: new Client({ connection }),
      storage,
      registry,
      taskQueue,
      logger: testLogger,
    });
    nativeConnection = await NativeConnection.connect({ address: `127.0.0.1:${port}` });
  });

  after(async () => {
    await nativeConnection?.close();
    await connection?.close();
    await temporal?.kill('SIGKILL');
    await storage?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const supervise = () => supervisedWorker({ connection: nativeConnection, port, taskQueue, storage });

  it('replaces the worker across a server restart, and the leased build ends after it', async () => {
    const supervised = await supervise();
    try {
      const b = await service.schedule({ builder });
      const grant = await service.lease(b.id, { holder: 'r', leaseDurationMs: 60_000 });
      assert.equal(supervised.generation, 1);

      await temporal.kill('SIGKILL');
      await sleep(1000);
      temporal = await restartDevServer(port, join(dir, 'temporal.db'));
      await eventually(async () => supervised.generation === 2, 15_000, 'a second worker after the restart');

      await eventually(
        async () => (await service.start(b.id, { leaseKey: grant.leaseKey }).catch(() => undefined)) !== undefined,
        30_000,
        'the build started after the restart',
      );
      const done = await service.succeed(b.id, { leaseKey: grant.leaseKey });
      assert.equal(done.status, 'SUCCESS');
      assert.equal(supervised.generation, 2, 'no restart without an outage');
    } finally {
      supervised.shutdown();
      await supervised.done;
    }
  });

  it('keeps the worker while the server is only slow, and replaces it when the server stays silent', async () => {
    const pid = temporal.proc.pid ?? 0;
    const supervised = await supervisedWorker({
      connection: nativeConnection,
      port,
      taskQueue,
      storage,
      unansweredProbes: 3,
    });
    try {
      const b = await service.schedule({ builder });
      const grant = await service.lease(b.id, { holder: 'r', leaseDurationMs: 120_000 });
      // A server that accepts connections but answers nothing for 3 s (one or two gRPC probes time
      // out): slow, not gone. It lost nothing, so the worker and its cache stay.
      process.kill(pid, 'SIGSTOP');
      await sleep(3000);
      process.kill(pid, 'SIGCONT');
      await service.start(b.id, { leaseKey: grant.leaseKey });
      assert.equal(supervised.generation, 1, 'no restart for a slow server');
      // Silent for three probes in a row (2 s each, one at a time): gone.
      process.kill(pid, 'SIGSTOP');
      try {
        await eventually(async () => supervised.outages === 1, 60_000, 'the silent server seen as gone');
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      await eventually(async () => supervised.generation === 2, 30_000, 'a second worker once the server answers');
      // The build's next task waits on the cut-off worker's sticky queue until that times out (10 s).
      const done = await eventually(
        () => service.succeed(b.id, { leaseKey: grant.leaseKey }).catch(() => undefined),
        60_000,
        'the build ended after the outage',
      );
      assert.equal(done.status, 'SUCCESS');
    } finally {
      supervised.shutdown();
      await supervised.done;
    }
  });

  it('stops at once when told to during an outage', async () => {
    const supervised = await supervise();
    await temporal.kill('SIGKILL');
    try {
      // Wait until the supervisor saw the outage and stopped the first worker.
      await sleep(1500);
      supervised.shutdown();
      await supervised.done; // the server stays down until after this: the stop did not wait for it
      assert.equal(supervised.generation, 1);
    } finally {
      temporal = await restartDevServer(port, join(dir, 'temporal.db'));
    }
  });
});
