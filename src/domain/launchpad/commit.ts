/**
 * Commits as builds' input: the `gitilesCommit`-like `{host, project, ref, id}` a poller schedules a
 * build for, the tags that make such builds searchable, and how a git remote URL names its host and
 * project. Pure: workflows may import it.
 */

/** A commit on a branch of a git remote, as a build's input (Buildbucket's `gitilesCommit`). */
export interface GitilesCommit {
  /** The remote's host (`git.launchpad.net`), `localhost` for a `file://` remote. */
  host: string;
  /** The repository's path on the host, without a leading `/` or a trailing `.git`. */
  project: string;
  /** `refs/heads/<branch>`. */
  ref: string;
  /** The commit SHA. */
  id: string;
}

/** One commit as a poller reports it. */
export interface PolledCommit {
  id: string;
  author: string;
  authorEmail: string;
  subject: string;
  /** Committer time, ISO 8601. */
  time: string;
}

/** The host and project a git remote URL names (`file://`, `http(s)://`, `ssh://`, `git://`, `user@host:path`). */
export function remoteIdentity(url: string): { host: string; project: string } {
  const clean = (p: string) =>
    p
      .replace(/^\/+/, '')
      .replace(/\/+$/, '')
      .replace(/\.git$/, '');
  const scp = /^(?:[^@/:\s]+@)?([^@/:\s]+):(?!\/\/)(.+)$/.exec(url);
  if (scp && !/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return { host: scp[1] ?? '', project: clean(scp[2] ?? '') };
  try {
    const u = new URL(url);
    if (u.protocol === 'file:') return { host: 'localhost', project: clean(decodeURIComponent(u.pathname)) };
    return { host: u.hostname, project: clean(decodeURIComponent(u.pathname)) };
  } catch {
    return { host: 'localhost', project: clean(url) };
  }
}

/** `refs/heads/<branch>`. */
export function branchRef(branch: string): string {
  return `refs/heads/${branch}`;
}

/** The branch of a `refs/heads/…` ref, or undefined for other refs. */
export function refBranch(ref: string): string | undefined {
  return ref.startsWith('refs/heads/') ? ref.slice('refs/heads/'.length) : undefined;
}

/** The `buildset` of builds of commit `c`, as Buildbucket writes it: `commit/gitiles/<host>/<project>/+/<id>`. */
export function commitBuildset(c: Pick<GitilesCommit, 'host' | 'project' | 'id'>): string {
  return `commit/gitiles/${c.host}/${c.project}/+/${c.id}`;
}

/** Tags of a build of commit `c`: its buildset and `gitiles_ref`. */
export function commitTags(c: GitilesCommit): string[] {
  return [`buildset:${commitBuildset(c)}`, `gitiles_ref:${c.ref}`];
}

/** The blamelist of `commits`: each author once, as `Name <email>`, in commit order. */
export function blamelist(commits: readonly PolledCommit[]): string[] {
  const out: string[] = [];
  for (const c of commits) {
    const who = c.authorEmail ? `${c.author} <${c.authorEmail}>` : c.author;
    if (!out.includes(who)) out.push(who);
  }
  return out;
}
