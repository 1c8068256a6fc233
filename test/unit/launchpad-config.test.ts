/**
 * Bad Launchpad config fails at start with the file and key: an unknown builder, a bad cron
 * expression, an unknown repository or target, a missing secret, and (once git can tell) a branch
 * that does not exist. An unreachable remote is not a config error.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { checkLaunchpadBranches, desiredSchedules } from '../../src/launchpad/reconcile.ts';
import { freePort } from '../support/processes.ts';
import { GitFixture } from '../support/git.ts';

const silent = pino({ level: 'silent' });
const env = { LOG_LEVEL: 'silent' as const };

const base = (extra: string, url = 'file:///nonexistent/lp.git') => `
projects:
  - name: launchpad
    buckets:
      - name: ci
        builders:
          - name: lp-devel
          - name: lp-db-devel
repositories:
  - name: launchpad
    url: ${url}
${extra}`;

function fails(yaml: string, pattern: RegExp): void {
  assert.throws(
    () => parseConfig(yaml, 'kiln.yaml', env),
    (e: unknown) => e instanceof ConfigError && pattern.test(e.message),
  );
}

describe('Launchpad config', () => {
  it('accepts a Launchpad-shaped config and turns it into schedules', () => {
    const cfg = parseConfig(
      base(`
schedulers:
  - { name: lp-master, kind: on-commit, repo: launchpad, branch: master, builders: [launchpad/ci/lp-devel] }
  - { name: nightly, kind: periodic, cron: "0 3 * * *", builders: [launchpad/ci/lp-devel], overlap: buffer-one }
promotions:
  - { repo: launchpad, from: master, to: stable, when: [launchpad/ci/lp-devel] }
merges:
  - { name: stable-to-db-devel, repo: launchpad, from: stable, to: db-devel, every: 6h }
`),
      'kiln.yaml',
      env,
    );
    const s = desiredSchedules(cfg, 'kiln');
    assert.deepEqual([...s.keys()].sort(), ['kiln/kiln/merge/stable-to-db-devel', 'kiln/kiln/schedule/nightly']);
    assert.deepEqual(s.get('kiln/kiln/merge/stable-to-db-devel')?.spec, { intervals: [{ every: 6 * 3600_000 }] });
    assert.deepEqual(s.get('kiln/kiln/schedule/nightly')?.spec, { cronExpressions: ['0 3 * * *'], timezone: 'UTC' });
    assert.equal(s.get('kiln/kiln/schedule/nightly')?.policies?.overlap, 'BUFFER_ONE');
  });

  it('names the file and key of an unknown builder, a bad cron, an unknown repository or target', () => {
    fails(
      base(`
promotions:
  - { repo: launchpad, from: master, to: stable, when: [launchpad/ci/lp-devel, launchpad/ci/nope] }
`),
      /^kiln\.yaml: promotions\[0\]\.when\[1\]: builder launchpad\/ci\/nope is not configured/m,
    );
    fails(
      base(`
schedulers:
  - { name: nightly, kind: periodic, cron: "61 3 * * *", builders: [launchpad/ci/lp-devel] }
`),
      /^kiln\.yaml: schedulers\[0\]\.cron: a 5-field cron expression/m,
    );
    fails(
      base(`
schedulers:
  - { name: nightly, kind: periodic, builders: [launchpad/ci/lp-devel] }
`),
      /schedulers\[0\]: give exactly one of cron/,
    );
    fails(
      base(`
merges:
  - { name: m, repo: launchpad, from: stable, to: db-devel, every: 6 hours }
`),
      /^kiln\.yaml: merges\[0\]\.every: a duration/m,
    );
    fails(
      base(`
merges:
  - { name: m, repo: lp, from: stable, to: db-devel, every: 6h }
`),
      /^kiln\.yaml: merges\[0\]\.repo: repository lp is not configured/m,
    );
    fails(
      base(`
notifications:
  targets: [{ name: chat, kind: mattermost, url: "https://chat.example.org/hooks/x" }]
  rules: [{ project: launchpad, on: [failure], targets: [chat, irc] }]
`),
      /notifications\.rules\[0\]\.targets\[1\]: target irc is not configured/,
    );
    fails(
      base(`
schedulers:
  - { name: a, kind: on-commit, repo: launchpad, branch: master, builders: [launchpad/ci/lp-devel] }
  - { name: b, kind: on-commit, repo: launchpad, branch: master, builders: [launchpad/ci/lp-db-devel] }
`),
      /schedulers\[1\]\.branch: another on-commit scheduler already polls launchpad master/,
    );
  });

  it('names the variable of a missing secret', () => {
    delete process.env.KILN_TEST_NO_SUCH_VAR;
    fails(
      base(`
notifications:
  targets: [{ name: chat, kind: mattermost, urlEnv: KILN_TEST_NO_SUCH_VAR }]
`),
      /^kiln\.yaml: notifications\.targets\[0\]\.urlEnv: environment variable KILN_TEST_NO_SUCH_VAR is not set$/,
    );
  });

  describe('branches', () => {
    let fx: GitFixture;
    before(() => {
      fx = new GitFixture('lp');
      fx.commit('master', 'init');
      fx.branch('stable', 'master');
    });
    after(() => fx.cleanup());

    it('a branch that does not exist is a config error naming the key; an unreachable remote is not', async () => {
      const ok = parseConfig(
        base(`promotions:\n  - { repo: launchpad, from: master, to: stable, when: [launchpad/ci/lp-devel] }\n`, fx.url),
        'kiln.yaml',
        env,
      );
      await checkLaunchpadBranches(ok, silent);
      const bad = parseConfig(
        base(
          `promotions:\n  - { repo: launchpad, from: master, to: db-stable, when: [launchpad/ci/lp-devel] }\n`,
          fx.url,
        ),
        'kiln.yaml',
        env,
      );
      await assert.rejects(
        checkLaunchpadBranches(bad, silent),
        (e: unknown) =>
          e instanceof ConfigError &&
          /^kiln\.yaml: promotions\[0\]\.to: branch db-stable does not exist in launchpad \(file:/.test(e.message),
      );
      const down = parseConfig(
        base(
          `promotions:\n  - { repo: launchpad, from: master, to: db-stable, when: [launchpad/ci/lp-devel] }\n`,
          `http://127.0.0.1:${await freePort()}/lp.git`,
        ),
        'kiln.yaml',
        env,
      );
      await checkLaunchpadBranches(down, silent);
    });
  });
});
