/**
 * The first hour with Kiln, as a user types it: `kiln dev` with ACLs, its start banner's commands
 * run as printed (`npx kiln …` from the clone, KILN_TOKEN), `search --json` piped into a JSON
 * parser, `npm run kiln` with a path relative to where the user is, `schedule --wait` on a failing
 * build, builder name suggestions, readable logs on a terminal, and runners that hand build
 * commands no Kiln credentials and retry a report the API failed with a 500.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { KilnClient } from '../../src/client/kilnClient.ts';
import { type Build } from '../../src/domain/build.ts';
import { freePort, kiln, type KilnProcess, startKiln } from '../support/kilnDev.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const KILN = join(ROOT, 'bin/kiln.js');
const SCHEDULER_TOKEN = 'scheduler-token-e2e-0123456789';
const RUNNER_TOKEN = 'runner-token-e2e-0123456789abc';
const DEV_RUNNER_TOKEN = 'dev-runner-token-e2e-0123456789';
/** Starts an ANSI colour sequence. */
const ESC = String.fromCharCode(27);

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

/** This process's env without NO_COLOR/FORCE_COLOR, so a terminal decides. */
function withoutColorOverrides(): NodeJS.ProcessEnv {
  const { NO_COLOR: _n, FORCE_COLOR: _f, ...rest } = process.env;
  return rest;
}

/** Runs a shell command line to completion, as a user's terminal would (no TTY). */
function sh(line: string, opts: { cwd?: string; env?: Record<string, string> } = {}) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((res) => {
    execFile(
      'sh',
      ['-c', line],
      { cwd: opts.cwd ?? ROOT, env: { ...process.env, LOG_LEVEL: 'warn', ...opts.env }, timeout: 180_000 },
      (err, stdout, stderr) => res({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** A pass-through proxy to the API that answers the first `failures` succeed calls with a 500. */
function faultyProxy(
  target: string,
  failures: number,
): Promise<{ url: string; succeedCalls: () => number; server: Server }> {
  let calls = 0;
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && /\/succeed$/.test(req.url ?? '')) {
        calls += 1;
        if (calls <= failures) {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ code: 'INTERNAL', message: 'internal error' }));
          return;
        }
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host') headers[k] = v;
      fetch(new URL(req.url ?? '/', target), {
        method: req.method,
        headers,
        body: req.method === 'GET' ? undefined : Buffer.concat(chunks),
      }).then(
        async (r) => {
          const out: Record<string, string> = {};
          r.headers.forEach((v, k) => {
            if (k !== 'content-length' && k !== 'transfer-encoding' && k !== 'connection') out[k] = v;
          });
          res.writeHead(r.status, out);
          res.end(Buffer.from(await r.arrayBuffer()));
        },
        () => {
          res.writeHead(502);
          res.end();
        },
      );
    });
  });
  return new Promise((r) =>
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      r({ url: `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`, succeedCalls: () => calls, server });
    }),
  );
}

