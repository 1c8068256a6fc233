/**
 * The source a build runs on: what to check out (a builder's `checkout` plus the ref and commit the
 * build's input names) and how (`GitCheckout`: the real `git`, with one reusable cache per
 * repository under the runner's work dir, as Buildbot's Git step and tinderboxes keep theirs).
 *
 * The cache is a bare repository that only ever gains objects and refs; every fetch into it holds
 * a lock (in-process queue + a lock file other runner processes on this machine honour), so
 * concurrent builds of one repository never fetch into it at once. A build's checkout is a fresh
 * repository in the build's folder that borrows the cache's objects (`objects/info/alternates`,
 * what `git clone --reference` sets up), so checking out costs no copy and no second download.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import lockfile from 'proper-lockfile';
import { type Build } from '../domain/build.ts';
import { runCommand, type RunningCommand } from './processTree.ts';
import { isValidRefName } from './settings.ts';

/** A builder's `checkout` block, as the API serves it. */
export interface CheckoutConfig {
  /** Repository URL (https://, ssh://, git@host:path, file://) or a local path. */
  repo: string;
  /** Branch or ref to build when the build's input names none. @default the repository's HEAD */
  ref?: string;
}

/** What one build checks out. */
export interface CheckoutTarget {
  repo: string;
  /** Full ref to fetch (`refs/heads/main`, `refs/changes/19/375219/1`) or `HEAD`. */
  ref: string;
  /** Commit to check out; the fetched ref's tip when absent. */
  revision?: string;
  /** Where `ref` and `revision` came from, for the build log. */
  from: string;
}

/** The build's input names a ref or commit that cannot be checked out as given: the input's fault. */
export class CheckoutInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckoutInputError';
  }
}

/** Fetching or checking out failed (network, auth, a ref or commit the repository lacks). */
export class CheckoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckoutError';
  }
}

/** The checkout was stopped because the build was (the lease was lost, or the runner shuts down). */
export class CheckoutStopped extends Error {
  constructor() {
    super('checkout stopped');
    this.name = 'CheckoutStopped';
  }
}

const HEX_REVISION = /^[0-9a-f]{7,64}$/;

