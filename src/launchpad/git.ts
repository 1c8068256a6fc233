/**
 * Git through the real `git` binary, for pollers, promotions and merges (Node side, used by
 * activities). Every remote kind git speaks works (`file://`, http(s), ssh, `git://`); credentials
 * come from the repository's config: an SSH key through `GIT_SSH_COMMAND`, HTTP basic auth through
 * an `http.extraHeader` set in the environment (never in argv or a URL). Each worker keeps a bare
 * cache repository per configured repository under `<dataDir>/git/`, fetched before every decision;
 * pushes never force, so a moved or diverged target refuses the push instead of losing commits.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type RepositoryConfig } from '../config/launchpad.ts';
import { branchRef, type PolledCommit } from '../domain/launchpad/commit.ts';

/** Why a git command failed, as far as a promotion or poller needs to know. */
export type GitFailureKind =
  /** The remote could not be reached (DNS, connection, timeout): worth retrying later. */
  | 'unreachable'
  /** The remote refused credentials. */
  | 'auth'
  /** The remote refused the push (not a fast-forward, a hook, a protected branch). */
  | 'rejected'
  /** Anything else (a bug, a corrupt cache). */
  | 'other';

/** A git command that failed; `kind` says whether to retry, `message` is git's own reason. */
export class GitError extends Error {
  constructor(
    readonly kind: GitFailureKind,
    message: string,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'GitError';
  }
}

/** Classifies git's stderr. */
export function classifyGitFailure(stderr: string): GitFailureKind {
  const s = stderr.toLowerCase();
  if (
    /authentication failed|permission denied|could not read username|invalid username or password|returned error: 40[13]|access denied|host key verification failed/.test(
      s,
    )
  )
    return 'auth';
  if (/\[rejected\]|\[remote rejected\]|non-fast-forward|fetch first|hook declined|protected branch/.test(s))
    return 'rejected';
  if (
    /could not resolve host|connection refused|connection timed out|timed out|failed to connect|unable to access|could not read from remote|does not appear to be a git repository|no such file or directory|network is unreachable|connection reset|early eof|the remote end hung up/.test(
      s,
    )
  )
    return 'unreachable';
  return 'other';
}

/** The last few meaningful lines of git's stderr, for messages people read. */
export function gitReason(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^(hint:|to |remote: *$)/i.test(l));
  return lines.slice(-3).join('; ') || 'git failed';
}

/** Options of every git command. */
export interface GitRunOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** @default 600000 */
  timeoutMs?: number;
  /** Aborts (kills) the command, e.g. when the activity is canceled. */
  signal?: AbortSignal;
}

/** Output of a git command that exited 0 (or 1, where `allowExit1`). */
export interface GitResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs `git <args>`; throws GitError unless it exits 0 (or 1 with `allowExit1`). */
export function runGit(args: string[], o: GitRunOptions & { allowExit1?: boolean } = {}): Promise<GitResult> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      args,
      {
        cwd: o.cwd,
        env: {
          ...process.env,
          GIT_TERMINAL_PROMPT: '0',
          GIT_ASKPASS: '/bin/false',
          SSH_ASKPASS: '/bin/false',
          LC_ALL: 'C',
          ...o.env,
        },
        timeout: o.timeoutMs ?? 600_000,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024,
        signal: o.signal,
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        if (code === 0 || (code === 1 && o.allowExit1)) {
          resolve({ stdout, stderr, code });
          return;
        }
        const killed = err && (err as { killed?: boolean }).killed;
        const text = killed ? `${stderr}\ngit ${args[0]} timed out` : stderr || String(err?.message ?? '');
        reject(new GitError(killed ? 'unreachable' : classifyGitFailure(text), gitReason(text), text));
      },
    );
  });
}

/**
 * Environment that gives git the repository's credentials: an SSH key (and known_hosts) through
 * `GIT_SSH_COMMAND`, HTTP basic auth through `http.extraHeader` (config in env, not argv).
 */
