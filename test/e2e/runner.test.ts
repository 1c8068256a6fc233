/**
 * `kiln dev` as a user runs it (a subprocess with its own config, data dir and ports), builds
 * scheduled through the CLI and run by real runners: a passing build with its log, a failing one,
 * a runner SIGKILLed mid-build whose lease expires so a second runner finishes the build, a
 * canceled build whose process tree is gone long before any heartbeat (the lease watch), real
 * commits of a git repository served over HTTP checked out and built by `kiln runner` (the
 * README's `./build.sh`), and a fixed config whose new command runs after `kiln dev` restarts.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { KilnClient } from '../../src/client/kilnClient.ts';
import { type Build } from '../../src/domain/build.ts';
import { groupAlive } from '../../src/runner/processTree.ts';
import { git, type GitHttpServer, makeRepo, startGitHttpServer } from '../support/gitRepos.ts';
import { freePort, kiln, type KilnProcess, startKiln } from '../support/kilnDev.ts';

/**
 * The dev runner's heartbeat interval in this test: far longer than the test, so a canceled build
 * that stops can only have been stopped by the lease watch, not by a refused heartbeat.
 */
const HEARTBEAT_SECS = 900;

const CHROMIUM = '/usr/bin/chromium';
/** The Temporal UI's workflow list columns (its localStorage entry) with Kiln's two added, as the README says. */
const UI_COLUMNS = JSON.stringify({
  default: [
    { label: 'Status', pinned: true },
    { label: 'Workflow ID', pinned: true },
    { label: 'KilnStatus', pinned: false },
    { label: 'KilnBuilder', pinned: false },
    { label: 'Type', pinned: false },
    { label: 'Start', pinned: false },
    { label: 'End', pinned: false },
  ],
});

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

