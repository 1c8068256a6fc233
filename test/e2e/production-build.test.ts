/**
 * The production build (`npm run build`, scripts/build.ts) run as an operator runs it: the compiled `kiln migrate`,
 * `kiln api`, `kiln worker` and `kiln runner` (plain `node`, no tsx) on PostgreSQL and a Temporal dev server run
 * builds to the end. The build sits in its own folder with no TypeScript beside it, so a worker that tried to bundle
 * the workflows at start instead of loading the prebuilt bundle would fail.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type TestWorkflowEnvironment } from '@temporalio/testing';
import { buildKiln } from '../../scripts/build.ts';
import { KilnClient } from '../../src/client/kilnClient.ts';
import { type Build, isEnded } from '../../src/domain/build.ts';
import { type RunningPostgres, startPostgres } from '../support/postgres.ts';
import { freePort } from '../support/processes.ts';
import { eventually, startDevEnv } from '../support/temporal.ts';

const ROOT = resolve(import.meta.dirname, '../..');

/** Every .js file under `dir`. */
function jsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.js'))
    .map((e) => join(e.parentPath, e.name));
}

void describe('the production build', () => {
  // Inside the repo, so node_modules resolve from it; node_modules/.cache is ignored by git, ESLint and Prettier.
  const outDir = join(ROOT, 'node_modules/.cache', `kiln-build-test-${process.pid}`);
  let dir: string;
  let postgres: RunningPostgres;
  let env: TestWorkflowEnvironment;
  const children: ChildProcess[] = [];
  const killAll = () => children.forEach((c) => c.exitCode === null && c.signalCode === null && c.kill('SIGKILL'));

  before(async () => {
    process.on('exit', killAll);
    dir = mkdtempSync(join(tmpdir(), 'kiln-prod-'));
    // Type checking is `npm run typecheck`'s job; the rest is what `npm run build` does.
    [, postgres, env] = await Promise.all([
      buildKiln({ outDir, typecheck: false, log: () => undefined }),
      startPostgres(),
      startDevEnv(),
    ]);
  });

  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await Promise.race([
      Promise.all(children.map((c) => c.exitCode !== null || new Promise((r) => c.once('exit', r)))),
      new Promise((r) => setTimeout(r, 20_000)),
    ]);
    killAll();
    process.off('exit', killAll);
    await env?.teardown();
    await postgres?.stop();
    rmSync(outDir, { recursive: true, force: true });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  void it('is compiled JavaScript with relative imports rewritten, plus the workflow bundle', () => {
    const files = jsFiles(outDir);
    for (const sub of ['src/cli/main.js', 'workers/worker.js', 'workflows/index.js', 'activities/index.js']) {
      assert.ok(files.includes(join(outDir, sub)), `the build has ${sub}`);
    }
    const tsImports = files.flatMap((f) =>
      [...readFileSync(f, 'utf8').matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+\.ts)['"]/g)].map(
        (m) => `${f.slice(outDir.length + 1)}: ${m[1]}`,
      ),
    );
    assert.deepEqual(tsImports, [], 'imports of .ts files left in the compiled code');
    assert.equal(readdirSync(outDir, { recursive: true }).filter((f) => String(f).endsWith('.ts')).length, 0);
    const bundle = readFileSync(join(outDir, 'workflow-bundle.js'), 'utf8');
    assert.match(bundle, /buildWorkflow/, 'the bundle holds the build workflow');
    assert.equal(JSON.parse(readFileSync(join(outDir, 'package.json'), 'utf8')).type, 'module');
    const info = JSON.parse(readFileSync(join(outDir, 'build-info.json'), 'utf8')) as { builtAt: number };
    assert.ok(info.builtAt <= Date.now());
  });

  void it('runs migrate, api, worker and runner compiled, and they run builds to the end', async () => {
    const port = await freePort();
    const ledger = join(dir, 'ledger.txt');
    writeFileSync(ledger, '');
    writeFileSync(
      join(dir, 'kiln.yaml'),
      [
        `dataDir: ${join(dir, 'data')}`,
        'projects:',
        '  - name: prod',
        '    buckets:',
        '      - name: ci',
        '        builders:',
        '          - name: b',
        `            command: ["sh", "-c", "echo $KILN_BUILD_ID >> ${ledger}; echo built $KILN_BUILD_ID"]`,
      ].join('\n'),
    );
    writeFileSync(
      join(dir, 'runner.yaml'),
      [
        `api: http://127.0.0.1:${port}`,
        'name: prod-runner',
        'serve:\n  - bucket: prod/ci',
        'peekIntervalSecs: 0.5',
        `workDir: ${join(dir, 'work')}`,
      ].join('\n'),
    );
    const baseEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_ENV: 'production',
      KILN_CONFIG: join(dir, 'kiln.yaml'),
      KILN_API_PORT: String(port),
      TEMPORAL_ADDRESS: env.address,
      TEMPORAL_NAMESPACE: env.namespace ?? 'default',
      TEMPORAL_TASK_QUEUE: `kiln-prod-${process.pid}`,
      DATABASE_URL: postgres.url,
      LOG_LEVEL: 'info',
    };
    const logs = new Map<string, string>();
    const kiln = (name: string, args: string[]) => {
      const log = join(dir, `${name}.log`);
      logs.set(name, log);
      const out = openSync(log, 'a');
      // Plain node on the compiled entry point: no tsx, no loader hooks.
      const child = spawn(process.execPath, [join(outDir, 'src/cli/main.js'), ...args], {
        cwd: dir,
        env: baseEnv,
        stdio: ['ignore', out, out],
      });
      children.push(child);
      return child;
    };
    const logOf = (name: string) => (existsSync(logs.get(name) ?? '') ? readFileSync(logs.get(name)!, 'utf8') : '');
    const started = (name: string, child: ChildProcess, marker: RegExp) =>
      eventually(
        async () => {
          if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}):\n${logOf(name)}`);
          return marker.test(logOf(name));
        },
        120_000,
        `${name} to start`,
      );

    const migrate = kiln('migrate', ['migrate']);
    const code = await new Promise((r) => migrate.once('exit', r));
    assert.equal(code, 0, logOf('migrate'));
    const api = kiln('api', ['api']);
    const worker = kiln('worker', ['worker']);
    await Promise.all([started('api', api, /API listening/), started('worker', worker, /worker running/)]);
    kiln('runner', ['runner', '--config', join(dir, 'runner.yaml')]);

    const client = new KilnClient({ baseUrl: `http://127.0.0.1:${port}` });
    const scheduled: Build[] = [];
    for (let i = 0; i < 3; i++) {
      scheduled.push(await client.schedule({ builder: { project: 'prod', bucket: 'ci', builder: 'b' } }));
    }
    const ended = await eventually(
      async () => {
        const builds = await Promise.all(scheduled.map((b) => client.get(b.id)));
        return builds.every((b) => isEnded(b.status)) && builds;
      },
      120_000,
      'the builds to end',
    );
    for (const b of ended) assert.equal(b.status, 'SUCCESS', `build ${b.id}: ${b.summaryMarkdown ?? ''}`);
    assert.deepEqual(
      readFileSync(ledger, 'utf8').split('\n').filter(Boolean).sort(),
      scheduled.map((b) => b.id).sort(),
      'the runner ran each build once',
    );
    const log = await client.readLog(scheduled[0]!.id);
    assert.match(log.data.toString('utf8'), new RegExp(`built ${scheduled[0]!.id}`));
    assert.doesNotMatch(logOf('worker'), /bundl/i, 'the worker did not bundle workflow code');
  });
});
