/**
 * bin/kiln.js picks what to run: the build in dist/ when there is one and no source is newer, else the TypeScript
 * sources through tsx (saying why when a build is there but stale). Checked on a copy of bin/kiln.js in a scratch
 * package whose two entry points only print which one ran.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';

const ROOT = resolve(import.meta.dirname, '../..');
// Inside the repo so `tsx` resolves from the scratch package; node_modules/.cache is ignored everywhere.
const pkg = join(ROOT, 'node_modules/.cache', `kiln-bin-test-${process.pid}`);

function kiln(env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((done, fail) =>
    execFile(
      process.execPath,
      [join(pkg, 'bin/kiln.js')],
      { env: { PATH: process.env.PATH, ...env }, timeout: 60_000 },
      (err, stdout, stderr) => (err ? fail(new Error(`${err.message}\n${stderr}`)) : done({ stdout, stderr })),
    ),
  );
}

function writeBuild(builtAt: number): void {
  mkdirSync(join(pkg, 'dist/src/cli'), { recursive: true });
  writeFileSync(join(pkg, 'dist/package.json'), '{"type":"module"}\n');
  writeFileSync(join(pkg, 'dist/src/cli/main.js'), "console.log('ran dist');\n");
  writeFileSync(join(pkg, 'dist/build-info.json'), JSON.stringify({ builtAt, inputs: ['src', 'package-lock.json'] }));
}

void describe('bin/kiln.js', () => {
  const source = join(pkg, 'src/cli/main.ts');
  before(() => {
    rmSync(pkg, { recursive: true, force: true });
    mkdirSync(join(pkg, 'bin'), { recursive: true });
    mkdirSync(join(pkg, 'src/cli'), { recursive: true });
    copyFileSync(join(ROOT, 'bin/kiln.js'), join(pkg, 'bin/kiln.js'));
    writeFileSync(join(pkg, 'package.json'), '{"name":"kiln","type":"module"}\n');
    writeFileSync(source, "const from: string = 'sources';\nconsole.log(`ran ${from}`);\n");
    writeFileSync(join(pkg, 'package-lock.json'), '{}\n');
    const old = new Date(Date.now() - 3600_000);
    utimesSync(source, old, old);
    utimesSync(join(pkg, 'package-lock.json'), old, old);
  });
  after(() => rmSync(pkg, { recursive: true, force: true }));

  void it('runs the sources through tsx when nothing is built, without a word about it', async () => {
    const r = await kiln();
    assert.equal(r.stdout.trim(), 'ran sources');
    assert.equal(r.stderr, '');
  });

  void it('runs the build when no source is newer than it', async () => {
    writeBuild(Date.now() - 60_000);
    assert.equal((await kiln()).stdout.trim(), 'ran dist');
  });

  void it('runs the sources, and names the changed file, when a source changed after the build', async () => {
    writeBuild(Date.now() - 60_000);
    const now = new Date();
    utimesSync(source, now, now);
    const r = await kiln();
    assert.equal(r.stdout.trim(), 'ran sources');
    assert.match(r.stderr, /src\/cli\/main\.ts changed after the build in dist\//);
  });

  void it('treats a changed package-lock.json (new dependencies in the workflow bundle) as stale', async () => {
    writeBuild(Date.now() - 60_000);
    const old = new Date(Date.now() - 3600_000);
    utimesSync(source, old, old);
    const now = new Date();
    utimesSync(join(pkg, 'package-lock.json'), now, now);
    assert.equal((await kiln()).stdout.trim(), 'ran sources');
    utimesSync(join(pkg, 'package-lock.json'), old, old);
    assert.equal((await kiln()).stdout.trim(), 'ran dist');
  });

  void it('obeys KILN_RUN_FROM', async () => {
    writeBuild(Date.now() - 60_000);
    const now = new Date();
    utimesSync(source, now, now); // stale
    assert.equal((await kiln({ KILN_RUN_FROM: 'dist' })).stdout.trim(), 'ran dist');
    const r = await kiln({ KILN_RUN_FROM: 'sources' });
    assert.equal(r.stdout.trim(), 'ran sources');
    assert.equal(r.stderr, '');
  });
});
