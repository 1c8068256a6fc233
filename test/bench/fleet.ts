/**
 * `npm run bench`, a fleet of pull runners against one API (issue 18 item 2). The phase schedules,
 * leases and starts one build per runner, then a separate process (this file run as a script, so
 * its CPU is not the API's) plays the runners for a while: each sends a batch heartbeat for its
 * build every `heartbeatSecs` and peeks its buckets every `peekSecs` with ±20 % jitter, starting at
 * random offsets. Afterwards every build must still be STARTED on its first lease: no lease that a
 * runner kept alive may have expired. The API process's CPU (API + worker) over the run, per runner,
 * is the price of a runner.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { KilnClient, KilnApiError } from '../../src/client/kilnClient.ts';

/** The fleet's bucket: leases of 30 s, so three missed heartbeats lose one. */
export const FLEET_BUCKET_CONFIG = `
      - name: fleet
        builders:
          - { name: f, dimensions: ['os:linux', 'pool:fleet'], leaseDurationSecs: 30 }
`;

interface Held {
  buildId: string;
  leaseKey: string;
}

interface FleetArgs {
  url: string;
  held: Held[];
  secs: number;
  heartbeatSecs: number;
  peekSecs: number;
  peekBuckets: string[];
}

interface FleetReport {
  heartbeatMs: number[];
  peekMs: number[];
  heartbeatErrors: Record<string, number>;
  peekErrors: Record<string, number>;
}

export interface FleetFigures {
  runners: number;
  secs: number;
  heartbeats: number;
  heartbeatMs: { p50: number; p99: number; max: number };
  peeks: number;
  peekMs: { p50: number; p99: number };
  heartbeatErrors: Record<string, number>;
  peekErrors: Record<string, number>;
  /** CPU of the API process (API + worker, no runner) per runner: ms of CPU per second of wall time. */
  apiCpuMsPerRunnerSec: number;
  /** The Temporal server's CPU per runner, the same way. */
  temporalCpuMsPerRunnerSec: number;
  /** Builds no longer STARTED on their first lease after the run (each is a lease lost). */
  leasesLost: number;
}

const pct = (xs: number[], p: number): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

/** Runs the phase against the API at `kiln`; `serverCpuSecs` reads the Temporal server's CPU so far. */
export async function fleetPhase(opts: {
  kiln: KilnClient;
  url: string;
  runners: number;
  secs: number;
  peekBuckets: string[];
  serverCpuSecs: () => number;
  log: (line: string) => void;
}): Promise<FleetFigures> {
  const { kiln } = opts;
  const held: Held[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < opts.runners) {
        const i = next++;
        const b = await kiln.schedule({ builder: { project: 'bench', bucket: 'fleet', builder: 'f' } });
        // Long enough to outlast the setup of the others; the runners' heartbeats then keep 30 s leases.
        const g = await kiln.lease(b.id, { holder: `runner-${i}`, leaseDurationSecs: 1800 });
        await kiln.start(b.id, { leaseKey: g.leaseKey });
        held.push({ buildId: b.id, leaseKey: g.leaseKey });
      }
    }),
  );
  opts.log(`  fleet: ${held.length} builds leased and started; runners run for ${opts.secs} s`);
  const args: FleetArgs = {
    url: opts.url,
    held,
    secs: opts.secs,
    heartbeatSecs: 10,
    peekSecs: 10,
    peekBuckets: opts.peekBuckets,
  };
  // Measured from the moment the runners' process starts its runners (not while it loads).
  let cpu0 = process.cpuUsage();
  let server0 = opts.serverCpuSecs();
  let t0 = performance.now();
  const report = await runFleetProcess(args, () => {
    cpu0 = process.cpuUsage();
    server0 = opts.serverCpuSecs();
    t0 = performance.now();
  });
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const serverSecs = opts.serverCpuSecs() - server0;

  const states = await Promise.all(held.map((h) => kiln.get(h.buildId)));
  const leasesLost = states.filter(
    (b) => b.status !== 'STARTED' || b.leaseGeneration !== 1 || b.leaseResets !== 0,
  ).length;
  const perRunnerSec = (secs: number) => (1000 * secs) / opts.runners / wall;
  return {
    runners: opts.runners,
    secs: wall,
    heartbeats: report.heartbeatMs.length,
    heartbeatMs: {
      p50: pct(report.heartbeatMs, 50),
      p99: pct(report.heartbeatMs, 99),
      max: pct(report.heartbeatMs, 100),
    },
    peeks: report.peekMs.length,
    peekMs: { p50: pct(report.peekMs, 50), p99: pct(report.peekMs, 99) },
    heartbeatErrors: report.heartbeatErrors,
    peekErrors: report.peekErrors,
    apiCpuMsPerRunnerSec: perRunnerSec((cpu.user + cpu.system) / 1e6),
    temporalCpuMsPerRunnerSec: perRunnerSec(serverSecs),
    leasesLost,
  };
}

