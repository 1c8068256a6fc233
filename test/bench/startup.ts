/**
 * Start time and idle RSS of `kiln api` and `kiln worker`, run as separate processes the way an
 * operator runs them, for each way of running Kiln's code (the TypeScript sources through tsx, and
 * the production build of `npm run build`), measured in the same run and alternated round by round:
 *   - api:    spawn → its first answered peek (config, storage, Temporal connection, listening);
 *   - worker: spawn → the first workflow task done: a build scheduled while no worker ran is leased
 *             (the lease waits for a worker to run the workflow's first task and the update; peek
 *             would not do, `schedule` has stored the build itself);
 *   - RSS:    VmRSS of each process after `idleSecs` with nothing to do.
 * Both processes share one PostgreSQL database, as in a deployment. Part of `npm run bench`
 * (`measureStartup`); alone: `npm run bench:startup` (writes bench-results-startup.json).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildKiln } from '../../scripts/build.ts';
import { KilnClient } from '../../src/client/kilnClient.ts';
import { freePort } from '../support/processes.ts';

const ROOT = resolve(import.meta.dirname, '../..');

/** How to run the `kiln` CLI: argv before the command name. */
export interface StartupMode {
  name: string;
  argv: string[];
}

/** The sources through tsx (what `npm run kiln` and `kiln dev` do). */
export const TSX_MODE: StartupMode = {
  name: 'tsx (sources)',
  // Resolved here: the processes run in a scratch folder, where `--import tsx` would not find the package.
  argv: ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')],
};

/** The production build in `outDir` (made by `buildKiln`). */
export function compiledMode(outDir: string): StartupMode {
  return { name: 'compiled (npm run build)', argv: [join(outDir, 'src/cli/main.js')] };
}

/** One mode's figures, medians over the rounds (all rounds kept too). */
export interface StartupFigures {
  mode: string;
  apiStartMs: number;
  workerFirstTaskMs: number;
  apiIdleRssMB: number;
  workerIdleRssMB: number;
  rounds: { apiStartMs: number; workerFirstTaskMs: number; apiIdleRssMB: number; workerIdleRssMB: number }[];
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function rssMB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return Number(line?.replace(/\D+/g, '') ?? NaN) / 1024;
}

/**
 * Measures each mode `rounds` times, alternating modes, against a running Temporal server and an
 * empty PostgreSQL database (each round uses its own task queue, so rounds do not see each other).
 */
