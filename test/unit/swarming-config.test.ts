/**
 * Swarming config at start: task template files resolved relative to the config file, and every bad
 * Swarming setting failing with a message that names the file and the key.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError, loadConfigFile } from '../../src/config/load.ts';

const TEMPLATE = {
  revision: 'r1',
  template: {
    task_slices: [
      { expiration_secs: '60', properties: { command: ['run', '${recipe}'], execution_timeout_secs: '60' } },
    ],
  },
};

const bucket = (builders: string, extra = '') => `
projects:
  - name: p
    buckets:
      - name: b
${extra}        swarming:
          hostname: swarm.example.org
          builder_defaults:
            dimensions: ["pool:ci"]
            recipe: { repository: "https://example.org/r" }
          builders:
${builders}`;

describe('Swarming config', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-swarming-config-'));
    mkdirSync(join(dir, 'tpl'));
    writeFileSync(join(dir, 'tpl/task.json'), JSON.stringify(TEMPLATE));
    writeFileSync(join(dir, 'tpl/broken.json'), '{"revision": "r", "template": {"task_slices": []}}');
    writeFileSync(join(dir, 'tpl/notjson.json'), '{');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Writes `yaml` as a config file and loads it. */
  const load = (yaml: string, name = 'kiln.yaml') => {
    writeFileSync(join(dir, name), yaml);
    return loadConfigFile(join(dir, name), { LOG_LEVEL: 'silent' });
  };
  const fails = (yaml: string, ...patterns: RegExp[]) => {
    assert.throws(
      () => load(yaml),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError, String(e));
        for (const p of patterns) assert.match(e.message, p);
        return true;
      },
    );
  };
  const service = (template = 'tpl/task.json', extra = '') =>
    `swarming:\n  taskTemplate: ${template}\n  syncIntervalSecs: 5\n${extra}`;

  it('loads templates relative to the config file', () => {
    const cfg = load(bucket('            - name: linux\n              recipe: { name: chromium }\n') + service());
    assert.equal(cfg.swarmingTemplates?.task_template.revision, 'r1');
    assert.equal(cfg.swarmingTemplates?.task_template_canary, undefined);
    assert.equal(cfg.swarming?.syncIntervalSecs, 5);
    assert.equal(cfg.projects[0]?.buckets[0]?.swarming?.task_template_canary_percentage, 10);
  });

  it('refuses a builder with no recipe name after merging, naming file and key', () => {
    fails(
      bucket('            - name: linux\n') + service(),
      /kiln\.yaml: projects\[0\]\.buckets\[0\]\.swarming\.builders\[0\] \(linux\)/,
      /no recipe\.name/,
    );
  });

  it('refuses bad or missing template files, naming the file and the config key', () => {
    const b = bucket('            - name: linux\n              recipe: { name: chromium }\n');
    fails(b + service('tpl/missing.json'), /tpl\/missing\.json/, /swarming\.taskTemplate/, /ENOENT/);
    fails(b + service('tpl/notjson.json'), /tpl\/notjson\.json/, /not valid JSON/);
    fails(b + service('tpl/broken.json'), /tpl\/broken\.json/, /template\.task_slices: must hold exactly one slice/);
    fails(
      b + service('tpl/task.json', '  taskTemplateCanary: tpl/broken.json\n'),
      /swarming\.taskTemplateCanary/,
      /broken\.json/,
    );
  });

  it('refuses a Swarming bucket without the service block, or with lease-mode builders', () => {
    fails(
      bucket('            - name: linux\n              recipe: { name: chromium }\n'),
      /swarming\.taskTemplate: required/,
    );
    fails(
      bucket(
        '            - name: linux\n              recipe: { name: chromium }\n',
        '        builders: [{ name: leased }]\n',
      ) + service(),
      /projects\[0\]\.buckets\[0\]\.builders/,
      /swarming\.builders/,
    );
  });

  it('refuses bad bucket fields with their keys', () => {
    fails(
      bucket(
        '            - name: linux\n              recipe: { name: chromium }\n              dimensions: ["nocolon"]\n',
      ) + service(),
      /projects\[0\]\.buckets\[0\]\.swarming\.builders\[0\]\.dimensions/,
    );
  });

  it('lists the placeholders left for Swarming once, and warns on one that looks like a typo', () => {
    writeFileSync(
      join(dir, 'tpl/passthrough.json'),
      JSON.stringify({
        revision: 'r',
        template: {
          task_slices: [
            {
              expiration_secs: '60',
              properties: {
                command: ['kitchen${EXECUTABLE_SUFFIX}', '${ISOLATED_OUTDIR}', '${EXECUTABLE_SUFFIX}', '$recipie'],
                execution_timeout_secs: '60',
                dimensions: [{ key: 'pool', value: 'p' }],
              },
            },
          ],
        },
      }),
    );
    const cfg = load(
      bucket('            - name: linux\n              recipe: { name: chromium }\n') + service('tpl/passthrough.json'),
    );
    const notices = cfg.notices ?? [];
    assert.equal(notices.length, 2, JSON.stringify(notices));
    assert.equal(notices[0]?.level, 'info');
    assert.match(notices[0]!.message, /passthrough\.json \(.*: swarming\.taskTemplate\)/);
    assert.match(notices[0]!.message, /\$\{EXECUTABLE_SUFFIX\}, \$\{ISOLATED_OUTDIR\}, \$\{recipie\}$/);
    assert.equal(notices[1]?.level, 'warn');
    assert.match(notices[1]!.message, /"recipie" at task_slices\[0\]\.properties\.command\[3\].*did you mean "recipe"/);
  });

  it('resolves notifyTokenEnv and refuses it when unset', () => {
    const b = bucket('            - name: linux\n              recipe: { name: chromium }\n');
    fails(b + service('tpl/task.json', '  notifyTokenEnv: KILN_TEST_UNSET_NOTIFY_TOKEN\n'), /swarming\.notifyTokenEnv/);
    process.env['KILN_TEST_NOTIFY_TOKEN'] = 'a-notify-token-long-enough';
    try {
      const cfg = load(b + service('tpl/task.json', '  notifyTokenEnv: KILN_TEST_NOTIFY_TOKEN\n'));
      assert.equal(cfg.swarming?.notifyToken, 'a-notify-token-long-enough');
    } finally {
      delete process.env['KILN_TEST_NOTIFY_TOKEN'];
    }
  });
});
