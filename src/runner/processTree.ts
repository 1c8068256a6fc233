/**
 * A build's command as a process tree: spawned detached (its own process group), so stopping the
 * build stops everything it started — `kill(-pgid)` reaches grandchildren a plain `kill` misses.
 */
import { type ChildProcess, spawn } from 'node:child_process';

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

/** Starts `argv` in `cwd` with `env`; `onOutput` gets stdout and stderr bytes as they come. */
export function runCommand(
  argv: string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv; onOutput: (chunk: Buffer) => void },
): RunningCommand {
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
  child.stdout?.on('data', opts.onOutput);
  child.stderr?.on('data', opts.onOutput);
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
