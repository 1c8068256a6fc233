/**
 * A build's command as a process tree: spawned detached (its own process group), so stopping the
 * build stops everything it started — `kill(-pgid)` reaches grandchildren a plain `kill` misses.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, openSync, readSync, type Stats, statSync } from 'node:fs';
import { delimiter, resolve as resolvePath } from 'node:path';

/** How the command ended. */
export type CommandExit =
  | { kind: 'exited'; code: number | null; signal: NodeJS.Signals | null }
  /** The command could not be started at all (missing binary, bad cwd, no permission). */
  | { kind: 'spawnFailed'; message: string };

/** A running command. */
export interface RunningCommand {
  readonly pid: number | undefined;
  /** Resolves once the command has ended and its output is drained. */
  readonly exited: Promise<CommandExit>;
  /** SIGTERM to the whole group, SIGKILL after `killTimeoutMs` if anything is left. */
  stop(killTimeoutMs: number): Promise<void>;
}

/** True while any process of group `pgid` exists. */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // Already gone.
  }
}

/** Where a command runs and where its output goes. */
export interface RunCommandOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** stdout and stderr bytes as they come, interleaved (the build log). */
  onOutput: (chunk: Buffer) => void;
  /** Only stdout, when the caller also needs it apart (e.g. to parse `git rev-parse`). */
  onStdout?: (chunk: Buffer) => void;
  /** Only stderr. */
  onStderr?: (chunk: Buffer) => void;
}

/** Starts `argv` in `cwd` with `env`; see `RunCommandOptions` for where the output goes. */
export function runCommand(argv: string[], opts: RunCommandOptions): RunningCommand {
  const [file, ...args] = argv;
  let child: ChildProcess;
  try {
    child = spawn(file ?? '', args, {
      cwd: opts.cwd,
      env: opts.env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    return {
      pid: undefined,
      exited: Promise.resolve({ kind: 'spawnFailed', message: (e as Error).message }),
      stop: async () => {},
    };
  }
  child.stdout?.on('data', (b: Buffer) => {
    opts.onOutput(b);
    opts.onStdout?.(b);
  });
  child.stderr?.on('data', (b: Buffer) => {
    opts.onOutput(b);
    opts.onStderr?.(b);
  });
  const exited = new Promise<CommandExit>((resolve) => {
    child.once('error', (e) => {
      // 'error' without a pid: the command never started.
      if (child.pid === undefined) resolve({ kind: 'spawnFailed', message: e.message });
    });
    child.once('close', (code, signal) => resolve({ kind: 'exited', code, signal }));
  });
  const pgid = child.pid;
  return {
    pid: pgid,
    exited,
    stop: async (killTimeoutMs) => {
      if (pgid === undefined) return;
      signalGroup(pgid, 'SIGTERM');
      const deadline = Date.now() + killTimeoutMs;
      while (groupAlive(pgid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      if (groupAlive(pgid)) signalGroup(pgid, 'SIGKILL');
    },
  };
}

/**
 * Why `file` could not be started in `cwd`, in words a user can act on: the command, the folder,
 * and what is wrong (missing, not executable, a directory, a missing `#!` interpreter, not on PATH).
 * `spawnError` is Node's own message (e.g. `spawn ./build.sh ENOENT`), kept at the end.
 */
export function explainSpawnFailure(file: string, cwd: string, env: NodeJS.ProcessEnv, spawnError: string): string {
  const head = `cannot start ${file} in ${cwd}`;
  if (!existsSync(cwd)) return `${head}: the folder does not exist (${spawnError})`;
  if (file.includes('/')) {
    const path = resolvePath(cwd, file);
    const st = statOrUndefined(path);
    if (!st) {
      return `${head}: ${path} does not exist (a relative command resolves against the build's working directory) (${spawnError})`;
    }
    return `${head}: ${describeExecutable(path, st)} (${spawnError})`;
  }
  const dirs = (env.PATH ?? '').split(delimiter).filter(Boolean);
  const found = dirs.map((d) => resolvePath(cwd, d, file)).find((p) => statOrUndefined(p));
  if (!found) {
    return `${head}: ${file} is not on PATH (${dirs.join(delimiter) || 'PATH is empty'}); use ./${file} for a file in the working directory (${spawnError})`;
  }
  const st = statOrUndefined(found);
  return `${head}: found ${found}, but ${st ? describeExecutable(found, st) : 'cannot read it'} (${spawnError})`;
}

function statOrUndefined(p: string): Stats | undefined {
  try {
    return statSync(p);
  } catch {
    return undefined;
  }
}

function describeExecutable(path: string, st: Stats): string {
  if (st.isDirectory()) return `${path} is a directory`;
  try {
    accessSync(path, constants.X_OK);
  } catch {
    return `${path} is not executable (chmod +x it, or run it through its interpreter, e.g. ["sh", "${path}"])`;
  }
  let first = '';
  try {
    const fd = openSync(path, 'r');
    const buf = Buffer.alloc(256);
    const n = readSync(fd, buf, 0, buf.length, 0);
    closeSync(fd);
    first = buf.subarray(0, n).toString('latin1').split('\n')[0] ?? '';
  } catch {
    return `${path} cannot be read`;
  }
  if (first.startsWith('#!')) {
    const interpreter = first.slice(2).trim().split(/\s+/)[0] ?? '';
    if (interpreter && !existsSync(interpreter))
      return `its interpreter ${interpreter} (from "${first.trim()}") does not exist`;
    if (first.includes('\r')) return `its first line "${first.trim()}" ends in CR (a file with Windows line endings)`;
  }
  return `${path} exists and is executable, but the system refused to run it`;
}