describe('kiln dev with runners, end to end', () => {
  let dir: string;
  let pidDir: string;
  let api: string;
  let dev: KilnProcess;
  let client: KilnClient;
  const runners: KilnProcess[] = [];
  let gitHttp: GitHttpServer;
  let ports = { apiPort: 0, tPort: 0, uiPort: 0 };
  /** Builds the Temporal UI test looks at. */
  const shown = { passed: '', failed: '' };
  /** Commits of the served repository: v1 and v2 on main, and a Gerrit patch set on no branch. */
  const commits = { v1: '', v2: '', patchset: '' };
  const kilnYaml = (versioned: string) => `
dataDir: ${join(dir, 'data')}
api: { host: 127.0.0.1, port: ${ports.apiPort} }
temporal: { taskQueue: e2e-runner, devServer: { port: ${ports.tPort}, uiPort: ${ports.uiPort} } }
devRunner:
  name: dev-runner
  serve: [{ bucket: e2e/ci, builders: [pass, fail, sleepy] }]
  dimensions: []
  peekIntervalSecs: 1
  leaseDurationSecs: 1800
  heartbeatIntervalSecs: ${HEARTBEAT_SECS}
  logFlushIntervalSecs: 1
  killTimeoutSecs: 1
projects:
  - name: e2e
    buckets:
      - name: ci
        builders:
          - name: pass
            command: ["sh", "-c", "echo hello from $KILN_BUILDER number $KILN_BUILD_NUMBER; cat \\"$KILN_PROPERTIES_FILE\\"; echo; echo all tests passed"]
          - name: fail
            command: ["sh", "-c", "echo running tests; echo '1 test failed' >&2; exit 3"]
          - name: sleepy
            maxLeaseDurationSecs: 3600
            command: ["sh", "-c", "echo $$ > \\"$PIDDIR/$KILN_BUILD_ID\\"; echo sleeping; sleep 300 & wait"]
          - name: slow
            dimensions: ["pool:external"]
            leaseDurationSecs: 4
            maxLeaseResets: 1
            command: ["sh", "-c", "echo $$ >> \\"$PIDDIR/$KILN_BUILD_ID\\"; echo step 1 on $KILN_BUILD_ID; sleep 6; echo slow build finished"]
          - name: versioned
            dimensions: ["pool:external"]
            command: ["sh", "-c", "echo config says ${versioned}"]
      - name: src
        builders:
          - name: core
            dimensions: ["pool:src"]
            checkout: { repo: "${gitHttp.url}/core.git", ref: main }
            command: ["./build.sh", "--release"]
          - name: broken
            dimensions: ["pool:src"]
            checkout: { repo: "${gitHttp.url}/core.git" }
            command: ["./missing.sh"]
`;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-e2e-runner-'));
    pidDir = join(dir, 'pids');
    mkdirSync(pidDir);
    const repo = makeRepo(join(dir, 'git'), 'core');
    const buildSh = (v: string) =>
      `#!/bin/sh\necho "building $(git rev-parse HEAD) ($KILN_REVISION of $KILN_REF) args: $*"\necho "source says ${v}"\ntest "$PWD" = "$KILN_CHECKOUT_DIR" && echo "in the checkout"\n`;
    commits.v1 = repo.commit('v1', { 'build.sh': buildSh('v1') }, { executable: ['build.sh'] });
    commits.v2 = repo.commit('v2', { 'build.sh': buildSh('v2') }, { executable: ['build.sh'] });
    repo.push(commits.v2, 'refs/heads/main');
    git(repo.work, 'checkout', '--quiet', '--detach', commits.v1);
    commits.patchset = repo.commit(
      'change 375219 patch set 1',
      { 'build.sh': buildSh('patch set 1') },
      { executable: ['build.sh'] },
    );
    repo.push(commits.patchset, 'refs/changes/19/375219/1');
    gitHttp = await startGitHttpServer(join(dir, 'git'));
    const [apiPort, tPort, uiPort] = [await freePort(), await freePort(), await freePort()];
    api = `http://127.0.0.1:${apiPort}`;
    client = new KilnClient({ baseUrl: api });
    ports = { apiPort, tPort, uiPort };
    writeFileSync(join(dir, 'kiln.yaml'), kilnYaml('v1'));
    dev = startKiln(['dev', '-c', join(dir, 'kiln.yaml')], { PIDDIR: pidDir });
    await dev.waitFor('Kiln is running', 180_000);
  });

  after(async () => {
    for (const r of runners) await r.stop('SIGKILL');
    await dev?.stop('SIGTERM');
    await gitHttp?.close();
    // Any build command a failed test left running, by the process groups the commands recorded.
    if (pidDir && existsSync(pidDir)) {
      for (const f of readdirSync(pidDir)) {
        for (const pid of readFileSync(join(pidDir, f), 'utf8').split('\n').filter(Boolean)) {
          try {
            process.kill(-Number(pid), 'SIGKILL');
          } catch {
            // gone
          }
        }
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const cli = (...args: string[]) => kiln([...args, '--api', api]);

  it('runs a passing build to SUCCESS through `kiln schedule --wait`, and its log is retrievable', async () => {
    const r = await cli('schedule', 'e2e/ci/pass', '--wait', '-p', 'answer=42');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /SCHEDULED/);
    assert.match(r.stdout, /e2e\/ci\/pass #1 STARTED/);
    assert.match(r.stdout, /e2e\/ci\/pass #1 SUCCESS/);
    const id = /^build (\d+)$/m.exec(r.stdout)?.[1];
    assert.ok(id, r.stdout);
    shown.passed = id;
    const built = await client.get(id);
    assert.ok(built.events.some((e) => e.kind === 'LEASED' && e.message.includes('dev-runner')));
    const log = await cli('log', id);
    assert.equal(log.code, 0, log.stderr);
    assert.match(log.stdout, /hello from e2e\/ci\/pass number 1/);
    assert.match(log.stdout, /"answer": 42/);
    assert.match(log.stdout, /all tests passed/);
    const raw = await fetch(`${api}/api/v1/builds/${id}/log`);
    assert.equal(raw.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(raw.headers.get('x-kiln-log-complete'), 'true');
  });

  it('ends a failing build FAILURE, and `schedule --wait` exits non-zero', async () => {
    const r = await cli('schedule', 'e2e/ci/fail', '--wait');
    assert.notEqual(r.code, 0);
    assert.match(r.stdout, /e2e\/ci\/fail #1 FAILURE: the command exited with code 3/);
    const id = /^build (\d+)$/m.exec(r.stdout)?.[1] ?? '';
    shown.failed = id;
    assert.equal((await client.get(id)).status, 'FAILURE');
    const log = await cli('log', id);
    assert.match(log.stdout, /1 test failed/);
  });

  it(
    'shows a failed build apart from a passed one in the Temporal UI, with the columns the README sets up',
    { skip: existsSync(CHROMIUM) ? false : `no ${CHROMIUM} (scripts/setup-chromium.sh installs it)` },
    async () => {
      assert.ok(shown.passed && shown.failed, 'runs after the passing and failing builds');
      const { chromium } = await import('playwright-core');
      const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
      try {
        const page = await browser.newPage();
        const ui = `http://127.0.0.1:${ports.uiPort}/namespaces/default/workflows`;
        await page.goto(ui);
        // What "Configure columns" (the gear under the list) stores once KilnStatus and KilnBuilder are added.
        await page.evaluate(`localStorage.setItem('namespace-workflow-table-columns', ${JSON.stringify(UI_COLUMNS)})`);
        const rowText = async (id: string) => {
          await page.goto(`${ui}?query=${encodeURIComponent(`WorkflowId = 'build/${id}'`)}`);
          const row = page.locator('tr', { hasText: `build/${id}` });
          await row.waitFor({ timeout: 60_000 });
          return row.innerText();
        };
        const passedRow = await rowText(shown.passed);
        const failedRow = await rowText(shown.failed);
        // Both are Completed to Temporal; the KilnStatus column tells them apart.
        assert.match(passedRow, /Completed[\s\S]*SUCCESS[\s\S]*pass/);
        assert.match(failedRow, /Completed[\s\S]*FAILURE[\s\S]*fail/);
        // The build's page, tab "User Metadata": the current details the workflow set when it ended
        // (the UI renders each markdown field in a frame of its own).
        await page.goto(`${ui}/${encodeURIComponent(`build/${shown.failed}`)}`);
        await page.getByText('User Metadata').first().click();
        await until('the ended details on the build page', async () => {
          for (const f of page.frames()) {
            const text = await f
              .locator('body')
              .innerText()
              .catch(() => '');
            if (text.includes('❌ FAILURE') && text.includes('exited with code 3')) return true;
          }
          return false;
        });
      } finally {
        await browser.close();
      }
    },
  );

  it("stops a canceled build's process tree within seconds, long before any heartbeat, and its log says so", async (t) => {
    const s = await cli('schedule', 'e2e/ci/sleepy', '--json');
    const id = (JSON.parse(s.stdout) as Build).id;
    const pidFile = join(pidDir, id);
    const pgid = await until(
      'the sleepy command to start',
      async () => existsSync(pidFile) && Number.parseInt(readFileSync(pidFile, 'utf8'), 10),
    );
    assert.ok(groupAlive(pgid));
    // Through the API, so the figure below is the cancel's, not the CLI's start-up.
    const canceled = await client.cancel(id, 'no longer needed');
    const canceledAt = Date.now();
    assert.equal(canceled.status, 'CANCELED');
    let goneAt = 0;
    const gone = (async () => {
      // The heartbeat interval is 900 s: only the lease watch can stop the tree this soon.
      while (groupAlive(pgid)) {
        if (Date.now() - canceledAt > 30_000) throw new Error('the process tree outlived the cancel by 30 s');
        await sleep(50);
      }
      goneAt = Date.now();
    })();
    // Right after the cancel: either the runner already finished the log with its note, or the CLI
    // says the log is incomplete and why. Never a cut-off log with no word of the cancel.
    const early = await cli('log', id);
    assert.equal(early.code, 0, early.stderr);
    assert.match(early.stdout + early.stderr, /CANCELED/);
    await gone;
    t.diagnostic(`process tree gone ${goneAt - canceledAt} ms after the cancel answered`);
    const log = await until('the canceled build log to be complete', async () => {
      const l = await client.readLog(id);
      return l.complete && l;
    });
    assert.match(log.data.toString(), /sleeping/);
    assert.match(log.data.toString(), /stopped the command: the build ended CANCELED/);
    assert.equal((await client.get(id)).status, 'CANCELED');
  });

  it('lets a second runner finish a build after the first is SIGKILLed and its lease expires', async () => {
    const runnerYaml = (name: string) => {
      const f = join(dir, `${name}.yaml`);
      writeFileSync(
        f,
        `api: ${api}
name: ${name}
serve: [{ bucket: e2e/ci, builders: [slow] }]
dimensions: ["pool:external", "os:Linux"]
peekIntervalSecs: 1
heartbeatIntervalSecs: 1
logFlushIntervalSecs: 1
workDir: ${join(dir, name)}
`,
      );
      return f;
    };
    const s = await cli('schedule', 'e2e/ci/slow', '--json');
    const id = (JSON.parse(s.stdout) as Build).id;
    // The dev runner does not cover pool:external: it never takes this build.
    await sleep(2500);
    assert.equal((await client.get(id)).status, 'SCHEDULED');

    const a = startKiln(['runner', '-c', runnerYaml('runner-a')], { PIDDIR: pidDir });
    runners.push(a);
    await until('runner-a to start the build', async () => {
      const b = await client.get(id);
      return b.status === 'STARTED' && b.leaseHolder === 'runner-a';
    });
    await until('runner-a to upload some log', async () =>
      (await client.readLog(id)).data.toString().includes('step 1'),
    );
    await a.stop('SIGKILL');
    // A SIGKILLed runner cannot stop its command: the orphan would run on; end it here.
    const orphan = Number.parseInt(readFileSync(join(pidDir, id), 'utf8').split('\n')[0] ?? '', 10);
    try {
      process.kill(-orphan, 'SIGKILL');
    } catch {
      // already gone
    }

    await until('the lease to expire and the build to return to SCHEDULED', async () => {
      const b = await client.get(id);
      return b.status === 'SCHEDULED' && b.leaseResets === 1 && b;
    });
    const b2 = startKiln(['runner', '-c', runnerYaml('runner-b')], { PIDDIR: pidDir });
    runners.push(b2);
    const done = await until('runner-b to finish the build', async () => {
      const b = await client.get(id);
      return b.status !== 'SCHEDULED' && b.status !== 'STARTED' && b;
    });
    assert.equal(done.status, 'SUCCESS');
    assert.equal(done.leaseResets, 1);
    assert.ok(done.events.some((e) => e.kind === 'LEASE_EXPIRED' && e.message.includes('runner-a')));
    assert.ok(done.events.some((e) => e.kind === 'LEASED' && e.message.includes('runner-b')));
    const log = await cli('log', id);
    assert.match(log.stdout, /runner-b/);
    assert.match(log.stdout, /slow build finished/);
    // The first attempt's log is kept too.
    const first = await client.readLog(id, { attempt: 1 });
    assert.match(first.data.toString(), /runner-a/);
    await b2.stop('SIGTERM');
  });
  it('checks out real commits of a repository served over HTTP and builds them with `kiln runner` (./build.sh)', async () => {
    const f = join(dir, 'runner-src.yaml');
    writeFileSync(
      f,
      `api: ${api}
name: runner-src
serve: [{ bucket: e2e/src }]
dimensions: ["pool:src"]
peekIntervalSecs: 1
logFlushIntervalSecs: 1
workDir: ${join(dir, 'runner-src')}
`,
    );
    const r = startKiln(['runner', '-c', f]);
    runners.push(r);
    const build = async (...props: string[]) => {
      const args = props.flatMap((p) => ['-p', p]);
      const res = await cli('schedule', 'e2e/src/core', '--wait', ...args);
      const id = /^build (\d+)$/m.exec(res.stdout)?.[1] ?? '';
      assert.ok(id, res.stdout + res.stderr);
      return { res, id, log: (await cli('log', id)).stdout, build: await client.get(id) };
    };

    // A commit pinned by the build's input (Buildbot's `revision`), on the builder's branch.
    const v1 = await build(`revision=${commits.v1}`);
    assert.equal(v1.res.code, 0, v1.res.stdout + v1.log);
    assert.match(v1.log, new RegExp(`building ${commits.v1} \\(${commits.v1} of refs/heads/main\\) args: --release`));
    assert.match(v1.log, /source says v1/);
    assert.match(v1.log, /in the checkout/);
    // A Gerrit patch set ref, as a change verification's builds carry it: a commit on no branch.
    const ps = await build('event.patchSet.ref=refs/changes/19/375219/1', `revision=${commits.patchset}`);
    assert.equal(ps.res.code, 0, ps.res.stdout + ps.log);
    assert.match(ps.log, /source says patch set 1/);
    assert.match(ps.log, /git fetch .*refs\/changes\/19\/375219\/1/);
    // No ref or commit in the input: the builder's checkout.ref, at its tip.
    const tip = await build();
    assert.equal(tip.res.code, 0, tip.res.stdout + tip.log);
    assert.match(tip.log, new RegExp(`building ${commits.v2} `));
    assert.match(tip.log, /source says v2/);

    // A commit the repository does not have: the checkout fails the build INFRA_FAILURE, saying why.
    const missing = await build(`revision=${'e'.repeat(40)}`);
    assert.notEqual(missing.res.code, 0);
    assert.equal(missing.build.status, 'INFRA_FAILURE');
    assert.match(missing.build.summaryMarkdown ?? '', /commit e{40} is neither on refs\/heads\/main/);

    // A command that cannot start says which command, in which folder, and why.
    const broken = await cli('schedule', 'e2e/src/broken', '--wait');
    assert.notEqual(broken.code, 0);
    const brokenId = /^build (\d+)$/m.exec(broken.stdout)?.[1] ?? '';
    const b = await client.get(brokenId);
    assert.equal(b.status, 'INFRA_FAILURE');
    assert.match(b.summaryMarkdown ?? '', /cannot start \.\/missing\.sh in \S+\/src: \S+missing\.sh does not exist/);

    // One cache for the repository, reused by every build; build folders are removed afterwards.
    const cacheRepos = readdirSync(join(dir, 'runner-src', 'git-cache')).filter((n) => n.endsWith('.git'));
    assert.equal(cacheRepos.length, 1, cacheRepos.join(', '));
    await until(
      'build folders to be removed after their builds',
      async () => readdirSync(join(dir, 'runner-src')).filter((n) => /^\d+-\d+$/.test(n)).length === 0,
      30_000,
    );
    await r.stop('SIGTERM');
  });

  it("runs a fixed builder config's new command after `kiln dev` restarts, on a runner that kept running", async () => {
    const f = join(dir, 'runner-v.yaml');
    writeFileSync(
      f,
      `api: ${api}
name: runner-v
serve: [{ bucket: e2e/ci, builders: [versioned] }]
dimensions: ["pool:external"]
peekIntervalSecs: 1
logFlushIntervalSecs: 1
workDir: ${join(dir, 'runner-v')}
`,
    );
    const r = startKiln(['runner', '-c', f]);
    runners.push(r);
    const run = async () => {
      const res = await cli('schedule', 'e2e/ci/versioned', '--wait');
      assert.equal(res.code, 0, res.stdout + res.stderr);
      const id = /^build (\d+)$/m.exec(res.stdout)?.[1] ?? '';
      return (await cli('log', id)).stdout;
    };
    assert.match(await run(), /config says v1/);
    // Fix the config and restart Kiln; the runner goes on (it retries while the API is down).
    await dev.stop('SIGTERM');
    writeFileSync(join(dir, 'kiln.yaml'), kilnYaml('v2'));
    dev = startKiln(['dev', '-c', join(dir, 'kiln.yaml')], { PIDDIR: pidDir });
    await dev.waitFor('Kiln is running', 180_000);
    assert.match(await run(), /config says v2/);
    await r.stop('SIGTERM');
  });
});
