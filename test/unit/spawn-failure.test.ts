/**
 * A build command that cannot start says which command, in which folder, and why: missing, not
 * executable, a directory, a `#!` interpreter that does not exist, not on PATH, no such folder.
 * Real spawns, so the explanation is checked against what the system actually refused.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { explainSpawnFailure, runCommand } from '../../src/runner/processTree.ts';

describe('explainSpawnFailure', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-spawn-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const failure = async (argv0: string, cwd = dir, env: NodeJS.ProcessEnv = process.env) => {
    const exit = await runCommand([argv0], { cwd, env, onOutput: () => undefined }).exited;
    assert.equal(exit.kind, 'spawnFailed', `${argv0} should not start`);
    return explainSpawnFailure(argv0, cwd, env, exit.kind === 'spawnFailed' ? exit.message : '');
  };

  it('names a missing relative command and the folder it resolved against', async () => {
    const m = await failure('./build.sh');
    assert.match(m, new RegExp(`^cannot start \\./build\\.sh in ${dir}: ${dir}/build\\.sh does not exist`));
    assert.match(m, /relative command resolves against the build's working directory/);
    assert.match(m, /ENOENT/);
  });

  it('says when the file is not executable, or is a directory', async () => {
    writeFileSync(join(dir, 'plain.sh'), '#!/bin/sh\necho hi\n');
    chmodSync(join(dir, 'plain.sh'), 0o644);
    assert.match(await failure('./plain.sh'), /plain\.sh is not executable \(chmod \+x it/);
    mkdirSync(join(dir, 'sub'));
    assert.match(await failure('./sub'), /sub is a directory/);
  });

  it("says when a script's #! interpreter is missing (ENOENT for a file that exists)", async () => {
    writeFileSync(join(dir, 'odd.sh'), '#!/no/such/interpreter\necho hi\n', { mode: 0o755 });
    assert.match(await failure('./odd.sh'), /its interpreter \/no\/such\/interpreter .* does not exist/);
  });

  it('says when a bare name is not on PATH, and when the folder itself is missing', async () => {
    const m = await failure('kiln-no-such-tool', dir, { ...process.env, PATH: '/usr/bin:/bin' });
    assert.match(m, /kiln-no-such-tool is not on PATH \(\/usr\/bin:\/bin\); use \.\/kiln-no-such-tool/);
    assert.match(await failure('./x', join(dir, 'gone')), /in \S+\/gone: the folder does not exist/);
  });
});