/** The fleet's figures as a Markdown table. */
export function fleetTable(f: FleetFigures): string {
  const n = (x: number, d = 1) => (Number.isNaN(x) ? '-' : x.toFixed(d));
  const errs = (e: Record<string, number>) =>
    Object.entries(e)
      .map(([k, v]) => `${k} ×${v}`)
      .join(', ') || 'none';
  return [
    '| figure | value |',
    '|---|---|',
    `| runners (one build each) / seconds | ${f.runners} / ${n(f.secs, 0)} |`,
    `| batch heartbeats sent, p50 / p99 / max ms | ${f.heartbeats}, ${n(f.heartbeatMs.p50)} / ${n(f.heartbeatMs.p99)} / ${n(f.heartbeatMs.max)} |`,
    `| peeks sent, p50 / p99 ms | ${f.peeks}, ${n(f.peekMs.p50)} / ${n(f.peekMs.p99)} |`,
    `| heartbeat errors | ${errs(f.heartbeatErrors)} |`,
    `| peek errors | ${errs(f.peekErrors)} |`,
    `| API process CPU per runner (ms per s; API + worker) | ${n(f.apiCpuMsPerRunnerSec, 2)} |`,
    `| Temporal server CPU per runner (ms per s) | ${n(f.temporalCpuMsPerRunnerSec, 2)} |`,
    `| leases lost that runners kept alive | ${f.leasesLost} |`,
  ].join('\n');
}

/** Starts this file as the runners' process and collects its report (one JSON line on stdout). */
function runFleetProcess(args: FleetArgs, onReady: () => void): Promise<FleetReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    let ready = false;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!ready && out.includes(READY)) {
        ready = true;
        out = out.slice(out.indexOf(READY) + READY.length);
        onReady();
      }
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`the fleet process exited with ${code}`));
      try {
        resolve(JSON.parse(out) as FleetReport);
      } catch (e) {
        reject(e as Error);
      }
    });
    child.stdin.end(JSON.stringify(args));
    // Must not outlive the bench: it stops on its own after `secs`, and dies with a closed stdout.
    process.once('exit', () => child.kill('SIGKILL'));
  });
}

const READY = 'fleet-ready\n';

/** The runners' process: see the module comment. */
async function fleetMain(): Promise<void> {
  let input = '';
  for await (const chunk of process.stdin) input += String(chunk);
  const a = JSON.parse(input) as FleetArgs;
  const kiln = new KilnClient({ baseUrl: a.url, timeoutMs: 30_000 });
  const report: FleetReport = { heartbeatMs: [], peekMs: [], heartbeatErrors: {}, peekErrors: {} };
  const note = (m: Record<string, number>, e: unknown) => {
    const k = e instanceof KilnApiError ? e.code : String((e as Error).message ?? e).slice(0, 60);
    m[k] = (m[k] ?? 0) + 1;
  };
  const end = Date.now() + a.secs * 1000;
  process.stdout.write(READY);
  // No sleep past the end: the API's CPU is counted until this process exits.
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, Math.min(ms, end - Date.now()))));
  const jitter = (secs: number) => secs * 1000 * (0.8 + 0.4 * Math.random());
  await Promise.all(
    a.held.map(async (h) => {
      const heartbeats = (async () => {
        await sleep(Math.random() * a.heartbeatSecs * 1000);
        while (Date.now() < end) {
          const t = performance.now();
          try {
            const r = await kiln.heartbeatBatch([{ buildId: h.buildId, leaseKey: h.leaseKey }]);
            for (const x of r.results)
              if ('error' in x && x.error) note(report.heartbeatErrors, { message: x.error.code });
            report.heartbeatMs.push(performance.now() - t);
          } catch (e) {
            note(report.heartbeatErrors, e);
          }
          await sleep(Math.max(0, a.heartbeatSecs * 1000 - (performance.now() - t)));
        }
      })();
      const peeks = (async () => {
        await sleep(Math.random() * a.peekSecs * 1000);
        while (Date.now() < end) {
          const t = performance.now();
          try {
            await kiln.peek({ buckets: a.peekBuckets, dimensions: ['os:linux', 'pool:a'], maxBuilds: 10 });
            report.peekMs.push(performance.now() - t);
          } catch (e) {
            note(report.peekErrors, e);
          }
          await sleep(jitter(a.peekSecs));
        }
      })();
      await Promise.all([heartbeats, peeks]);
    }),
  );
  process.stdout.write(JSON.stringify(report));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await fleetMain();
