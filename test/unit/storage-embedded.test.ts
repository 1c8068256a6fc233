/**
 * What only the embedded backend has to get right: data in the data dir survives a restart, and a
 * second process opening the same data dir is refused with a message that says what to do (PGlite
 * corrupts a folder two processes write to).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Build } from '../../src/domain/build.ts';
import { newBuildId } from '../../src/domain/buildId.ts';
import { KilnError } from '../../src/domain/errors.ts';
import { openStorage } from '../../src/storage/open.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const builder = { project: 'demo', bucket: 'ci', builder: 'pass' };

function build(id: string, number: number): Build {
  const t = '2024-05-01T10:00:00.000Z';
  return {
    id,
    builder,
    number,
    status: 'SUCCESS',
    statusDetails: {},
    tags: ['buildset:commit/abc'],
    input: { properties: { p: 1 } },
    priority: 30,
    dimensions: [],
    createTime: t,
    updateTime: t,
    leaseGeneration: 1,
    leaseResets: 0,
    events: [],
    version: 3,
  };
}

/** Runs `kiln migrate` on `dataDir` as a separate process, as an operator would next to `kiln dev`. */
function kilnMigrate(dataDir: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/kiln.js'), 'migrate'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        KILN_CONFIG: join(ROOT, 'config/demo.yaml'),
        KILN_DATA_DIR: dataDir,
        LOG_LEVEL: 'silent',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('exit', (code) => done({ code, stderr }));
  });
}

void describe('embedded storage on disk', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-embedded-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  void it('keeps builds and build numbers across a reopen', async () => {
    const dataDir = join(dir, 'reopen');
    const first = await openStorage({ kind: 'embedded', dataDir });
    const r = await first.reserveBuild({ buildId: newBuildId(Date.now(), 1), builder, requestKey: 'demo/ci/req-1' });
    await first.recordBuild(build(r.buildId, r.number));
    await first.close();

    const second = await openStorage({ kind: 'embedded', dataDir });
    try {
      assert.deepEqual(await second.getBuild(r.buildId), build(r.buildId, r.number));
      assert.deepEqual(
        (await second.searchBuilds({ buildset: 'commit/abc' })).builds.map((b) => b.id),
        [r.buildId],
      );
      // The counter and the request key survived too.
      assert.equal((await second.reserveBuild({ buildId: newBuildId(Date.now(), 2), builder })).number, 2);
      const again = await second.reserveBuild({
        buildId: newBuildId(Date.now(), 3),
        builder,
        requestKey: 'demo/ci/req-1',
      });
      assert.deepEqual(again, { buildId: r.buildId, number: 1, created: false });
    } finally {
      await second.close();
    }
  });

  void it('refuses a second process on the same data dir, naming the holder and the way out', async () => {
    const dataDir = join(dir, 'locked');
    const held = await openStorage({ kind: 'embedded', dataDir });
    try {
      const other = await kilnMigrate(dataDir);
      assert.equal(other.code, 3, other.stderr); // UNAVAILABLE: try again once the other process stops
      assert.match(other.stderr, new RegExp(`in use by process ${process.pid}`));
      assert.match(other.stderr, /DATABASE_URL/);
      // Still ours, and still works.
      assert.equal((await held.reserveBuild({ buildId: newBuildId(Date.now(), 4), builder })).number, 1);
    } finally {
      await held.close();
    }
    // Once closed, another process may open it.
    const after = await kilnMigrate(dataDir);
    assert.equal(after.code, 0, after.stderr);
  });

  void it('refuses a second open of the same data dir in this process', async () => {
    const dataDir = join(dir, 'twice');
    const held = await openStorage({ kind: 'embedded', dataDir });
    try {
      await assert.rejects(openStorage({ kind: 'embedded', dataDir }), (e: unknown) => {
        assert.ok(e instanceof KilnError);
        assert.equal(e.code, 'UNAVAILABLE');
        assert.match(e.message, /already open in this process/);
        return true;
      });
    } finally {
      await held.close();
    }
    const reopened = await openStorage({ kind: 'embedded', dataDir });
    await reopened.close();
  });

  void it('takes over a lock left by a process that died', async () => {
    const dataDir = join(dir, 'stale');
    await (await openStorage({ kind: 'embedded', dataDir })).close();
    // A pid that was alive a moment ago and is gone now, as after a SIGKILL.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    writeFileSync(join(dataDir, 'storage', 'kiln.pid'), String(dead));
    const s = await openStorage({ kind: 'embedded', dataDir });
    await s.close();
  });
});
