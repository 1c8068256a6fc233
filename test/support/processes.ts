/**
 * Test support: Kiln's processes and the Temporal dev server started as real child processes, as a
 * user or an init system would, so tests can SIGKILL and restart them. Every child is killed when
 * the test process exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
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

/**
 * The first port of the kernel's ephemeral range (where `listen(0)` and outgoing connections take
 * their ports from), or undefined when it cannot be read.
 */
function ephemeralLow(): number | undefined {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) ? low : undefined;
  } catch {
    return undefined;
  }
}

const FIXED_LOW = 20_000;

/** Listens on `port` (0: any) of 127.0.0.1 and closes again; resolves with the port, or undefined when taken. */
function tryPort(port: number): Promise<number | undefined> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? res(undefined) : rej(e)));
    s.listen(port, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => res(typeof a === 'object' && a ? a.port : undefined));
    });
  });
}

/**
 * A free TCP port on 127.0.0.1, below the ephemeral range where the machine allows it. A test that
 * kills a server and starts it again on the same port needs the port to stay free meanwhile: an
 * ephemeral port can be taken in that second by any outgoing connection or by another server's
 * `listen(0)` (a dev server started by a test running beside this one picks its internal ports so).
 */
export async function freePort(): Promise<number> {
  const low = ephemeralLow();
  if (low !== undefined && low > FIXED_LOW + 1000) {
    for (let i = 0; i < 50; i++) {
      const port = await tryPort(FIXED_LOW + Math.floor(Math.random() * (low - FIXED_LOW)));
      if (port !== undefined) return port;
    }
  }
  const port = await tryPort(0);
  if (port === undefined) throw new Error('no free port');
  return port;
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

/**
 * Starts the dev server again on `port` after a kill, trying up to `attempts` times: the killed
 * server's sockets can hold the port for a moment.
 */
export async function restartDevServer(port: number, dbFile: string, attempts = 3): Promise<Child> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await spawnDevServer(port, dbFile);
    } catch (e) {
      if (attempt >= attempts) throw e;
      await sleep(1000);
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
