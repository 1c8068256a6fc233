/**
 * The `gerrit` block at start: a project's verification builders may be lease-mode builders, Swarming builders, or
 * a mix; a builder that does not exist stops Kiln with the file and the key.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, loadConfigFile, Registry } from '../../src/config/load.ts';
import { parseBuilderPath } from '../../src/domain/gerrit/projectConfig.ts';
import { resolveGerritSettings, verificationBuilderKind } from '../../src/gerrit/settings.ts';

const dir = mkdtempSync(join(tmpdir(), 'kiln-gerrit-settings-'));
writeFileSync(
  join(dir, 'task.json'),
  JSON.stringify({
    revision: 'r1',
    template: {
      priority: '30',
      task_slices: [{ expiration_secs: '3600', properties: { command: ['kitchen', '$recipe', '$properties_json'] } }],
    },
  }),
);

function configWith(builders: string[]): string {
  return `
projects:
  - name: infra
    buckets:
      - name: luci.infra.try
        swarming:
          hostname: chromium-swarm.appspot.com
          builder_defaults:
            dimensions: ["pool:Chrome"]
            recipe: { repository: "https://chromium.googlesource.com/infra/infra" }
            execution_timeout_secs: 1800
          builders:
            - { name: "Infra Win Tester", dimensions: ["os:Windows-7-SP1"], recipe: { name: infra_repo_trybot } }
      - name: tinderbox
        builders:
          - name: LINUX
swarming:
  taskTemplate: task.json
gerrit:
  hosts: [{ host: chromium-review.googlesource.com }]
  eventSecret: a-secret-long-enough
  projects:
    - { host: chromium-review.googlesource.com, project: infra/infra, trigger: commit-queue, builders: ${JSON.stringify(builders)} }
`;
}

function load(builders: string[]) {
  const file = join(dir, `kiln-${builders.length}-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, configWith(builders));
  const config = loadConfigFile(file, { LOG_LEVEL: 'silent' });
  const registry = new Registry(config);
  return { file, registry, settings: () => resolveGerritSettings(config.gerrit, registry, {}) };
}

void describe('gerrit settings: verification builders', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  void it('accepts Swarming builders and lease-mode builders in one project', () => {
    const { registry, settings } = load(['infra/luci.infra.try/Infra Win Tester', 'infra/tinderbox/LINUX']);
    assert.deepEqual(settings()?.projects[0]?.builders, [
      'infra/luci.infra.try/Infra Win Tester',
      'infra/tinderbox/LINUX',
    ]);
    assert.equal(
      verificationBuilderKind(registry, parseBuilderPath('infra/luci.infra.try/Infra Win Tester')),
      'swarming',
    );
    assert.equal(verificationBuilderKind(registry, parseBuilderPath('infra/tinderbox/LINUX')), 'lease');
  });

  void it('refuses a builder that does not exist, naming the file, the key and the nearest builder', () => {
    const { file, settings } = load(['infra/luci.infra.try/Infra Win Testr']);
    assert.throws(settings, (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.equal(
        e.message,
        `${file}: gerrit.projects[0].builders[0]: builder infra/luci.infra.try/Infra Win Testr is not configured ` +
          '(neither a lease-mode builder nor a Swarming builder); did you mean infra/luci.infra.try/Infra Win Tester?',
      );
      return true;
    });
  });
});
