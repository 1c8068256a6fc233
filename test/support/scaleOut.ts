/**
 * The scale-out suite, run on each kind of Temporal server (test/e2e/scale-out.test.ts: the dev server;
 * test/e2e/scale-out-cluster.test.ts: a multi-process cluster on PostgreSQL). Kiln scaled out across processes,
 * started as an operator would: PostgreSQL storage migrated by two concurrent `kiln migrate`s, 2 `kiln api` +
 * 2 `kiln worker` processes and 3 `kiln runner`s on one Temporal server. 200 builds are scheduled through both
 * APIs; one worker is SIGKILLed half-way. Every build must end exactly once: none lost, none run twice by the
 * runners, numbers unique and gap-free per builder.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { KilnApiError, KilnClient } from '../../src/client/kilnClient.ts';
import { type Build, isEnded } from '../../src/domain/build.ts';
import { openStorage } from '../../src/storage/open.ts';
import { type Storage } from '../../src/storage/storage.ts';
import { type RunningPostgres, startPostgres } from './postgres.ts';
import { freePort } from './processes.ts';
import { eventually } from './temporal.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const BUILDS = 200;
const BUILDERS = ['alpha', 'beta'];
const RUNNERS = ['runner-1', 'runner-2', 'runner-3'];

/** A `kiln …` child process; its output goes to `<dir>/<name>.log`. */
interface Proc {
  name: string;
  child: ChildProcess;
  log: string;
  exited: Promise<number | null>;
}

/** A Temporal server for the suite. */
export interface ScaleOutTemporal {
  address: string;
  namespace: string;
  stop(): Promise<void>;
}

/** Registers the suite on the Temporal server `startTemporal` starts (given the PostgreSQL Kiln's storage uses). */
export function scaleOutSuite(
  temporalName: string,
  startTemporal: (postgres: RunningPostgres) => Promise<ScaleOutTemporal>,
): void {
  void describe(`scale-out: 2 APIs, 2 workers, 3 runners on PostgreSQL and ${temporalName}`, () =>
    suite(startTemporal));
}

