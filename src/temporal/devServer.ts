/**
 * Runs the Temporal CLI dev server for `kiln dev`: SQLite file in Kiln's data dir (a restart loses
 * nothing), Web UI, Kiln's search attributes registered at start, bound to 127.0.0.1.
 *
 * The server runs in its own process group, so a Ctrl-C in Kiln's terminal reaches Kiln only: Kiln
 * stops its runner, API and worker first (a running build is reported INFRA_FAILURE through the
 * still-running server) and the dev server last. Kiln supervises the server it started: when it
 * dies, it is started again on the same database and the log says so. `temporal.pid` in the data
 * dir records the server's pid and its owner's (the Kiln process), so a later `kiln dev` stops a
 * server left behind by a Kiln that is gone, and refuses to touch one whose Kiln is still running.
 * The server's stderr (its warnings and errors) goes to `temporal-server.log` in the data dir, whole:
 * the server writes it directly, so it survives Kiln and its lines are never dropped; the file is
 * rotated to `temporal-server.log.1` at start once it passes `MAX_LOG_BYTES`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import type pino from 'pino';
import { KILN_SEARCH_ATTRIBUTES } from '../domain/searchAttributes.ts';
import { PACKAGE_ROOT } from '../packageRoot.ts';

/** Where `scripts/setup.sh` installs the Temporal CLI. */
export const TEMPORAL_CLI = join(PACKAGE_ROOT, '.tools/bin/temporal');

/** `--search-attribute` arguments for every Kiln search attribute. */
export function searchAttributeArgs(): string[] {
  return Object.entries(KILN_SEARCH_ATTRIBUTES).flatMap(([k, t]) => ['--search-attribute', `${k}=${t}`]);
}

/** The dev server cannot be started; the message names what is in the way and the fix. */
export class DevServerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DevServerError';
  }
}

/** A running dev server. */
export interface DevServer {
  address: string;
  uiUrl: string;
  /** The SQLite file that holds every workflow. */
  dbFile: string;
  /** Where the server's stderr goes (every start appends to it). */
  logFile: string;
  /** The current server process (it changes when a dead server is restarted). */
  pid(): number | undefined;
  /** Stops supervising, then stops the server's whole process group (SIGTERM, SIGKILL after 10 s). */
  stop(): Promise<void>;
}

/** Options of `startDevServer`. */
export interface DevServerOptions {
  dataDir: string;
  port: number;
  uiPort: number;
  namespace: string;
  logger: pino.Logger;
  /** How long to wait for the server to answer. @default 60000 */
  startTimeoutMs?: number;
}

/** The server's log is rotated at start once it is this big. */
export const MAX_LOG_BYTES = 16 * 1024 * 1024;
/** How much of the log's end error messages quote. */
const LOG_TAIL_BYTES = 4000;

