/**
 * Test support for runner/log/stuck end-to-end tests: `kiln dev`, `kiln runner` and CLI commands
 * run as real child processes (bin/kiln.js), as a user would; free ports; cleanup on exit.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './processes.ts';

export { freePort };

const KILN = resolve(import.meta.dirname, '../../bin/kiln.js');
const live = new Set<ChildProcess>();
// SIGTERM, not SIGKILL: a kiln dev then stops its Temporal dev server (in its own process group) itself.
process.on('exit', () => {
  for (const c of live) c.kill('SIGTERM');
});

/** A long-running kiln process. */
export interface KilnProcess {
  proc: ChildProcess;
  output(): string;
  /** Resolves when `text` has appeared in its output. */
  waitFor(text: string, timeoutMs?: number): Promise<void>;
  /** Sends `signal`, waits for the exit (SIGKILL after `timeoutMs`). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<void>;
}

/**
 * Starts `kiln <args>` in the background. `ownGroup`: in its own process group, as a shell runs a
 * foreground command, so a test can send the terminal's Ctrl-C to the whole group (`kill(-pid)`).
 */
export function startKiln(
  args: string[],
  env: Record<string, string> = {},
  opts: { ownGroup?: boolean } = {},
): KilnProcess {
  const proc = spawn(process.execPath, [KILN, ...args], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: opts.ownGroup ?? false,
  });
  live.add(proc);
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-200_000);
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  void exited.then(() => live.delete(proc));
  return {
    proc,
    output: () => out,
    waitFor: async (text, timeoutMs = 120_000) => {
      const deadline = Date.now() + timeoutMs;
      while (!out.includes(text)) {
        if (proc.exitCode !== null)
          throw new Error(`kiln ${args[0]} exited (${proc.exitCode}) before "${text}":\n${out.slice(-5000)}`);
        if (Date.now() > deadline)
          throw new Error(`timed out waiting for "${text}" from kiln ${args[0]}:\n${out.slice(-5000)}`);
        await sleep(200);
      }
    },
    stop: async (signal = 'SIGTERM', timeoutMs = 30_000) => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill(signal);
        const t = setTimeout(() => {
          // Too slow to stop (a loaded machine): its Temporal dev server runs in its own process group and
          // would outlive a SIGKILLed kiln dev, so end the children's groups too.
          for (const child of childPids(proc.pid)) {
            try {
              process.kill(-child, 'SIGKILL');
            } catch {
              // gone, or not a group leader
            }
          }
          proc.kill('SIGKILL');
        }, timeoutMs);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

/** What a CLI command printed and how it exited. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `kiln <args>` to completion. */
export function kiln(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((res) => {
    execFile(
      process.execPath,
      [KILN, ...args],
      { env: { ...process.env, LOG_LEVEL: 'warn', ...env }, timeout: 180_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        res({ code, stdout, stderr });
      },
    );
  });
}

/** The direct children of `pid` (Linux's /proc; none elsewhere). */
function childPids(pid: number | undefined): number[] {
  if (pid === undefined) return [];
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