export async function measureStartup(opts: {
  temporalAddress: string;
  namespace?: string;
  databaseUrl: string;
  modes: StartupMode[];
  /** @default 3 */
  rounds?: number;
  /** @default 10 */
  idleSecs?: number;
  log?: (line: string) => void;
}): Promise<StartupFigures[]> {
  const rounds = opts.rounds ?? 3;
  const idleSecs = opts.idleSecs ?? 10;
  const log = opts.log ?? ((l: string) => console.error(l));
  const dir = mkdtempSync(join(tmpdir(), 'kiln-startup-'));
  const config = join(dir, 'kiln.yaml');
  writeFileSync(
    config,
    'projects:\n  - name: s\n    buckets:\n      - name: ci\n        builders:\n          - name: b\n',
  );
  const children = new Set<ChildProcess>();
  const killAll = () => children.forEach((c) => c.kill('SIGKILL'));
  process.on('exit', killAll);
  const results = new Map(opts.modes.map((m) => [m.name, [] as StartupFigures['rounds']]));
  try {
    for (let round = 0; round < rounds; round++) {
      for (const mode of opts.modes) {
        const port = await freePort();
        const env = {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          KILN_CONFIG: config,
          KILN_DATA_DIR: join(dir, 'data'),
          KILN_API_PORT: String(port),
          TEMPORAL_ADDRESS: opts.temporalAddress,
          TEMPORAL_NAMESPACE: opts.namespace ?? 'default',
          TEMPORAL_TASK_QUEUE: `kiln-startup-${process.pid}-${round}-${opts.modes.indexOf(mode)}`,
          DATABASE_URL: opts.databaseUrl,
          LOG_LEVEL: 'warn',
          NODE_ENV: 'production',
        };
        const logFile = (command: string) => join(dir, `${command}-${round}-${opts.modes.indexOf(mode)}.log`);
        const start = (command: string) => {
          const out = openSync(logFile(command), 'a');
          const child = spawn(process.execPath, [...mode.argv, command], {
            cwd: dir,
            env,
            stdio: ['ignore', out, out],
          });
          closeSync(out);
          children.add(child);
          child.once('exit', () => children.delete(child));
          return child;
        };
        const stop = async (child: ChildProcess) => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await Promise.race([exited, sleep(15_000)]);
          child.kill('SIGKILL');
        };
        const until = async (what: string, child: ChildProcess, fn: () => Promise<boolean>) => {
          const deadline = Date.now() + 180_000;
          while (!(await fn().catch(() => false))) {
            if (child.exitCode !== null)
              throw new Error(`${mode.name}: ${what}: the process exited (${child.exitCode})`);
            if (Date.now() > deadline) throw new Error(`${mode.name}: ${what} took over 180 s`);
            await sleep(10);
          }
        };
        const kiln = new KilnClient({ baseUrl: `http://127.0.0.1:${port}` });
        const peek = () => kiln.peek({ buckets: ['s/ci'], maxBuilds: 100 });

        const t0 = performance.now();
        const api = start('api');
        await until('api start', api, async () => (await peek(), true));
        const apiStartMs = performance.now() - t0;
        // No worker yet: the build's workflow waits for one.
        const build = await kiln.schedule({ builder: { project: 's', bucket: 'ci', builder: 'b' } });
        const t1 = performance.now();
        const worker = start('worker');
        await until('worker first task', worker, async () => (await kiln.lease(build.id, { holder: 'startup' }), true));
        const workerFirstTaskMs = performance.now() - t1;
        await sleep(idleSecs * 1000);
        const figures = {
          apiStartMs,
          workerFirstTaskMs,
          apiIdleRssMB: rssMB(api.pid!),
          workerIdleRssMB: rssMB(worker.pid!),
        };
        results.get(mode.name)!.push(figures);
        log(
          `  startup ${mode.name} round ${round + 1}: api ${apiStartMs.toFixed(0)} ms, worker ${workerFirstTaskMs.toFixed(0)} ms,` +
            ` RSS api ${figures.apiIdleRssMB.toFixed(0)} MB, worker ${figures.workerIdleRssMB.toFixed(0)} MB`,
        );
        await Promise.all([stop(worker), stop(api)]);
      }
    }
  } finally {
    killAll();
    process.off('exit', killAll);
    rmSync(dir, { recursive: true, force: true });
  }
  return opts.modes.map((m) => {
    const rs = results.get(m.name)!;
    return {
      mode: m.name,
      apiStartMs: median(rs.map((r) => r.apiStartMs)),
      workerFirstTaskMs: median(rs.map((r) => r.workerFirstTaskMs)),
      apiIdleRssMB: median(rs.map((r) => r.apiIdleRssMB)),
      workerIdleRssMB: median(rs.map((r) => r.workerIdleRssMB)),
      rounds: rs,
    };
  });
}

/** A Markdown table of `measureStartup`'s figures. */
export function startupTable(figures: StartupFigures[]): string {
  return [
    '| how Kiln runs | kiln api: start → first answer ms | kiln worker: start → first task ms | idle RSS api / worker MB |',
    '|---|---|---|---|',
    ...figures.map(
      (f) =>
        `| ${f.mode} | ${f.apiStartMs.toFixed(0)} | ${f.workerFirstTaskMs.toFixed(0)} | ${f.apiIdleRssMB.toFixed(0)} / ${f.workerIdleRssMB.toFixed(0)} |`,
    ),
  ].join('\n');
}

/** `npm run bench:startup`: both modes on a dev server (or BENCH_TEMPORAL=cluster) and a throwaway PostgreSQL. */
async function main(): Promise<void> {
  const { startPostgres } = await import('../support/postgres.ts');
  const { startDevEnv } = await import('../support/temporal.ts');
  const { startTemporalCluster } = await import('../support/temporalCluster.ts');
  const rounds = Number(process.env.BENCH_STARTUP_ROUNDS ?? '3');
  const pg = await startPostgres();
  const cluster =
    process.env.BENCH_TEMPORAL === 'cluster' ? await startTemporalCluster({ postgresUrl: pg.url }) : undefined;
  const env = cluster ? undefined : await startDevEnv();
  try {
    const build = await buildKiln({ outDir: 'node_modules/.cache/kiln-bench-build', typecheck: false });
    const figures = await measureStartup({
      temporalAddress: cluster?.address ?? env!.address,
      databaseUrl: pg.url,
      modes: [TSX_MODE, compiledMode(build.outDir)],
      rounds,
    });
    rmSync(build.outDir, { recursive: true, force: true });
    console.log(`\n${startupTable(figures)}`);
    const out = 'bench-results-startup.json';
    writeFileSync(
      out,
      JSON.stringify(
        { temporal: cluster ? 'cluster' : 'dev', when: new Date().toISOString(), build: build.ms, figures },
        null,
        2,
      ),
    );
    console.log(`\nwrote ${out}`);
  } finally {
    await env?.teardown();
    await cluster?.stop();
    await pg.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