export function credentialEnv(repo: Pick<RepositoryConfig, 'ssh' | 'http'>): Record<string, string> {
  const env: Record<string, string> = {};
  if (repo.ssh) {
    const opts = ['-i', shellQuote(repo.ssh.keyPath), '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes'];
    if (repo.ssh.knownHostsPath)
      opts.push('-o', `UserKnownHostsFile=${shellQuote(repo.ssh.knownHostsPath)}`, '-o', 'StrictHostKeyChecking=yes');
    env.GIT_SSH_COMMAND = ['ssh', ...opts].join(' ');
  }
  if (repo.http?.password !== undefined) {
    const basic = Buffer.from(`${repo.http.username}:${repo.http.password}`).toString('base64');
    env.GIT_CONFIG_COUNT = '1';
    env.GIT_CONFIG_KEY_0 = 'http.extraHeader';
    env.GIT_CONFIG_VALUE_0 = `Authorization: Basic ${basic}`;
  }
  return env;
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The tip of `branch` on the remote, or undefined when the branch does not exist. */
export async function lsRemoteBranch(url: string, branch: string, o: GitRunOptions = {}): Promise<string | undefined> {
  const ref = branchRef(branch);
  const r = await runGit(['ls-remote', '--', url, ref], o);
  for (const line of r.stdout.split('\n')) {
    const [sha, name] = line.split('\t');
    if (name === ref && sha) return sha;
  }
  return undefined;
}

/** Serializes work on one cache repository inside this process (git takes locks on refs). */
const locks = new Map<string, Promise<unknown>>();
function withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(key) ?? Promise.resolve();
  const next = prev.then(fn, fn);
  locks.set(
    key,
    next.catch(() => undefined),
  );
  return next;
}

/** A result of a promotion or merge attempt's git work. */
export type PushOutcome =
  | {
      outcome: 'PUSHED';
      commit: string;
      /** What `to` pointed at before. */
      before: string;
      /** What `to` points at now: the commit (fast-forward) or the merge commit. */
      after: string;
      message: string;
    }
  | { outcome: 'NOOP'; commit: string; before: string; message: string }
  | { outcome: 'DRY_RUN'; commit: string; before: string; after: string; pushUrl: string; message: string };

/** What a promotion or merge pushes. */
export interface PushRequest {
  /** The commit to bring into `to`. */
  commit: string;
  /** The branch it comes from (checked: the commit must be on it). */
  from: string;
  to: string;
  mode: 'fast-forward' | 'merge';
  /** Merge commits are dated this (ISO), so a retried merge makes the same commit and its push is a no-op. */
  mergeTime: string;
  mergeMessage: string;
  committer: { name: string; email: string };
  dryRun: boolean;
}

/**
 * A worker's cache of one remote: a bare repository under `dir`, fetched before every decision.
 * Every method takes the repository's lock, so a poll and a promotion of the same repository in
 * one process never race on git's ref locks.
 */
export class GitMirror {
  readonly dir: string;

  constructor(
    readonly repo: Pick<RepositoryConfig, 'name' | 'url' | 'pushUrl' | 'ssh' | 'http'>,
    cacheRoot: string,
    private readonly timeoutMs = 600_000,
  ) {
    this.dir = join(cacheRoot, `${repo.name}.git`);
  }

  private opts(signal?: AbortSignal): GitRunOptions {
    return { cwd: this.dir, env: credentialEnv(this.repo), timeoutMs: this.timeoutMs, signal };
  }

  private async ensure(): Promise<void> {
    if (existsSync(join(this.dir, 'HEAD'))) return;
    mkdirSync(this.dir, { recursive: true });
    await runGit(['init', '--bare', '-q'], { cwd: this.dir });
  }

  /** The local ref a fetched branch lands in. */
  static localRef(branch: string): string {
    return `refs/kiln/remote/${branch}`;
  }