/** The last `bytes` of `file` (empty when it cannot be read). */
function tailOf(file: string, bytes = LOG_TAIL_BYTES): string {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const size = fstatSync(fd).size;
    const len = Math.min(size, bytes);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    return buf.toString('utf8');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Opens the server's log for appending, rotating a big one away first; writes a line saying who starts. */
function openServerLog(logFile: string): number {
  try {
    if (statSync(logFile).size > MAX_LOG_BYTES) renameSync(logFile, `${logFile}.1`);
  } catch {
    // no log yet
  }
  const fd = openSync(logFile, 'a');
  writeSync(fd, `--- ${new Date().toISOString()} kiln (pid ${process.pid}) starts the Temporal dev server ---\n`);
  return fd;
}

/** What `temporal.pid` holds: the server's pid and the pid of the Kiln process that started it. */
interface PidRecord {
  pid: number;
  owner?: number;
}

/**
 * Starts the dev server and waits until it answers. Refuses (DevServerError) when a live Kiln owns
 * this data dir's server or a port is taken; stops a server that a dead Kiln left behind.
 */
export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  if (!existsSync(TEMPORAL_CLI)) {
    throw new DevServerError(
      `Temporal CLI not found at ${TEMPORAL_CLI}: run "bash scripts/setup.sh" (needs Go), or set TEMPORAL_ADDRESS`,
    );
  }
  mkdirSync(opts.dataDir, { recursive: true });
  const pidFile = join(opts.dataDir, 'temporal.pid');
  const dbFile = join(opts.dataDir, 'temporal.db');
  const logFile = join(opts.dataDir, 'temporal-server.log');
  await stopLeftOver(pidFile, opts.logger);
  for (const [key, port] of [
    ['temporal.devServer.port', opts.port],
    ['temporal.devServer.uiPort', opts.uiPort],
  ] as const) {
    if (!(await portFree(port))) {
      throw new DevServerError(
        `port ${port} on 127.0.0.1 is in use (another Temporal server or kiln dev?): stop it, or set ${key} to a free port`,
      );
    }
  }
  const address = `127.0.0.1:${opts.port}`;
  const uiUrl = `http://127.0.0.1:${opts.uiPort}`;
  const args = [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(opts.port),
    '--ui-port',
    String(opts.uiPort),
    '--db-filename',
    dbFile,
    '--namespace',
    opts.namespace,
    '--log-level',
    'warn',
    ...searchAttributeArgs(),
  ];

  let child: ChildProcess | undefined;
  let logStart = 0; // where this start's lines begin in the log
  const stderr = () => {
    const size = existsSync(logFile) ? statSync(logFile).size : 0;
    return tailOf(logFile, Math.max(0, Math.min(LOG_TAIL_BYTES, size - logStart)));
  };
  let stopping = false;
  let restarting: Promise<void> | undefined;

  const spawnServer = async (): Promise<void> => {
    const fd = openServerLog(logFile);
    logStart = fstatSync(fd).size;
    // detached: its own process group, so the terminal's Ctrl-C does not reach it. The server
    // writes its stderr straight into the log file (the child keeps its own copy of the fd).
    let c: ChildProcess;
    try {
      c = spawn(TEMPORAL_CLI, args, { stdio: ['ignore', 'ignore', fd], detached: true });
    } finally {
      closeSync(fd);
    }
    child = c;
    let up = false;
    c.once('exit', (code, signal) => {
      // A server that dies before it answered is the caller's failure to handle (start, or the
      // restart loop), not a second restart in parallel.
      if (stopping || child !== c || !up) return;
      opts.logger.error(
        { code, signal, db: dbFile, log: logFile, stderr: stderr().trim().slice(-1000) || undefined },
        `Temporal dev server exited unexpectedly; restarting it on the same database (${dbFile})`,
      );
      restarting = restart();
    });
    if (c.pid !== undefined) writeFileSync(pidFile, JSON.stringify({ pid: c.pid, owner: process.pid }));
    await waitUntilUp(address, c, stderr, logFile, opts.startTimeoutMs ?? 60_000);
    up = true;
    // Died between its answer and now: the exit handler saw `up` false.
    if (c.exitCode !== null || c.signalCode !== null) {
      throw new DevServerError(`Temporal dev server exited right after it started (whole log: ${logFile})`);
    }
  };

  const restart = async (): Promise<void> => {
    for (let attempt = 1; !stopping; attempt++) {
      await sleep(Math.min(30_000, 500 * 2 ** Math.min(attempt - 1, 6)));
      if (stopping) return;
      try {
        await spawnServer();
        opts.logger.warn({ address, attempt, pid: child?.pid }, 'Temporal dev server restarted');
        return;
      } catch (e) {
        opts.logger.error({ err: (e as Error).message, attempt }, 'Temporal dev server did not restart; trying again');
        killGroup(child, 'SIGKILL');
      }
    }
  };

  // Kiln exiting without stop() (an uncaught error): the server must not outlive it.
  const onExit = () => killGroup(child, 'SIGTERM');
  process.once('exit', onExit);
  try {
    await spawnServer();
  } catch (e) {
    process.removeListener('exit', onExit);
    stopping = true;
    killGroup(child, 'SIGKILL');
    rmSync(pidFile, { force: true });
    throw e;
  }
  opts.logger.info({ address, ui: uiUrl, log: logFile }, 'Temporal dev server up');
  return {
    address,
    uiUrl,
    dbFile,
    logFile,
    pid: () => child?.pid,
    stop: async () => {
      stopping = true;
      await restarting;
      const c = child;
      if (c && c.exitCode === null && c.signalCode === null) {
        const exited = new Promise((r) => c.once('exit', r));
        killGroup(c, 'SIGTERM');
        killGroup(c, 'SIGCONT'); // a stopped (SIGSTOP) server must still see the SIGTERM
        if ((await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)])) === false) {
          killGroup(c, 'SIGKILL');
          await Promise.race([exited, sleep(5_000)]);
        }
      }
      rmSync(pidFile, { force: true });
      process.removeListener('exit', onExit);
    },
  };
}