describe('the first hour with Kiln: the CLI and runners', () => {
  let dir: string;
  let api: string;
  let dev: KilnProcess;
  let client: KilnClient;
  const runners: KilnProcess[] = [];
  const servers: Server[] = [];
  const env = { KILN_E2E_SCHEDULER_TOKEN: SCHEDULER_TOKEN, KILN_E2E_RUNNER_TOKEN: RUNNER_TOKEN };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-e2e-cli-'));
    const [apiPort, tPort, uiPort] = [await freePort(), await freePort(), await freePort()];
    api = `http://127.0.0.1:${apiPort}`;
    client = new KilnClient({ baseUrl: api, token: SCHEDULER_TOKEN });
    writeFileSync(
      join(dir, 'kiln.yaml'),
      `
dataDir: ${join(dir, 'data')}
api: { host: 127.0.0.1, port: ${apiPort} }
temporal: { taskQueue: e2e-cli, devServer: { port: ${tPort}, uiPort: ${uiPort} } }
devRunner:
  name: dev-runner
  token: ${DEV_RUNNER_TOKEN}
  serve: [{ bucket: demo/ci, builders: [pass, fail] }]
  dimensions: []
  peekIntervalSecs: 1
  logFlushIntervalSecs: 1
projects:
  - name: demo
    buckets:
      - name: ci
        acls:
          - { role: SCHEDULER, name: developer, tokenEnv: KILN_E2E_SCHEDULER_TOKEN }
          - { role: WRITER, name: runners, tokenEnv: KILN_E2E_RUNNER_TOKEN }
          - { role: WRITER, name: dev-runner, token: ${DEV_RUNNER_TOKEN} }
        builders:
          - name: pass
            command: ["sh", "-c", "echo building; env; echo all tests passed"]
          - name: fail
            command: ["sh", "-c", "for i in $(seq 1 30); do echo line $i; done; echo '1 test failed' >&2; exit 1"]
          - name: external
            dimensions: ["pool:external"]
            command: ["sh", "-c", "echo external build; env"]
`,
    );
    dev = startKiln(['dev', '-c', join(dir, 'kiln.yaml')], env);
    await dev.waitFor('Ctrl-C stops everything', 180_000);
  });

  after(async () => {
    for (const r of runners) await r.stop('SIGKILL');
    for (const s of servers) s.close();
    await dev?.stop('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });

  it("the start banner's commands work as printed once the config has ACLs", async () => {
    const out = dev.output();
    const banner = out.slice(out.indexOf('Try'), out.indexOf('Ctrl-C stops everything'));
    assert.match(banner, /KILN_TOKEN/);
    const commands = banner
      .split('\n')
      .slice(1)
      .map((l) => l.trim())
      .filter(Boolean);
    assert.deepEqual(commands, [
      'export KILN_TOKEN="$KILN_E2E_SCHEDULER_TOKEN"',
      'npx kiln schedule demo/ci/pass',
      'npx kiln search',
    ]);
    // Without the token the same commands are refused, with a word on KILN_TOKEN.
    const bare = await sh(commands.slice(1, 2).join('\n'), { env: { KILN_API: api } });
    assert.notEqual(bare.code, 0);
    assert.match(bare.stderr, /UNAUTHENTICATED[\s\S]*KILN_TOKEN/);
    const r = await sh(`set -e\n${commands.join('\n')}`, { env: { ...env, KILN_API: api } });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /demo\/ci\/pass #\d+ {2}SCHEDULED/);
  });

  it('`npx kiln search --json` prints only JSON on stdout', async () => {
    const r = await sh('npx kiln search --json', { env: { KILN_API: api, KILN_TOKEN: SCHEDULER_TOKEN } });
    assert.equal(r.code, 0, r.stderr);
    const page = JSON.parse(r.stdout) as { builds: Build[] };
    assert.ok(Array.isArray(page.builds));
  });

  it('`schedule --wait` on a failing build: one line per change, the log tail and the kiln log hint', async () => {
    const r = await kiln(['schedule', 'demo/ci/fail', '--wait', '--api', api, '--token', SCHEDULER_TOKEN]);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    const id = /^build (\d+)$/m.exec(r.stdout)?.[1] ?? '';
    assert.equal(r.stdout.match(/ SCHEDULED/g)?.length, 1, r.stdout);
    assert.match(r.stdout, /demo\/ci\/fail #\d+ FAILURE: the command exited with code 1/);
    assert.match(r.stdout, /--- last \d+ lines of the log/);
    assert.match(r.stdout, /1 test failed/);
    assert.match(r.stdout, /line 30/);
    assert.doesNotMatch(r.stdout, /line 5\n/, 'only the tail');
    assert.match(r.stdout, new RegExp(`npx kiln log ${id}`));
    assert.ok(!r.stdout.includes(ESC), 'no colour when stdout is not a terminal');
  });

  it('colours statuses and logs on a terminal, JSON logs when not one or when asked', async () => {
    const tty = (line: string, extra: Record<string, string> = {}) =>
      spawnSync('script', ['-qec', line, '/dev/null'], {
        encoding: 'utf8',
        cwd: ROOT,
        env: { ...withoutColorOverrides(), TERM: 'xterm-256color', ...extra },
        timeout: 180_000,
      });
    const w = tty(`node ${KILN} schedule demo/ci/pass --wait --api ${api} --token ${SCHEDULER_TOKEN}`);
    assert.equal(w.status, 0, w.stdout + w.stderr);
    assert.match(w.stdout, new RegExp(`${ESC}\\[\\d+m(${ESC}\\[\\d+m)?SUCCESS`));
    const data = join(dir, 'migrate');
    mkdirSync(data);
    writeFileSync(join(data, 'kiln.yaml'), `dataDir: ${data}\n`);
    const pretty = tty(`LOG_LEVEL=info node ${KILN} migrate -c ${join(data, 'kiln.yaml')}`);
    assert.equal(pretty.status, 0, pretty.stdout);
    assert.match(pretty.stdout, /INFO.*kiln-migrate: storage migrated/);
    assert.doesNotMatch(pretty.stdout, /"level":/);
    const json = tty(`LOG_LEVEL=info LOG_FORMAT=json node ${KILN} migrate -c ${join(data, 'kiln.yaml')}`);
    assert.match(json.stdout, /"msg":"storage migrated"/);
    const piped = await kiln(['migrate', '-c', join(data, 'kiln.yaml')], { LOG_LEVEL: 'info' });
    assert.match(piped.stdout, /^\{"level":30,.*"msg":"storage migrated"\}$/m);
  });

  it('suggests the nearest builder names, and says when a searched builder does not exist', async () => {
    const typo = await kiln(['schedule', 'demo/ci/pas', '--api', api, '--token', SCHEDULER_TOKEN]);
    assert.equal(typo.code, 1);
    assert.match(
      typo.stderr,
      /BUILDER_NOT_FOUND: builder demo\/ci\/pas is not configured; did you mean demo\/ci\/pass\?/,
    );
    const none = await kiln(['search', '--builder', 'demo/ci/nope', '--api', api, '--token', SCHEDULER_TOKEN]);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /BUILDER_NOT_FOUND: builder demo\/ci\/nope is not configured/);
    assert.doesNotMatch(none.stdout, /no builds/);
    const known = await kiln(['search', '--builder', 'demo/ci/external', '--api', api, '--token', SCHEDULER_TOKEN]);
    assert.equal(known.code, 0, known.stderr);
    assert.match(known.stdout, /\(no builds\)/);
  });

  it('build commands get no Kiln credentials, on the dev runner and on kiln runner', async () => {
    const r = await kiln(['schedule', 'demo/ci/pass', '--wait', '--json', '--api', api, '--token', SCHEDULER_TOKEN]);
    assert.equal(r.code, 0, r.stderr);
    const id = (JSON.parse(r.stdout) as Build).id;
    const log = (await client.readLog(id)).data.toString();
    assert.match(log, /KILN_BUILD_ID=/, 'the command printed its env');
    for (const secret of [SCHEDULER_TOKEN, RUNNER_TOKEN, DEV_RUNNER_TOKEN]) assert.ok(!log.includes(secret), secret);
    assert.doesNotMatch(log, /KILN_E2E_(SCHEDULER|RUNNER)_TOKEN/);
  });

  it('kiln runner retries a report the API failed with a 500, and its commands see no token', async () => {
    const proxy = await faultyProxy(api, 2);
    servers.push(proxy.server);
    const cwd = join(dir, 'runner-home');
    mkdirSync(cwd);
    // A relative -c path, typed where the file is, through `npm run kiln` (which runs in the package folder).
    writeFileSync(
      join(cwd, 'runner.yaml'),
      `api: ${proxy.url}
tokenEnv: KILN_RUNNER_TOKEN
name: external-runner
serve: [{ bucket: demo/ci, builders: [external] }]
dimensions: ["pool:external"]
peekIntervalSecs: 1
heartbeatIntervalSecs: 2
logFlushIntervalSecs: 1
workDir: ${join(cwd, 'work')}
`,
    );
    const s = await kiln(['schedule', 'demo/ci/external', '--json', '--api', api, '--token', SCHEDULER_TOKEN]);
    const id = (JSON.parse(s.stdout) as Build).id;
    const proc = spawn('npm', ['--prefix', ROOT, 'run', 'kiln', '--', 'runner', '-c', 'runner.yaml'], {
      cwd,
      env: { ...process.env, LOG_LEVEL: 'info', KILN_RUNNER_TOKEN: RUNNER_TOKEN, KILN_TOKEN: SCHEDULER_TOKEN },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    runners.push({
      proc,
      output: () => out,
      waitFor: async () => undefined,
      stop: async () => {
        try {
          process.kill(-(proc.pid ?? 0), 'SIGKILL');
        } catch {
          // gone
        }
      },
    });
    try {
      const done = await until(
        'the external build to end',
        async () => {
          const b = await client.get(id);
          return b.status !== 'SCHEDULED' && b.status !== 'STARTED' && b;
        },
        120_000,
      );
      assert.equal(done.status, 'SUCCESS', out.slice(-3000));
      assert.ok(proxy.succeedCalls() >= 3, `succeed was called ${proxy.succeedCalls()} times`);
      const log = (await client.readLog(id)).data.toString();
      assert.match(log, /external build/);
      assert.match(log, /KILN_BUILD_ID=/);
      assert.ok(!log.includes(RUNNER_TOKEN), 'the runner token is in the build log');
      assert.ok(!log.includes(SCHEDULER_TOKEN), 'KILN_TOKEN is in the build log');
      assert.doesNotMatch(log, /KILN_RUNNER_TOKEN|KILN_TOKEN=/);
    } finally {
      try {
        process.kill(-(proc.pid ?? 0), 'SIGTERM');
      } catch {
        // already gone
      }
    }
  });
});
