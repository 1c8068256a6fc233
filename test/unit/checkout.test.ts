/**
 * The runner's checkout with the real `git`: what a build's input selects (commit, Gerrit patch set
 * ref, branch), fetching into the per-repository cache and checking out from it, over a path and
 * over smart HTTP (`git http-backend` on loopback), concurrent builds of one repository from two
 * runners sharing the cache, a lock file left by a killed git, and inputs that must be refused.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  CheckoutError,
  CheckoutInputError,
  CheckoutStopped,
  checkoutTarget,
  GitCheckout,
  gerritPatchsetRef,
  redactUrl,
} from '../../src/runner/checkout.ts';
import { git, type GitHttpServer, makeRepo, startGitHttpServer, tempRoot, type TestRepo } from '../support/gitRepos.ts';

const build = (properties: Record<string, unknown>, gerritChanges?: { change: number; patchset: number }[]) => ({
  input: {
    properties,
    ...(gerritChanges
      ? { gerritChanges: gerritChanges.map((c) => ({ host: 'g.example', project: 'core', ...c })) }
      : {}),
  },
});

describe('checkoutTarget: what a build checks out', () => {
  const cfg = { repo: 'https://git.example/core.git' };
  it('defaults to the repository HEAD, or the builder ref', () => {
    assert.deepEqual(checkoutTarget(cfg, build({})), { repo: cfg.repo, ref: 'HEAD', from: "the repository's HEAD" });
    assert.equal(checkoutTarget({ ...cfg, ref: 'stable' }, build({})).ref, 'refs/heads/stable');
  });
  it('takes ref, then the Gerrit patch set ref, then the Gerrit change, then branch; revision pins the commit', () => {
    const sha = 'a'.repeat(40);
    assert.equal(checkoutTarget(cfg, build({ ref: 'refs/tags/v1', branch: 'x' })).ref, 'refs/tags/v1');
    const cq = checkoutTarget(cfg, build({ 'event.patchSet.ref': 'refs/changes/19/375219/1', revision: sha }));
    assert.equal(cq.ref, 'refs/changes/19/375219/1');
    assert.equal(cq.revision, sha);
    // LUCI's CQ says `revision: HEAD`: build the patch set ref's tip, pin nothing.
    const luci = checkoutTarget(cfg, build({ 'event.patchSet.ref': 'refs/changes/19/375219/1', revision: 'HEAD' }));
    assert.deepEqual([luci.ref, 'revision' in luci], ['refs/changes/19/375219/1', false]);
    assert.equal(checkoutTarget(cfg, build({}, [{ change: 375219, patchset: 3 }])).ref, 'refs/changes/19/375219/3');
    assert.equal(checkoutTarget(cfg, build({ branch: 'feature/x' })).ref, 'refs/heads/feature/x');
    assert.equal(gerritPatchsetRef(5, 1), 'refs/changes/05/5/1');
  });
  it('refuses input that is not a ref or a commit (no option injection into git)', () => {
    for (const props of [
      { revision: 'not-a-sha' },
      { revision: 42 },
      { ref: '--upload-pack=touch /tmp/x' },
      { ref: 'main' },
      { branch: '-x' },
      { branch: 'a..b' },
      { 'event.patchSet.ref': 'refs/changes/ 1' },
    ]) {
      assert.throws(() => checkoutTarget(cfg, build(props)), CheckoutInputError, JSON.stringify(props));
    }
  });
  it('never shows a credential of the repository URL', () => {
    assert.equal(redactUrl('https://kiln:s3cret@git.example/core.git'), 'https://kiln:***@git.example/core.git');
    assert.equal(redactUrl('git@host:core.git'), 'git@host:core.git');
  });
});

describe('GitCheckout with real git', () => {
  let root: string;
  let repo: TestRepo;
  let first: string;
  let second: string;
  let patchset: string;
  let http: GitHttpServer;
  let n = 0;
  const dir = () => join(root, 'builds', String(++n));
  const out: string[] = [];
  const onOutput = (t: string) => void out.push(t);

  before(async () => {
    root = tempRoot('kiln-checkout-');
    repo = makeRepo(join(root, 'server'), 'core');
    first = repo.commit('first', { 'build.sh': '#!/bin/sh\necho v1\n' }, { executable: ['build.sh'] });
    second = repo.commit('second', { 'build.sh': '#!/bin/sh\necho v2\n' }, { executable: ['build.sh'] });
    repo.push(second, 'refs/heads/main');
    // A Gerrit patch set: a commit on no branch, only under refs/changes/.
    git(repo.work, 'checkout', '--quiet', '--detach', first);
    patchset = repo.commit('patch set 1 of change 375219', { 'build.sh': '#!/bin/sh\necho patched\n' });
    repo.push(patchset, 'refs/changes/19/375219/1');
    http = await startGitHttpServer(join(root, 'server'));
  });
  after(async () => {
    await http?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('checks out the branch tip by default, with the builder ref, and a pinned older commit', async () => {
    const co = new GitCheckout(join(root, 'cache-a'));
    const tip = await co.checkout({ target: checkoutTarget({ repo: repo.bare }, build({})), dir: dir(), onOutput });
    assert.equal(tip.revision, second);
    assert.match(readFileSync(join(tip.dir, 'build.sh'), 'utf8'), /v2/);
    assert.equal(git(tip.dir, 'rev-parse', 'HEAD'), second);
    const pinned = await co.checkout({
      target: checkoutTarget({ repo: repo.bare, ref: 'main' }, build({ revision: first })),
      dir: dir(),
      onOutput,
    });
    assert.equal(pinned.revision, first);
    assert.match(readFileSync(join(pinned.dir, 'build.sh'), 'utf8'), /v1/);
    // The branch is where a clone would have it, and origin is the real repository.
    assert.equal(git(pinned.dir, 'rev-parse', 'origin/main'), second);
    assert.equal(git(pinned.dir, 'remote', 'get-url', 'origin'), repo.bare);
    // One cache for the repository, whose objects the checkout borrows instead of copying.
    assert.equal(
      readFileSync(join(pinned.dir, '.git/objects/info/alternates'), 'utf8').trim(),
      join(co.cachePath(repo.bare), 'objects'),
    );
    assert.equal(git(co.cachePath(repo.bare), 'fsck', '--no-progress'), '');
  });

  it('checks out a Gerrit patch set ref over HTTP (git http-backend), at its revision', async () => {
    const co = new GitCheckout(join(root, 'cache-http'));
    const url = `${http.url}/core.git`;
    const before = http.requests.length;
    const r = await co.checkout({
      target: checkoutTarget(
        { repo: url },
        build({ 'event.patchSet.ref': 'refs/changes/19/375219/1', revision: patchset }),
      ),
      dir: dir(),
      onOutput,
    });
    assert.equal(r.revision, patchset);
    assert.equal(r.ref, 'refs/changes/19/375219/1');
    assert.match(readFileSync(join(r.dir, 'build.sh'), 'utf8'), /patched/);
    assert.ok(
      http.requests.slice(before).some((p) => p.endsWith('/git-upload-pack')),
      http.requests.join(', '),
    );
    // A second build of the same change fetches into the same cache and needs no new objects.
    const again = await co.checkout({
      target: checkoutTarget({ repo: url }, build({}, [{ change: 375219, patchset: 1 }])),
      dir: dir(),
      onOutput,
    });
    assert.equal(again.revision, patchset);
  });

  it('fails a commit the repository does not have, and stops when aborted', async () => {
    const co = new GitCheckout(join(root, 'cache-b'));
    await assert.rejects(
      co.checkout({
        target: checkoutTarget({ repo: repo.bare }, build({ revision: 'b'.repeat(40) })),
        dir: dir(),
        onOutput,
      }),
      CheckoutError,
    );
    await assert.rejects(
      co.checkout({
        target: checkoutTarget({ repo: repo.bare }, build({ branch: 'no-such-branch' })),
        dir: dir(),
        onOutput,
      }),
      /no-such-branch/,
    );
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(
      co.checkout({ target: checkoutTarget({ repo: repo.bare }, build({})), dir: dir(), onOutput, signal: ac.signal }),
      CheckoutStopped,
    );
  });

  it("resolves a relative repository path against the runner's working directory", async () => {
    const co = new GitCheckout(join(root, 'cache-rel'));
    const target = checkoutTarget({ repo: './server/core.git' }, build({}), root);
    assert.equal(target.repo, repo.bare);
    const r = await co.checkout({ target, dir: dir(), onOutput });
    assert.equal(r.revision, second);
    assert.equal(r.repo, repo.bare);
  });

  it('survives a lock file left behind by a killed git', async () => {
    const co = new GitCheckout(join(root, 'cache-c'));
    await co.checkout({ target: checkoutTarget({ repo: repo.bare }, build({})), dir: dir(), onOutput });
    writeFileSync(join(co.cachePath(repo.bare), 'refs/kiln/HEAD.lock'), '');
    const r = await co.checkout({ target: checkoutTarget({ repo: repo.bare }, build({})), dir: dir(), onOutput });
    assert.equal(r.revision, second);
    assert.ok(!existsSync(join(co.cachePath(repo.bare), 'refs/kiln/HEAD.lock')));
  });

  it('keeps the cache sound when many builds of one repository check out at once from two runners', async () => {
    // Two GitCheckout instances on one cache folder stand for two runner processes: only the lock
    // file keeps their fetches apart (each instance's in-process queue knows nothing of the other).
    const cacheDir = join(root, 'cache-shared');
    const runners = [new GitCheckout(cacheDir), new GitCheckout(cacheDir)];
    const inputs = [{}, { revision: first }, { 'event.patchSet.ref': 'refs/changes/19/375219/1' }, { branch: 'main' }];
    const jobs = Array.from({ length: 12 }, (_, i) => {
      const props = inputs[i % inputs.length] ?? {};
      return runners[i % 2]!.checkout({
        target: checkoutTarget({ repo: i % 3 === 0 ? `${http.url}/core.git` : repo.bare }, build(props)),
        dir: dir(),
        onOutput: () => undefined,
      });
    });
    const results = await Promise.all(jobs);
    assert.equal(results.length, 12);
    for (const [i, r] of results.entries()) {
      const expected = [second, first, patchset, second][i % inputs.length];
      assert.equal(r.revision, expected, `job ${i}`);
      assert.equal(git(r.dir, 'rev-parse', 'HEAD'), expected);
      assert.equal(git(r.dir, 'status', '--porcelain'), '', `job ${i}: a clean checkout`);
    }
    for (const repoUrl of [repo.bare, `${http.url}/core.git`]) {
      assert.equal(git(runners[0]!.cachePath(repoUrl), 'fsck', '--no-progress'), '');
    }
  });
});
