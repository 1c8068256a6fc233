/**
 * Test support: Kiln's processes and the Temporal dev server started as real child processes, as a
 * user or an init system would, so tests can SIGKILL and restart them. Every child is killed when
 * the test process exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { searchAttributeArgs } from '../../src/temporal/devServer.ts';
import { TEMPORAL_CLI } from './temporal.ts';

const KILN = resolve(import.meta.dirname, '../../bin/kiln.js');
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => res(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/** A started child process with its recent output, for failure messages. */
export interface Child {
  proc: ChildProcess;
  output(): string;
  /** Sends `signal` and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

function track(proc: ChildProcess): Child {
  children.add(proc);
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-20_000);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  proc.once('exit', () => children.delete(proc));
  return {
    proc,
    output: () => out,
    kill: async (signal = 'SIGKILL') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
}

/** Runs `kiln <args>` (bin/kiln.js) with extra env. */
export function spawnKiln(args: string[], env: Record<string, string> = {}): Child {
  return track(
    spawn(process.execPath, [KILN, ...args], {
      env: { ...process.env, LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}

/** Starts the Temporal CLI dev server with Kiln's search attributes and a SQLite file (kept across restarts). */
export async function spawnDevServer(port: number, dbFile: string): Promise<Child> {
  const child = track(
    spawn(
      TEMPORAL_CLI,
      [
        'server',
        'start-dev',
        '--ip',
        '127.0.0.1',
        '--port',
        String(port),
        '--headless',
        '--db-filename',
        dbFile,
        '--log-level',
        'error',
        ...searchAttributeArgs(),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    ),
  );
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const c = await Connection.connect({ address: `127.0.0.1:${port}`, connectTimeout: 1000 });
      await c.workflowService.getSystemInfo({});
      await c.close();
      return child;
    } catch (e) {
      if (child.proc.exitCode !== null || Date.now() > deadline)
        throw new Error(`dev server did not start: ${(e as Error).message}\n${child.output()}`);
      await sleep(200);
    }
  }
}

/**
 * `spawnDevServer` on a free port. Another dev server starting at the same time (tests run two files at
 * once) can take the port between choosing and binding it, for one of its own services; then a new port
 * is tried, up to 4 times.
 */
export async function spawnDevServerOnFreePort(dbFile: string): Promise<{ port: number; temporal: Child }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return { port, temporal: await spawnDevServer(port, dbFile) };
    } catch (e) {
      if (attempt >= 4 || !/address already in use/.test((e as Error).message)) throw e;
    }
  }
}

/** Waits until `url` answers 200. */
export async function waitForHttp(url: string, child?: Child, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (r.ok) return;
    } catch {
      // not up yet
    }
    if (child && child.proc.exitCode !== null)
      throw new Error(`process exited before ${url} answered:\n${child.output()}`);
    if (Date.now() > deadline) throw new Error(`${url} did not answer in time${child ? `:\n${child.output()}` : ''}`);
    await sleep(200);
  }
}