  /**
   * Fetches `branches` from the remote into the cache; returns each one's tip, or undefined for a
   * branch the remote does not have.
   */
  fetch(branches: string[], signal?: AbortSignal): Promise<Map<string, string | undefined>> {
    return withLock(this.dir, async () => {
      await this.ensure();
      const o = this.opts(signal);
      const tips = new Map<string, string | undefined>();
      const ls = await runGit(['ls-remote', '--', this.repo.url, ...branches.map(branchRef)], o);
      const advertised = new Map<string, string>();
      for (const line of ls.stdout.split('\n')) {
        const [sha, ref] = line.split('\t');
        if (sha && ref) advertised.set(ref, sha);
      }
      const present = branches.filter((b) => advertised.has(branchRef(b)));
      if (present.length > 0) {
        await runGit(
          [
            'fetch',
            '--no-tags',
            '--quiet',
            '--',
            this.repo.url,
            ...present.map((b) => `+${branchRef(b)}:${GitMirror.localRef(b)}`),
          ],
          o,
        );
      }
      for (const b of branches) {
        if (!present.includes(b)) {
          tips.set(b, undefined);
          continue;
        }
        const r = await runGit(['rev-parse', '--verify', '--quiet', `${GitMirror.localRef(b)}^{commit}`], o);
        tips.set(b, r.stdout.trim());
      }
      return tips;
    });
  }

  /** True when `ancestor` is `descendant` or one of its ancestors (both must be in the cache). */
  async isAncestor(ancestor: string, descendant: string): Promise<boolean> {
    const r = await runGit(['merge-base', '--is-ancestor', ancestor, descendant], {
      ...this.opts(),
      allowExit1: true,
    });
    return r.code === 0;
  }

  /** True when the cache has `sha` as a commit. */
  async hasCommit(sha: string): Promise<boolean> {
    const r = await runGit(['cat-file', '-e', `${sha}^{commit}`], { ...this.opts(), allowExit1: true }).catch(() => ({
      code: 1,
    }));
    return r.code === 0;
  }

  /**
   * The commits on `tip`'s first-parent line after `since` (exclusive), oldest first; all of them
   * when `since` is undefined. A merge counts as one commit (its own author); the commits it brought
   * are in its `mergedAuthors`.
   */
  async firstParentCommits(
    since: string | undefined,
    tip: string,
    /** Only the newest this many (git applies it before the oldest-first order). */
    limit?: number,
  ): Promise<(PolledCommit & { mergedAuthors: string[] })[]> {
    const range = [
      ...(limit !== undefined ? ['-n', String(limit)] : []),
      since === undefined ? tip : `${since}..${tip}`,
    ];
    const r = await runGit(
      ['log', '--first-parent', '--reverse', '--format=%H%x00%P%x00%an%x00%ae%x00%cI%x00%s', ...range, '--'],
      this.opts(),
    );
    const out: (PolledCommit & { mergedAuthors: string[] })[] = [];
    for (const line of r.stdout.split('\n')) {
      if (!line) continue;
      const [id = '', parents = '', author = '', authorEmail = '', time = '', subject = ''] = line.split('\0');
      let mergedAuthors: string[] = [];
      const ps = parents.split(' ').filter(Boolean);
      if (ps.length > 1) {
        const m = await runGit(['log', '--format=%an <%ae>', `${ps[0]}..${id}`, '--'], this.opts());
        mergedAuthors = [...new Set(m.stdout.split('\n').filter(Boolean))];
      }
      out.push({ id, author, authorEmail, time, subject, mergedAuthors });
    }
    return out;
  }