function stringProperty(props: Record<string, unknown>, key: string): string | undefined {
  const v = props[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new CheckoutInputError(`property ${key} must be a string, got ${JSON.stringify(v)}`);
  return v;
}

/** `main` → `refs/heads/main`; full refs and `HEAD` stay as they are. */
function fullRef(refOrBranch: string, what: string): string {
  if (refOrBranch.startsWith('-')) throw new CheckoutInputError(`${what}: "${refOrBranch}" is not a valid ref`);
  const ref = refOrBranch === 'HEAD' || refOrBranch.startsWith('refs/') ? refOrBranch : `refs/heads/${refOrBranch}`;
  if (ref !== 'HEAD' && !isValidRefName(ref))
    throw new CheckoutInputError(`${what}: "${refOrBranch}" is not a valid ref`);
  return ref;
}

/** Gerrit's ref of a patch set: `refs/changes/<last two digits>/<change>/<patchset>`. */
export function gerritPatchsetRef(change: number, patchset: number): string {
  return `refs/changes/${String(change % 100).padStart(2, '0')}/${change}/${patchset}`;
}

/**
 * What a build checks out: the builder's repository, at the ref and commit its input names. The
 * input properties are read in this order: `ref` (any full ref), `event.patchSet.ref` (Gerrit's
 * patch set ref, set on change verifications), the first of the build's Gerrit changes, `branch`
 * (a branch name), and else the builder's `checkout.ref` (else the repository's HEAD). `revision`
 * (a commit SHA) pins the commit; without it, or when it is `HEAD`, the fetched ref's tip is built.
 */
export function checkoutTarget(
  cfg: CheckoutConfig,
  build: Pick<Build, 'input'>,
  cwd: string = process.cwd(),
): CheckoutTarget {
  const props = build.input.properties;
  // `HEAD` (CQ builds, as LUCI's CQ sets it) pins nothing: the fetched ref's tip is built.
  const given = stringProperty(props, 'revision')?.toLowerCase();
  const revision = given === 'head' ? undefined : given;
  if (revision !== undefined && !HEX_REVISION.test(revision)) {
    throw new CheckoutInputError(`property revision: "${revision}" is not a commit SHA (7 to 64 hex digits)`);
  }
  const explicit = stringProperty(props, 'ref');
  const patchSet = stringProperty(props, 'event.patchSet.ref');
  const change = build.input.gerritChanges?.[0];
  const branch = stringProperty(props, 'branch');
  let ref: string;
  let from: string;
  if (explicit !== undefined) {
    if (!explicit.startsWith('refs/') && explicit !== 'HEAD')
      throw new CheckoutInputError(
        `property ref: "${explicit}" is not a full ref (refs/…); use branch for a branch name`,
      );
    ref = fullRef(explicit, 'property ref');
    from = 'property ref';
  } else if (patchSet !== undefined) {
    ref = fullRef(patchSet, 'property event.patchSet.ref');
    from = 'property event.patchSet.ref';
  } else if (change !== undefined) {
    ref = gerritPatchsetRef(change.change, change.patchset);
    from = `Gerrit change ${change.change} patch set ${change.patchset}`;
  } else if (branch !== undefined) {
    ref = fullRef(branch, 'property branch');
    from = 'property branch';
  } else {
    ref = fullRef(cfg.ref ?? 'HEAD', 'checkout.ref');
    from = cfg.ref === undefined ? "the repository's HEAD" : "the builder's checkout.ref";
  }
  return { repo: localRepoPath(cfg.repo, cwd), ref, ...(revision !== undefined ? { revision } : {}), from };
}

/** `.`, `./x`, `../x` → an absolute path against `cwd` (git runs elsewhere); URLs and absolute paths as they are. */
export function localRepoPath(repo: string, cwd: string): string {
  return repo === '.' || repo === '..' || repo.startsWith('./') || repo.startsWith('../') ? resolve(cwd, repo) : repo;
}

/** `https://user:secret@host/x` → `https://user:***@host/x`, so build logs never show a credential. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*):[^/@]*@/i, '$1:***@');
}

/** The cache folder of one repository: readable slug plus a hash of the exact URL. */
export function cacheDirName(repo: string): string {
  const slug =
    repo
      .replace(/\/+$/, '')
      .replace(/\.git$/, '')
      .split(/[/:]/)
      .pop()
      ?.replace(/[^A-Za-z0-9._-]/g, '_')
      .slice(0, 40) || 'repo';
  return `${slug}-${createHash('sha256').update(repo).digest('hex').slice(0, 12)}.git`;
}

/** Where the cache keeps the fetched ref, so its commits stay reachable (and safe from `git gc`). */
function cacheRefFor(ref: string): string {
  return ref === 'HEAD' ? 'refs/kiln/HEAD' : ref;
}

/** What a finished checkout is. */
export interface CheckoutResult {
  /** The repository fetched from (a relative path made absolute). */
  repo: string;
  /** Full SHA of the commit checked out. */
  revision: string;
  ref: string;
  dir: string;
}

/** Options of `GitCheckout.checkout`. */
export interface CheckoutOptions {
  target: CheckoutTarget;
  /** The folder to check out into; created (it must not exist yet or be empty). */
  dir: string;
  /** Progress and git's own output, for the build log. */
  onOutput: (text: string) => void;
  /** Aborting stops the git command that runs (its whole process group). */
  signal?: AbortSignal;
  /** Seconds between SIGTERM and SIGKILL when stopping git. @default 5 */
  killTimeoutSecs?: number;
}

/** Shared by every build of a runner: the per-repository caches and their locks. */
export class GitCheckout {
  /** In-process queue per cache, so builds of this runner wait for each other without polling. */
  private readonly queues = new Map<string, Promise<unknown>>();

  /** @param cacheDir folder holding one bare repository per repo URL */
  constructor(readonly cacheDir: string) {}

  /** The cache repository of `repo`. */
  cachePath(repo: string): string {
    return resolve(this.cacheDir, cacheDirName(repo));
  }

  /** Fetches the target into the cache (under its lock) and checks its commit out into `o.dir`. */
  async checkout(o: CheckoutOptions): Promise<CheckoutResult> {
    const { target } = o;
    const cache = this.cachePath(target.repo);
    o.onOutput(
      `kiln runner: checking out ${target.ref}${target.revision ? ` at ${target.revision}` : ''} of ${redactUrl(target.repo)} (from ${target.from})\n`,
    );
    const { revision, tip } = await this.withCacheLock(cache, () => this.fetchIntoCache(cache, o));
    await mkdir(o.dir, { recursive: true });
    const git = (args: string[], echo = true) => this.git(args, { ...o, cwd: o.dir, echo });
    await git(['init', '--quiet'], false);
    await writeFile(join(o.dir, '.git', 'objects', 'info', 'alternates'), `${join(cache, 'objects')}\n`);
    await git(['remote', 'add', '--', 'origin', target.repo], false);
    if (target.ref.startsWith('refs/heads/')) {
      // Scripts that compare against the branch (`git log origin/main..`) find it as in a clone.
      await git(['update-ref', `refs/remotes/origin/${target.ref.slice('refs/heads/'.length)}`, tip], false);
    }
    await git(['-c', 'advice.detachedHead=false', 'checkout', '--quiet', '--detach', revision]);
    o.onOutput(`kiln runner: checked out ${revision} into ${o.dir}\n`);
    return { repo: target.repo, revision, ref: target.ref, dir: o.dir };
  }

  /** Runs `fn` holding the cache's lock: first among this process's builds, then against other processes. */
  private async withCacheLock<T>(cache: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(cache) ?? Promise.resolve();
    const run = prev
      .catch(() => undefined)
      .then(async () => {
        await mkdir(this.cacheDir, { recursive: true });
        const release = await lockfile.lock(cache, {
          realpath: false,
          lockfilePath: `${cache}.lock`,
          // A lock whose holder died is taken over once it has not been refreshed for this long.
          stale: 30_000,
          update: 10_000,
          retries: { retries: 1_000_000, factor: 1.2, minTimeout: 100, maxTimeout: 2000 },
        });
        try {
          return await fn();
        } finally {
          await release().catch(() => undefined);
        }
      });
    this.queues.set(cache, run);
    try {
      return await run;
    } finally {
      if (this.queues.get(cache) === run) this.queues.delete(cache);
    }
  }

  /** Makes sure the cache has the target's commit; returns its full SHA and the fetched ref's tip. Holds the lock. */
  private async fetchIntoCache(cache: string, o: CheckoutOptions): Promise<{ revision: string; tip: string }> {
    const { target } = o;
    const git = (args: string[], echo = true) => this.git(args, { ...o, cwd: cache, echo });
    if (!existsSync(join(cache, 'HEAD'))) {
      // Made aside and renamed, so a half-made cache (a crash during init) is never used.
      const tmp = `${cache}.init-${process.pid}`;
      await rm(tmp, { recursive: true, force: true });
      await this.git(['init', '--bare', '--quiet', tmp], { ...o, cwd: this.cacheDir, echo: false });
      await rename(tmp, cache);
    } else {
      await removeStaleGitLocks(cache);
    }
    const cacheRef = cacheRefFor(target.ref);
    const fetched = await git([
      'fetch',
      '--no-tags',
      '--no-write-fetch-head',
      '--',
      target.repo,
      `+${target.ref}:${cacheRef}`,
    ]);
    if (fetched.code !== 0) {
      throw new CheckoutError(
        `git fetch of ${target.ref} from ${redactUrl(target.repo)} failed: ${lastLine(fetched.stderr)}`,
      );
    }
    const tip = await this.revParse(cache, `${cacheRef}^{commit}`, o);
    if (target.revision === undefined) return { revision: tip, tip };
    if (!(await this.hasCommit(cache, target.revision, o))) {
      // Not on the fetched ref (yet): ask for the commit itself, as `git fetch <url> <sha>` does.
      const byId = await git([
        'fetch',
        '--no-tags',
        '--no-write-fetch-head',
        '--',
        target.repo,
        `+${target.revision}:refs/kiln/commits/${target.revision}`,
      ]);
      if (byId.code !== 0 || !(await this.hasCommit(cache, target.revision, o))) {
        throw new CheckoutError(
          `commit ${target.revision} is neither on ${target.ref} of ${redactUrl(target.repo)} nor fetchable by its id: ${lastLine(byId.stderr)}`,
        );
      }
    }
    return { revision: await this.revParse(cache, `${target.revision}^{commit}`, o), tip };
  }

  private async hasCommit(cache: string, revision: string, o: CheckoutOptions): Promise<boolean> {
    const r = await this.git(['cat-file', '-e', `${revision}^{commit}`], { ...o, cwd: cache, echo: false });
    return r.code === 0;
  }

  private async revParse(cache: string, rev: string, o: CheckoutOptions): Promise<string> {
    const r = await this.git(['rev-parse', '--verify', '--quiet', rev], { ...o, cwd: cache, echo: false });
    const sha = r.stdout.trim();
    if (r.code !== 0 || !HEX_REVISION.test(sha)) throw new CheckoutError(`${rev} is not a commit in the cache`);
    return sha;
  }

  /** Runs git; `echo` puts the command line and its output in the build log. */
  private async git(
    args: string[],
    o: CheckoutOptions & { cwd: string; echo: boolean },
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    if (o.signal?.aborted) throw new CheckoutStopped();
    if (o.echo) o.onOutput(`$ git ${args.map((a) => redactUrl(a)).join(' ')}\n`);
    let stdout = '';
    let stderr = '';
    const cmd: RunningCommand = runCommand(['git', ...args], {
      cwd: o.cwd,
      env: { ...process.env, GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' },
      onOutput: () => undefined,
      onStdout: (b) => {
        stdout += b.toString();
        if (o.echo) o.onOutput(b.toString());
      },
      onStderr: (b) => {
        stderr += b.toString();
        if (o.echo) o.onOutput(redactUrl(b.toString()));
      },
    });
    const stop = () => void cmd.stop((o.killTimeoutSecs ?? 5) * 1000);
    o.signal?.addEventListener('abort', stop, { once: true });
    try {
      const exit = await cmd.exited;
      if (o.signal?.aborted) throw new CheckoutStopped();
      if (exit.kind === 'spawnFailed') throw new CheckoutError(`cannot run git: ${exit.message}`);
      return { code: exit.code ?? 1, stdout, stderr };
    } finally {
      o.signal?.removeEventListener('abort', stop);
    }
  }
}

function lastLine(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return redactUrl(lines[lines.length - 1] ?? 'no output');
}

/**
 * Lock files git left in the cache when it was killed (SIGKILL, a crash): with the cache's own lock
 * held nobody else runs git in it, so any `*.lock` there is stale and would fail every later fetch.
 */
async function removeStaleGitLocks(cache: string): Promise<void> {
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.name.endsWith('.lock')) await rm(p, { force: true });
    }
  };
  for (const f of ['packed-refs.lock', 'config.lock', 'shallow.lock', 'HEAD.lock']) {
    await rm(join(cache, f), { force: true });
  }
  await walk(join(cache, 'refs'));
}
