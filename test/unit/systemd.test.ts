/**
 * The systemd units in deploy/systemd checked statically: each runs a real `kiln` command with
 * real options, reads an environment file, restarts by itself and logs to the journal, and the
 * example environment files set only variables Kiln reads or secrets a config may name.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { buildProgram } from '../../src/cli/program.ts';
import { envSchema } from '../../src/config/load.ts';

const DIR = resolve(import.meta.dirname, '../../deploy/systemd');

function unit(name: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of readFileSync(join(DIR, name), 'utf8').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const s = /^\[(\w+)\]$/.exec(line);
    if (s) {
      section = s[1] ?? '';
      continue;
    }
    const i = line.indexOf('=');
    assert.ok(i > 0, `${name}: not key=value: ${line}`);
    const key = `${section}.${line.slice(0, i)}`;
    out.set(key, [...(out.get(key) ?? []), line.slice(i + 1)]);
  }
  return out;
}

describe('systemd units', () => {
  for (const [file, command] of [
    ['kiln-api.service', 'api'],
    ['kiln-worker.service', 'worker'],
    ['kiln-runner.service', 'runner'],
  ] as const) {
    it(`${file} runs \`kiln ${command}\`, restarts, logs to the journal`, () => {
      const u = unit(file);
      const exec = (u.get('Service.ExecStart')?.[0] ?? '').split(/\s+/);
      assert.equal(exec[0], '/usr/bin/node');
      assert.equal(exec[1], '/opt/kiln/bin/kiln.js');
      assert.equal(exec[2], command);
      const cmd = buildProgram().commands.find((c) => c.name() === command);
      assert.ok(cmd, `kiln ${command} exists`);
      const flags = exec.slice(3).filter((a) => a.startsWith('-'));
      for (const f of flags)
        assert.ok(
          cmd.options.some((o) => o.short === f || o.long === f),
          `kiln ${command} ${f}`,
        );
      assert.equal(u.get('Service.Restart')?.[0], 'always');
      assert.ok(u.get('Service.EnvironmentFile')?.[0]?.startsWith('/etc/kiln/'));
      assert.equal(u.get('Service.StandardOutput')?.[0], 'journal');
      assert.equal(u.get('Service.StandardError')?.[0], 'journal');
      assert.equal(u.get('Install.WantedBy')?.[0], 'multi-user.target');
      assert.equal(u.get('Service.KillSignal')?.[0], 'SIGTERM', 'SIGTERM is what Kiln shuts down cleanly on');
    });
  }

  it('the example environment files set variables Kiln reads, tokens and secrets', () => {
    const known = new Set(Object.keys(envSchema.shape));
    for (const f of ['kiln.env.example', 'kiln-runner.env.example']) {
      for (const line of readFileSync(join(DIR, f), 'utf8').split('\n')) {
        if (!line.trim() || line.startsWith('#')) continue;
        const key = line.split('=')[0] ?? '';
        assert.ok(known.has(key) || /_(TOKEN|URL|PASSWORD|SECRET)$/.test(key), `${f}: ${key}`);
      }
    }
  });
});
