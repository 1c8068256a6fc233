/**
 * scripts/setup.sh's Go check: one minimum version, the same one the README asks for, enforced
 * with the Go found on PATH (a fake `go` here, reporting the version under test).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';

const ROOT = resolve(import.meta.dirname, '../..');
const LIB = join(ROOT, 'scripts/lib.sh');

describe('setup scripts: the Go version', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-setup-go-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const min = execFileSync('bash', ['-c', `source ${LIB}; printf %s "$KILN_GO_MIN"`], { encoding: 'utf8' });

  /** Runs require_go with a `go` on PATH that reports `version`. */
  const requireGo = (version: string) => {
    const bin = join(dir, version);
    execFileSync('mkdir', ['-p', bin]);
    writeFileSync(join(bin, 'go'), `#!/bin/sh\n[ "$1 $2" = "env GOVERSION" ] && echo ${version}\n`);
    chmodSync(join(bin, 'go'), 0o755);
    return spawnSync('bash', ['-c', `source ${LIB}; require_go "or use TEMPORAL_ADDRESS"`], {
      encoding: 'utf8',
      env: { ...process.env, PATH: `${bin}:/usr/bin:/bin` },
    });
  };

  it('is the version the README asks for', () => {
    assert.match(min, /^1\.\d+$/);
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const asked = [...readme.matchAll(/Go ≥ (1\.\d+)/g)].map((m) => m[1]);
    assert.ok(asked.length > 0, 'the README names a Go version');
    assert.deepEqual([...new Set(asked)], [min]);
    assert.doesNotMatch(readFileSync(join(ROOT, 'scripts/setup.sh'), 'utf8'), /1\.22/);
  });

  it('refuses an older Go, naming the minimum and the fallback, and accepts the minimum and newer', () => {
    const minor = Number(min.split('.')[1]);
    const old = requireGo(`go1.${minor - 1}.9`);
    assert.notEqual(old.status, 0);
    assert.match(old.stderr, new RegExp(`Go >= ${min.replace('.', '\\.')} is needed .*found go1\\.${minor - 1}\\.9`));
    assert.match(old.stderr, /or use TEMPORAL_ADDRESS/);
    assert.equal(requireGo(`go1.${minor}.0`).status, 0);
    assert.equal(requireGo(`go1.${minor + 1}.3`).status, 0);
  });
});