  /**
   * Brings `req.commit` into `req.to` without ever forcing: a fast-forward push of the commit, or a
   * merge commit of it on `to`'s tip. Idempotent: when `to` already contains the commit (a retry
   * after a push that landed, or someone else got there first) nothing is pushed (`NOOP`).
   * Throws GitError `rejected` for a target that is not a fast-forward or a refused push, and
   * `MergeConflictError` for a merge that conflicts.
   */
  push(req: PushRequest, signal?: AbortSignal): Promise<PushOutcome> {
    return withLock(this.dir, async () => {
      const o = this.opts(signal);
      const pushUrl = this.repo.pushUrl ?? this.repo.url;
      const before = await this.fetchedTip(req.to);
      if (before === undefined) throw new GitError('other', `branch ${req.to} does not exist in ${this.repo.name}`, '');
      if (!(await this.hasCommit(req.commit)))
        throw new GitError('other', `commit ${req.commit} is not in ${this.repo.name} (was it fetched?)`, '');
      if (await this.isAncestor(req.commit, before)) {
        return {
          outcome: 'NOOP',
          commit: req.commit,
          before,
          message: `${req.to} already contains ${short(req.commit)}`,
        };
      }
      let after: string;
      if (req.mode === 'fast-forward') {
        if (!(await this.isAncestor(before, req.commit))) {
          throw new GitError(
            'rejected',
            `${req.to} (${short(before)}) is not an ancestor of ${short(req.commit)}: not a fast-forward, and Kiln never forces`,
            '',
          );
        }
        after = req.commit;
      } else {
        const merged = await runGit(
          ['merge-tree', '--write-tree', '--name-only', '--no-messages', before, req.commit],
          { ...o, allowExit1: true },
        );
        const [tree = '', ...files] = merged.stdout.split('\n').filter(Boolean);
        if (merged.code === 1) throw new MergeConflictError(req.from, req.to, files);
        const dated = {
          GIT_AUTHOR_NAME: req.committer.name,
          GIT_AUTHOR_EMAIL: req.committer.email,
          GIT_AUTHOR_DATE: req.mergeTime,
          GIT_COMMITTER_NAME: req.committer.name,
          GIT_COMMITTER_EMAIL: req.committer.email,
          GIT_COMMITTER_DATE: req.mergeTime,
        };
        const c = await runGit(['commit-tree', tree, '-p', before, '-p', req.commit, '-m', req.mergeMessage], {
          ...o,
          env: { ...o.env, ...dated },
        });
        after = c.stdout.trim();
      }
      const verb = req.mode === 'fast-forward' ? 'fast-forward' : `merge commit ${short(after)}`;
      if (req.dryRun) {
        return {
          outcome: 'DRY_RUN',
          commit: req.commit,
          before,
          after,
          pushUrl,
          message: `would push ${after} to ${pushUrl} refs/heads/${req.to} (${verb}, ${short(before)} → ${short(after)})`,
        };
      }
      // No "+" and no --force: git refuses anything but a fast-forward of what the remote has now.
      await runGit(['push', '--porcelain', '--', pushUrl, `${after}:${branchRef(req.to)}`], o);
      await runGit(['update-ref', GitMirror.localRef(req.to), after], o);
      return {
        outcome: 'PUSHED',
        commit: req.commit,
        before,
        after,
        message: `pushed ${short(after)} to ${req.to} (${verb}, ${short(before)} → ${short(after)})`,
      };
    });
  }

  /** The tip of `branch` as last fetched. */
  async fetchedTip(branch: string): Promise<string | undefined> {
    const r = await runGit(['rev-parse', '--verify', '--quiet', `${GitMirror.localRef(branch)}^{commit}`], {
      ...this.opts(),
      allowExit1: true,
    });
    return r.code === 0 ? r.stdout.trim() : undefined;
  }
}

/** A merge that conflicts: Kiln stops and says which files. */
export class MergeConflictError extends Error {
  constructor(
    readonly from: string,
    readonly to: string,
    readonly files: string[],
  ) {
    super(`merging ${from} into ${to} conflicts in ${files.length ? files.join(', ') : 'some files'}`);
    this.name = 'MergeConflictError';
  }
}

/** The first 12 characters of a SHA. */
export function short(sha: string): string {
  return sha.slice(0, 12);
}
