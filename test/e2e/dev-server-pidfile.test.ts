/**
 * The dev server's pid file: a `kiln dev` never kills a Temporal dev server whose Kiln still runs,
 * and stops one whose Kiln is gone. A stand-in process named like the dev server plays the
 * left-over server; real owners are live or exited processes.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { DevServerError, startDevServer } from '../../src/temporal/devServer.ts';
import { freePort } from '../support/processes.ts';

const logger = pino({ level: 'silent' });

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A process whose command line reads like `temporal server start-dev`, in its own group. */
function fakeServer(): ChildProcess {
  return spawn('bash', ['-c', 'exec -a "temporal server start-dev --fake" sleep 300'], {
    stdio: 'ignore',
    detached: true,
  });
}

describe('the dev server pid file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-devserver-pid-'));
  const children: ChildProcess[] = [];
  after(() => {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses to touch a server whose kiln dev still runs, naming it', async () => {
    const server = fakeServer();
    const owner = spawn('sleep', ['300'], { stdio: 'ignore' });
    children.push(server, owner);
    await sleep(300);
    const data = join(dir, 'live');
    rmSync(data, { recursive: true, force: true });
    mkdirSync(data, { recursive: true });
    writeFileSync(join(data, 'temporal.pid'), JSON.stringify({ pid: server.pid, owner: owner.pid }));
    await assert.rejects(
      startDevServer({ dataDir: data, port: await freePort(), uiPort: await freePort(), namespace: 'default', logger }),
      (e: unknown) =>
        e instanceof DevServerError &&
        e.message.includes(`kiln dev running as pid ${owner.pid}`) &&
        /stop that one first/.test(e.message),
    );
    assert.ok(alive(server.pid ?? 0), 'the live Kiln’s server was killed');
  });

  it('stops a server whose kiln dev is gone, then starts its own', async () => {
    const server = fakeServer();
    children.push(server);
    const gone = spawn('true', { stdio: 'ignore' });
    await new Promise((r) => gone.once('exit', r));
    await sleep(300);
    const data = join(dir, 'dead');
    mkdirSync(data, { recursive: true });
    writeFileSync(join(data, 'temporal.pid'), JSON.stringify({ pid: server.pid, owner: gone.pid }));
    const dev = await startDevServer({
      dataDir: data,
      port: await freePort(),
      uiPort: await freePort(),
      namespace: 'default',
      logger,
    });
    try {
      assert.equal(alive(server.pid ?? 0) && server.exitCode === null && server.signalCode === null, false);
      assert.notEqual(dev.pid(), server.pid);
    } finally {
      await dev.stop();
    }
  });
});
