/**
 * Kiln's git layer against real repositories through the real `git` binary: bare repositories on
 * disk (file://) and one served over smart HTTP with basic auth by `git http-backend` on loopback.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { remoteIdentity } from '../../src/domain/launchpad/commit.ts';
import { GitError, GitMirror, lsRemoteBranch, MergeConflictError } from '../../src/launchpad/git.ts';
import { freePort } from '../support/processes.ts';
import { GitFixture, type GitHttpServer, startGitHttpServer } from '../support/git.ts';

const committer = { name: 'Kiln', email: 'kiln@example.org' };
const base = { mergeTime: '2026-01-01T00:00:00Z', mergeMessage: 'Merge', committer, dryRun: false };

describe('git layer on real repositories', () => {
  let fx: GitFixture;
  let cache: string;
  before(() => {
    fx = new GitFixture('lp');
    cache = mkdtempSync(join(tmpdir(), 'kiln-git-cache-'));
  });
  after(() => {
    fx.cleanup();
    rmSync(cache, { recursive: true, force: true });
  });

  it('names host and project of every remote form', () => {
    assert.deepEqual(remoteIdentity('https://git.launchpad.net/launchpad'), {
      host: 'git.launchpad.net',
      project: 'launchpad',
    });
    assert.deepEqual(remoteIdentity('git@github.com:canonical/launchpad.git'), {
      host: 'github.com',
      project: 'canonical/launchpad',
    });
    assert.deepEqual(remoteIdentity('ssh://git@host:2222/srv/lp.git'), { host: 'host', project: 'srv/lp' });
    assert.deepEqual(remoteIdentity('file:///srv/git/lp.git'), { host: 'localhost', project: 'srv/git/lp' });
  });

  it('lists a branch tip with ls-remote, and nothing for a missing branch', async () => {
    const c1 = fx.commit('master', 'first');
    assert.equal(await lsRemoteBranch(fx.url, 'master'), c1);
    assert.equal(await lsRemoteBranch(fx.url, 'no-such-branch'), undefined);
  });

  it('fetches and lists new first-parent commits with their authors, a merge with what it brought', async () => {
    const m = new GitMirror({ name: 'lp', url: fx.url }, cache);
    const start = (await m.fetch(['master'])).get('master');
    assert.ok(start);
    const a = fx.commit('master', 'a', {}, { name: 'Alice', email: 'alice@example.org' });
    fx.branch('feature', 'master');
    fx.commit('feature', 'f1', {}, { name: 'Fay', email: 'fay@example.org' });
    const b = fx.commit('master', 'b', {}, { name: 'Bob', email: 'bob@example.org' });
    // Merge feature into master in the work clone.
    const { git } = await import('../support/git.ts');
    git(fx.work, ['checkout', '-q', 'master']);
    git(fx.work, ['merge', '-q', '--no-ff', '-m', 'merge feature', 'origin/feature']);
    git(fx.work, ['push', '-q', 'origin', 'HEAD:refs/heads/master']);
    const tips = await m.fetch(['master', 'gone']);
    assert.equal(tips.get('gone'), undefined);
    const commits = await m.firstParentCommits(start, tips.get('master') ?? '');
    assert.deepEqual(
      commits.map((c) => c.subject),
      ['a', 'b', 'merge feature'],
    );
    assert.equal(commits[0]?.id, a);
    assert.equal(commits[1]?.id, b);
    assert.equal(commits[0]?.author, 'Alice');
    assert.equal(commits[0]?.authorEmail, 'alice@example.org');
    assert.deepEqual(commits[2]?.mergedAuthors.sort(), ['Fay <fay@example.org>', 'Test Author <author@example.org>']);
  });

  it('fast-forwards a target, is a no-op when retried, and never forces a diverged target', async () => {
    const m = new GitMirror({ name: 'lp', url: fx.url }, cache);
    fx.branch('stable', 'master');
    const c = fx.commit('master', 'to promote');
    const pushes = fx.recordPushes();
    await m.fetch(['master', 'stable']);
    const r1 = await m.push({ ...base, commit: c, from: 'master', to: 'stable', mode: 'fast-forward' });
    assert.equal(r1.outcome, 'PUSHED');
    assert.equal(fx.tip('stable'), c);
    await m.fetch(['master', 'stable']);
    const r2 = await m.push({ ...base, commit: c, from: 'master', to: 'stable', mode: 'fast-forward' });
    assert.equal(r2.outcome, 'NOOP', 'a retried promotion pushes nothing');
    assert.equal(pushes().length, 1);
    // stable gets a commit master does not have: promoting master's next commit is not a fast-forward.
    const hotfix = fx.commit('stable', 'hotfix on stable');
    const next = fx.commit('master', 'next');
    await m.fetch(['master', 'stable']);
    await assert.rejects(
      m.push({ ...base, commit: next, from: 'master', to: 'stable', mode: 'fast-forward' }),
      (e: unknown) => e instanceof GitError && e.kind === 'rejected' && /not a fast-forward/.test(e.message),
    );
    assert.equal(fx.tip('stable'), hotfix, 'the target is left alone');
  });

  it('merges with a merge commit that a retry makes again identically, and stops on a conflict', async () => {
    const m = new GitMirror({ name: 'lp', url: fx.url }, cache);
    fx.branch('db-devel', 'master');
    fx.commit('db-devel', 'db change', { 'schema.sql': 'create table x;\n' });
    const s = fx.commit('master', 'stable change', { 'code.py': 'print(1)\n' });
    await m.fetch(['master', 'db-devel']);
    const dry = await m.push({ ...base, commit: s, from: 'master', to: 'db-devel', mode: 'merge', dryRun: true });
    assert.equal(dry.outcome, 'DRY_RUN');
    const beforeTip = fx.tip('db-devel');
    assert.notEqual(beforeTip, undefined);
    assert.equal(dry.outcome === 'DRY_RUN' && dry.before, beforeTip, 'a dry run pushes nothing');
    assert.match(dry.message, /would push [0-9a-f]{40} to file:\/\/.* refs\/heads\/db-devel \(merge commit/);
    const r = await m.push({ ...base, commit: s, from: 'master', to: 'db-devel', mode: 'merge' });
    assert.equal(r.outcome, 'PUSHED');
    const merge = fx.tip('db-devel') ?? '';
    assert.equal(dry.outcome === 'DRY_RUN' && dry.after, merge, 'the dry run named the commit that was pushed');
    assert.deepEqual(fx.parents(merge), [beforeTip, s]);
    assert.equal(fx.show(merge, 'schema.sql'), 'create table x;');
    // Conflicting edits of one file: no push, the files named.
    fx.commit('db-devel', 'db edits code', { 'code.py': 'print("db")\n' });
    const clash = fx.commit('master', 'master edits code', { 'code.py': 'print("master")\n' });
    const tip = fx.tip('db-devel');
    await m.fetch(['master', 'db-devel']);
    await assert.rejects(
      m.push({ ...base, commit: clash, from: 'master', to: 'db-devel', mode: 'merge' }),
      (e: unknown) => e instanceof MergeConflictError && e.files.includes('code.py'),
    );
    assert.equal(fx.tip('db-devel'), tip);
  });

  describe('over smart HTTP (git http-backend) with basic auth', () => {
    let http: GitHttpServer;
    let hx: GitFixture;
    before(async () => {
      hx = new GitFixture('web');
      hx.commit('master', 'init');
      hx.branch('stable', 'master');
      http = await startGitHttpServer(join(hx.root, 'srv'), { username: 'kiln', password: 's3cret' });
    });
    after(async () => {
      await http?.close();
      hx?.cleanup();
    });

    it('fetches and pushes with credentials from config, and tells a refused password apart', async () => {
      const url = `${http.url}/web.git`;
      const good = new GitMirror({ name: 'web', url, http: { username: 'kiln', password: 's3cret' } }, cache);
      const c = hx.commit('master', 'over http');
      const tips = await good.fetch(['master', 'stable']);
      assert.equal(tips.get('master'), c);
      const r = await good.push({ ...base, commit: c, from: 'master', to: 'stable', mode: 'fast-forward' });
      assert.equal(r.outcome, 'PUSHED');
      assert.equal(hx.tip('stable'), c);
      assert.ok(
        http.requests.some((q) => q.includes('git-receive-pack')),
        'pushed through http-backend',
      );
      const bad = new GitMirror({ name: 'web-bad', url, http: { username: 'kiln', password: 'wrong' } }, cache);
      await assert.rejects(bad.fetch(['master']), (e: unknown) => e instanceof GitError && e.kind === 'auth');
    });

    it('reports an unreachable remote as such', async () => {
      const port = await freePort();
      const m = new GitMirror({ name: 'down', url: `http://127.0.0.1:${port}/x.git` }, cache);
      await assert.rejects(m.fetch(['master']), (e: unknown) => e instanceof GitError && e.kind === 'unreachable');
    });
  });
});