function suite(startTemporal: (postgres: RunningPostgres) => Promise<ScaleOutTemporal>): void {
  let dir: string;
  let postgres: RunningPostgres;
  let env: ScaleOutTemporal;
  let storage: Storage;
  const procs: Proc[] = [];
  const apis: KilnClient[] = [];
  let baseEnv: NodeJS.ProcessEnv;
  let ledger: string;

  const killAll = () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  };

  function kiln(name: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Proc {
    const log = join(dir, `${name}.log`);
    const out = openSync(log, 'a');
    const child = spawn(process.execPath, [join(ROOT, 'bin/kiln.js'), ...args], {
      cwd: dir,
      env: { ...baseEnv, ...extraEnv },
      stdio: ['ignore', out, out],
    });
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    const p = { name, child, log, exited };
    procs.push(p);
    return p;
  }

  const logOf = (p: Proc) => (existsSync(p.log) ? readFileSync(p.log, 'utf8') : '');

  /** Resolves once `p` wrote `marker`; fails with its log when it exits first. */
  async function started(p: Proc, marker: RegExp): Promise<void> {
    await eventually(
      async () => {
        if (p.child.exitCode !== null)
          throw new Error(`${p.name} exited (${p.child.exitCode}):\n${logOf(p).slice(-3000)}`);
        return marker.test(logOf(p));
      },
      120_000,
      `${p.name} to start`,
    );
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-scale-'));
    process.on('exit', killAll);
    postgres = await startPostgres();
    env = await startTemporal(postgres);
    ledger = join(dir, 'ledger.txt');
    writeFileSync(ledger, '');
    const builders = BUILDERS.map(
      (name) => `
          - name: ${name}
            leaseDurationSecs: 30
            command: ["sh", "-c", "echo \\"$KILN_BUILD_ID $RUNNER_NAME\\" >> ${ledger}; echo \\"built $KILN_BUILD_ID\\"; sleep 0.2"]`,
    ).join('');
    writeFileSync(
      join(dir, 'kiln.yaml'),
      `dataDir: ${join(dir, 'data')}\nprojects:\n  - name: scale\n    buckets:\n      - name: ci\n        builders:${builders}\n`,
    );
    baseEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      KILN_CONFIG: join(dir, 'kiln.yaml'),
      TEMPORAL_ADDRESS: env.address,
      TEMPORAL_NAMESPACE: env.namespace,
      TEMPORAL_TASK_QUEUE: `kiln-scale-${process.pid}`,
      DATABASE_URL: postgres.url,
      LOG_LEVEL: 'info',
    };
  });

  after(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
    await Promise.race([Promise.all(procs.map((p) => p.exited)), new Promise((r) => setTimeout(r, 20_000))]);
    killAll();
    process.off('exit', killAll);
    await storage?.close();
    await env?.stop();
    await postgres?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  void it('migrates PostgreSQL with kiln migrate, safely from two processes at once', async () => {
    const migrations = [kiln('migrate-1', ['migrate']), kiln('migrate-2', ['migrate'])];
    const codes = await Promise.all(migrations.map((p) => p.exited));
    assert.deepEqual(codes, [0, 0], migrations.map(logOf).join('\n'));
    const client = new pg.Client({ connectionString: postgres.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ version: number }>(
        'SELECT version FROM schema_migrations ORDER BY version',
      );
      const versions = rows.map((r) => r.version);
      assert.equal(new Set(versions).size, versions.length);
      assert.equal(versions[0], 1);
    } finally {
      await client.end();
    }
    storage = await openStorage({ kind: 'postgres', url: postgres.url });
  });

  void it('runs every build exactly once while a worker is killed', async () => {
    const ports = [await freePort(), await freePort()];
    // Each API has its own data dir, as on separate hosts: logs must come from the database.
    const apiProcs = ports.map((port, i) =>
      kiln(`api-${i + 1}`, ['api'], { KILN_API_PORT: String(port), KILN_DATA_DIR: join(dir, `api-${i + 1}-data`) }),
    );
    const workers = [1, 2].map((i) => kiln(`worker-${i}`, ['worker']));
    await Promise.all([
      ...apiProcs.map((p) => started(p, /API listening/)),
      ...workers.map((p) => started(p, /worker running/)),
    ]);
    apis.push(...ports.map((port) => new KilnClient({ baseUrl: `http://127.0.0.1:${port}` })));

    // Runners 1 and 3 talk to API 1, runner 2 to API 2.
    RUNNERS.forEach((name, i) => {
      const file = join(dir, `${name}.yaml`);
      writeFileSync(
        file,
        [
          `api: http://127.0.0.1:${ports[i % 2]}`,
          `name: ${name}`,
          'serve:\n  - bucket: scale/ci',
          'capacity: 4',
          'peekIntervalSecs: 0.5',
          'heartbeatIntervalSecs: 3',
          `workDir: ${join(dir, name)}`,
        ].join('\n'),
      );
      kiln(name, ['runner', '--config', file], { RUNNER_NAME: name });
    });

    // Schedule through both APIs, 8 requests in flight; a retry with the same requestId is the same build.
    const scheduled: Build[] = [];
    let next = 0;
    const schedule = async (i: number): Promise<Build> => {
      for (let attempt = 0; ; attempt++) {
        try {
          return await apis[i % 2]!.schedule({
            builder: { project: 'scale', bucket: 'ci', builder: BUILDERS[i % BUILDERS.length]! },
            requestId: `build-${i}`,
            properties: { i },
          });
        } catch (e) {
          if (!(e instanceof KilnApiError && e.code === 'UNAVAILABLE') || attempt >= 10) throw e;
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    };
    const lanes = Array.from({ length: 8 }, async () => {
      while (next < BUILDS) scheduled.push(await schedule(next++));
    });

    // Half-way through, the first worker dies without a chance to clean up.
    const ran = () => readFileSync(ledger, 'utf8').split('\n').filter(Boolean);
    await eventually(async () => ran().length >= BUILDS / 3, 150_000, 'a third of the builds to run');
    workers[0]!.child.kill('SIGKILL');
    await workers[0]!.exited;
    await Promise.all(lanes);
    assert.equal(scheduled.length, BUILDS);
    assert.equal(new Set(scheduled.map((b) => b.id)).size, BUILDS, 'every schedule made its own build');

    // Every build ends, through the surviving worker.
    const ids = new Set(scheduled.map((b) => b.id));
    const stored = await eventually(
      async () => {
        const all: Build[] = [];
        let cursor: string | undefined;
        do {
          const page = await storage.searchBuilds({ builder: { project: 'scale' }, limit: 1000, cursor });
          all.push(...page.builds);
          cursor = page.nextCursor;
        } while (cursor);
        return all.length === BUILDS && all.every((b) => isEnded(b.status)) && all;
      },
      150_000,
      'every build to end',
    );
    assert.deepEqual(new Set(stored.map((b) => b.id)), ids, 'storage has exactly the scheduled builds');
    for (const b of stored) {
      assert.equal(b.status, 'SUCCESS', `build ${b.id}: ${b.status} ${b.summaryMarkdown ?? ''}`);
      assert.equal(b.events.filter((e) => e.kind === 'ENDED').length, 1, `build ${b.id} ended once`);
    }

    // No build ran twice: one ledger line per build.
    const lines = ran().map((l) => l.split(' ') as [string, string]);
    const runs = new Map<string, string[]>();
    for (const [id, runner] of lines) runs.set(id, [...(runs.get(id) ?? []), runner]);
    for (const id of ids)
      assert.equal(
        runs.get(id)?.length,
        1,
        `build ${id} ran ${runs.get(id)?.length ?? 0} times: ${runs.get(id)?.join(', ')}`,
      );
    assert.equal(lines.length, BUILDS);
    const perRunner = Object.fromEntries(RUNNERS.map((r) => [r, lines.filter(([, x]) => x === r).length]));
    assert.ok(
      Object.values(perRunner).filter((n) => n > 0).length >= 2,
      `work is shared: ${JSON.stringify(perRunner)}`,
    );

    // Numbers: unique and gap-free per builder.
    for (const name of BUILDERS) {
      const numbers = stored
        .filter((b) => b.builder.builder === name)
        .map((b) => b.number)
        .sort((a, b) => a - b);
      assert.deepEqual(
        numbers,
        Array.from({ length: numbers.length }, (_, i) => i + 1),
        `numbers of ${name}`,
      );
    }

    // Either API answers for any build, and serves its log whichever API the runner uploaded it to.
    for (const b of scheduled.slice(0, 10)) {
      const [a, c] = await Promise.all(apis.map((api) => api.get(b.id)));
      assert.equal(a?.status, 'SUCCESS');
      assert.deepEqual(a, c);
      const logs = await Promise.all(apis.map((api) => api.readLog(b.id)));
      for (const l of logs) {
        assert.match(l.data.toString('utf8'), new RegExp(`built ${b.id}`), `log of ${b.id}`);
        assert.equal(l.complete, true);
      }
    }
    // The surviving processes are still up.
    for (const p of procs.filter((p) => p !== workers[0] && !p.name.startsWith('migrate'))) {
      assert.equal(p.child.exitCode, null, `${p.name} exited:\n${logOf(p).slice(-2000)}`);
    }
  });
}