/** Sends `signal` to the server's process group (it leads its own). */
function killGroup(c: ChildProcess | undefined, signal: NodeJS.Signals): void {
  if (c?.pid === undefined) return;
  try {
    process.kill(-c.pid, signal);
  } catch {
    // already gone
  }
}

async function waitUntilUp(
  address: string,
  c: ChildProcess,
  stderr: () => string,
  logFile: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (c.exitCode !== null || c.signalCode !== null)
      throw new DevServerError(
        `Temporal dev server exited (${c.exitCode ?? c.signalCode}): ${stderr().trim()} (whole log: ${logFile})`,
      );
    try {
      const conn = await Connection.connect({ address, connectTimeout: 1000 });
      try {
        await conn.workflowService.getSystemInfo({});
      } finally {
        await conn.close();
      }
      return;
    } catch (e) {
      if (Date.now() > deadline)
        throw new DevServerError(
          `Temporal dev server did not answer on ${address}: ${(e as Error).message} (its log: ${logFile})`,
        );
      await sleep(250);
    }
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function cmdline(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return undefined;
  }
}

function readPidRecord(pidFile: string): PidRecord | undefined {
  let text: string;
  try {
    text = readFileSync(pidFile, 'utf8').trim();
  } catch {
    return undefined;
  }
  try {
    const r = JSON.parse(text) as Partial<PidRecord> | number;
    if (typeof r === 'number') return { pid: r }; // written by an earlier Kiln: no owner recorded
    if (typeof r.pid === 'number') return { pid: r.pid, owner: typeof r.owner === 'number' ? r.owner : undefined };
  } catch {
    // not JSON
  }
  return undefined;
}

/**
 * A server this data dir's pid file names: refuse when its Kiln still runs, stop it when that Kiln
 * is gone (killed outright, so it could not stop its server).
 */
async function stopLeftOver(pidFile: string, logger: pino.Logger): Promise<void> {
  const r = readPidRecord(pidFile);
  if (!r) {
    rmSync(pidFile, { force: true });
    return;
  }
  const cmd = cmdline(r.pid);
  const serverRuns = alive(r.pid) && (cmd === undefined || (cmd.includes('temporal') && cmd.includes('start-dev')));
  if (!serverRuns) {
    rmSync(pidFile, { force: true });
    return;
  }
  if (r.owner !== undefined && r.owner !== process.pid && alive(r.owner)) {
    throw new DevServerError(
      `the Temporal dev server of ${pidFile.replace(/\/temporal\.pid$/, '')} (pid ${r.pid}) belongs to the kiln dev running as pid ${r.owner}: stop that one first (Ctrl-C in its terminal, or kill ${r.owner}), or give this one another dataDir`,
    );
  }
  logger.warn(
    { pid: r.pid, owner: r.owner },
    'stopping a Temporal dev server that an earlier kiln dev (no longer running) left behind',
  );
  try {
    process.kill(-r.pid, 'SIGTERM');
  } catch {
    try {
      process.kill(r.pid, 'SIGTERM');
    } catch {
      // gone
    }
  }
  const deadline = Date.now() + 10_000;
  while (alive(r.pid) && Date.now() < deadline) await sleep(100);
  if (alive(r.pid)) {
    try {
      process.kill(r.pid, 'SIGKILL');
    } catch {
      // gone
    }
    await sleep(200);
  }
  rmSync(pidFile, { force: true });
}
