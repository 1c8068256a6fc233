/**
 * A git poller's work (Node side, run by the `pollBranch` and `scheduleCommitBuilds` activities):
 * fetch the branch, list the commits after the last one handled, and schedule builds of a commit
 * with the commit as input. Every build's request ID is `poller/<scheduler>/<commit>/<builder>`,
 * so a retried or repeated schedule returns the same build: no commit is built twice by one poller.
 */
import { durationMs } from '../config/launchpad.ts';
import { blamelist, commitTags, type PolledCommit } from '../domain/launchpad/commit.ts';
import { type LaunchpadContext, launchpadIds, parseBuilderPath } from './context.ts';
import { GitError } from './git.ts';
import { type PollerStatus } from './store.ts';

/** The scheduler's settings the poller workflow follows, read from the config on every poll. */
export interface PollerSettings {
  pollIntervalMs: number;
  mode: 'each' | 'newest';
  treeStableMs: number;
}

/** A commit to build, with the authors it blames. */
export interface CommitToBuild {
  commit: PolledCommit;
  blamelist: string[];
}

/** What one poll found. */
export type PollResult =
  | { kind: 'removed' }
  | {
      kind: 'ok';
      settings: PollerSettings;
      tip: string;
      /** Oldest first: every new commit (mode each, at most maxCommitsPerPoll), or the tip (mode newest). */
      commits: CommitToBuild[];
      /** More new commits remain after `commits` (mode each): poll again at once. */
      more: boolean;
    }
  | { kind: 'error'; settings: PollerSettings; error: string };

/** Fetches the scheduler's branch and lists what is new after `lastSeen` (everything is new when unknown). */
export async function pollBranch(
  ctx: LaunchpadContext,
  scheduler: string,
  lastSeen: string | undefined,
): Promise<PollResult> {
  const s = ctx.onCommitScheduler(scheduler);
  if (!s) return { kind: 'removed' };
  const settings: PollerSettings = {
    pollIntervalMs: durationMs(s.pollInterval),
    mode: s.mode,
    treeStableMs: durationMs(s.treeStableTimer),
  };
  const id = launchpadIds.poller(ctx.taskQueue, scheduler);
  const prior = await ctx.store.getPollerStatus(id);
  const status = (patch: Partial<PollerStatus>): Promise<void> =>
    ctx.store.recordPollerStatus({
      ...(prior ?? { id, scheduler, repo: s.repo, branch: s.branch }),
      repo: s.repo,
      branch: s.branch,
      ...patch,
      updateTime: new Date().toISOString(),
    });
  const mirror = ctx.mirror(s.repo);
  let tip: string | undefined;
  try {
    tip = (await mirror.fetch([s.branch])).get(s.branch);
    if (tip === undefined) throw new GitError('other', `branch ${s.branch} does not exist in ${s.repo}`, '');
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    await status({ lastError: error, lastErrorTime: new Date().toISOString() });
    ctx.logger.warn({ scheduler, repo: s.repo, branch: s.branch, error }, 'git poll failed; will retry');
    return { kind: 'error', settings, error };
  }
  const ok = { lastSuccessTime: new Date().toISOString(), lastCommit: lastSeen ?? tip };
  if (lastSeen === undefined || lastSeen === tip) {
    await status(ok);
    return { kind: 'ok', settings, tip, commits: [], more: false };
  }
  const known = (await mirror.hasCommit(lastSeen)) && (await mirror.isAncestor(lastSeen, tip));
  // A rewritten branch (force-push): Buildbot's answer is to build the new tip alone.
  const all = known
    ? await mirror.firstParentCommits(lastSeen, tip)
    : await mirror.firstParentCommits(undefined, tip, 1);
  await status(ok);
  if (s.mode === 'newest') {
    const newest = all[all.length - 1];
    if (!newest) return { kind: 'ok', settings, tip, commits: [], more: false };
    const commits = all.map(({ mergedAuthors: _m, ...c }) => c);
    const blame = [...new Set([...blamelist(commits), ...all.flatMap((c) => c.mergedAuthors)])];
    const { mergedAuthors: _m, ...commit } = newest;
    return { kind: 'ok', settings, tip, commits: [{ commit, blamelist: blame }], more: false };
  }
  const batch = all.slice(0, s.maxCommitsPerPoll).map(({ mergedAuthors, ...commit }) => ({
    commit,
    blamelist: [...new Set([...blamelist([commit]), ...mergedAuthors])],
  }));
  return { kind: 'ok', settings, tip, commits: batch, more: all.length > batch.length };
}

/** Schedules the scheduler's builders for `c`; returns their IDs. The same commit always gets the same builds. */
export async function scheduleCommitBuilds(
  ctx: LaunchpadContext,
  scheduler: string,
  c: CommitToBuild,
): Promise<string[]> {
  const s = ctx.onCommitScheduler(scheduler);
  if (!s) return [];
  const repo = ctx.repo(s.repo);
  if (!repo) return [];
  const commit = ctx.commitOf(repo, s.branch, c.commit.id);
  const ids: string[] = [];
  for (const path of s.builders) {
    const builder = parseBuilderPath(path);
    const b = await ctx.builds.schedule({
      builder,
      requestId: `poller/${scheduler}/${c.commit.id}/${builder.builder}`,
      gitilesCommit: commit,
      tags: [...commitTags(commit), `scheduler:${scheduler}`],
      properties: {
        ...s.properties,
        repository: repo.url,
        branch: s.branch,
        revision: c.commit.id,
        blamelist: c.blamelist,
        scheduler,
      },
      createdBy: `scheduler:${scheduler}`,
    });
    ids.push(b.id);
  }
  const id = launchpadIds.poller(ctx.taskQueue, scheduler);
  const prior = await ctx.store.getPollerStatus(id);
  await ctx.store.recordPollerStatus({
    ...(prior ?? { id, scheduler, repo: s.repo, branch: s.branch }),
    lastCommit: c.commit.id,
    updateTime: new Date().toISOString(),
  });
  return ids;
}
