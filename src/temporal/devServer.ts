/**
 * Runs the Temporal CLI dev server for `kiln dev`: SQLite file in Kiln's data dir (a restart loses
 * nothing), Web UI, Kiln's search attributes registered at start, bound to 127.0.0.1.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

/** A running dev server. */
export interface DevServer {
  address: string;
  uiUrl: string;
  stop(): Promise<void>;
}

/** Starts the dev server and waits until it answers; kills a stale one this data dir left behind. */
export async function startDevServer(opts: {
  dataDir: string;
  port: number;
  uiPort: number;
  namespace: string;
  logger: pino.Logger;
}): Promise<DevServer> {
  if (!existsSync(TEMPORAL_CLI)) {
    throw new Error(
      `Temporal CLI not found at ${TEMPORAL_CLI}: run "bash scripts/setup.sh" (needs Go), or set TEMPORAL_ADDRESS`,
    );
  }
  mkdirSync(opts.dataDir, { recursive: true });
  const pidFile = join(opts.dataDir, 'temporal.pid');
  killStale(pidFile, opts.logger);
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
    join(opts.dataDir, 'temporal.db'),
    '--namespace',
    opts.namespace,
    '--log-level',
    'warn',
    ...searchAttributeArgs(),
  ];
  const child: ChildProcess = spawn(TEMPORAL_CLI, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  if (child.pid !== undefined) writeFileSync(pidFile, String(child.pid));
  const address = `127.0.0.1:${opts.port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`Temporal dev server exited (${child.exitCode}): ${stderr.trim()}`);
    try {
      const c = await Connection.connect({ address, connectTimeout: 1000 });
      await c.workflowService.getSystemInfo({});
      await c.close();
      break;
    } catch (e) {
      if (Date.now() > deadline)
        throw new Error(`Temporal dev server did not answer on ${address}: ${(e as Error).message}`);
      await sleep(250);
    }
  }
  opts.logger.info({ address, ui: `http://127.0.0.1:${opts.uiPort}` }, 'Temporal dev server up');
  return {
    address,
    uiUrl: `http://127.0.0.1:${opts.uiPort}`,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await Promise.race([new Promise((r) => child.once('exit', r)), sleep(10_000)]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      rmSync(pidFile, { force: true });
    },
  };
}

function killStale(pidFile: string, logger: pino.Logger): void {
  if (!existsSync(pidFile)) return;
  const pid = Number.parseInt(readFileSync(pidFile, 'utf8'), 10);
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (cmd.includes('temporal') && cmd.includes('start-dev')) {
      logger.warn({ pid }, 'stopping a Temporal dev server left running by an earlier kiln dev');
      process.kill(pid, 'SIGKILL');
    }
  } catch {
    // Not running any more.
  }
  rmSync(pidFile, { force: true });
}
