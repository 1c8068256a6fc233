/**
 * One promotion or periodic-merge attempt's git work (Node side, run by the `runPromotion`
 * activity): fetch `from` and `to`, pick what to bring into `to`, check it is green, push it.
 *
 * A promotion takes the newest commit on `from`'s first-parent line after `to` whose every required
 * builder's newest build is SUCCESS: a newer green commit supersedes older ones still waiting, a
 * commit `to` already has is never pushed again (so `to` never moves backwards), and a red commit
 * is never pushed. A periodic merge takes `from`'s tip. Pushes never force: a target that moved or
 * diverged, a refused push or a conflicting merge ends the attempt with the reason.
 */
import { type MergeConfig, type PromotionConfig } from '../config/launchpad.ts';
import { type PromotionCandidate, type PromotionState } from '../domain/launchpad/promotion.ts';
import { type LaunchpadContext } from './context.ts';
import { GitError, MergeConflictError, short } from './git.ts';

/** How far back on `from` a promotion looks for a green commit. */
const MAX_COMMITS_SCANNED = 100;

/** What `runPromotion` asks for. */
export interface PromotionRequest {
  kind: 'promotion' | 'merge';
  name: string;
  /** Green commits reported since the last attempt (promotions). */
  candidates?: PromotionCandidate[];
  /** Merge commits are dated this, so a retried attempt makes the same merge commit. */
  mergeTime: string;
  /** @default the config's git.dryRun */
  dryRun?: boolean;
}

/** An attempt's outcome. */
export interface PromotionOutcome {
  state: Exclude<PromotionState, 'RUNNING'>;
  repo: string;
  from: string;
  to: string;
  mode: 'fast-forward' | 'merge';
  commit?: string;
  before?: string;
  after?: string;
  builds: string[];
  superseded: string[];
  supersededBuilds: string[];
  reason?: string;
  message?: string;
  dryRun: boolean;
}

/** A failure worth retrying (the remote is unreachable, storage is down): the activity rethrows it. */
export class TransientPromotionError extends Error {}

type Spec = { kind: 'promotion'; p: PromotionConfig } | { kind: 'merge'; m: MergeConfig };

/** Runs one attempt; see the module comment. Throws TransientPromotionError for what a retry may fix. */
export async function runPromotion(
  ctx: LaunchpadContext,
  req: PromotionRequest,
  signal?: AbortSignal,
): Promise<PromotionOutcome> {
  const spec: Spec | undefined =
    req.kind === 'promotion'
      ? (() => {
          const p = ctx.promotion(req.name);
          return p ? { kind: 'promotion' as const, p } : undefined;
        })()
      : (() => {
          const m = ctx.merge(req.name);
          return m ? { kind: 'merge' as const, m } : undefined;
        })();
  const dryRun = req.dryRun ?? ctx.config.git.dryRun;
  if (!spec) {
    return {
      state: 'FAILED',
      repo: '',
      from: '',
      to: '',
      mode: 'fast-forward',
      builds: [],
      superseded: [],
      supersededBuilds: [],
      reason: `${req.kind} ${req.name} is no longer configured`,
      dryRun,
    };
  }
  const c = spec.kind === 'promotion' ? spec.p : spec.m;
  const base = {
    repo: c.repo,
    from: c.from,
    to: c.to,
    mode: c.mode,
    builds: [] as string[],
    superseded: [] as string[],
    supersededBuilds: [] as string[],
    dryRun,
  };
  const repo = ctx.repo(c.repo);
  if (!repo) return { ...base, state: 'FAILED', reason: `repository ${c.repo} is not configured` };
  const mirror = ctx.mirror(c.repo);
  const transient = (e: unknown): never => {
    if (e instanceof GitError && e.kind === 'unreachable')
      throw new TransientPromotionError(`${c.repo} is unreachable: ${e.message}`);
    throw e;
  };
  let tips: Map<string, string | undefined>;
  try {
    tips = await mirror.fetch([c.from, c.to], signal);
  } catch (e) {
    if (e instanceof GitError && e.kind !== 'unreachable')
      return { ...base, state: 'FAILED', reason: `fetching ${c.repo}: ${e.message}` };
    return transient(e);
  }
  const fromTip = tips.get(c.from);
  const toTip = tips.get(c.to);
  if (!fromTip) return { ...base, state: 'FAILED', reason: `branch ${c.from} does not exist in ${c.repo}` };
  if (!toTip) return { ...base, state: 'FAILED', reason: `branch ${c.to} does not exist in ${c.repo}` };

  let commit: string;
  if (spec.kind === 'merge') {
    commit = fromTip;
  } else {
    const p = spec.p;
    const ahead = (await mirror.firstParentCommits(toTip, fromTip)).slice(-MAX_COMMITS_SCANNED).reverse();
    if (ahead.length === 0 || (await mirror.isAncestor(fromTip, toTip))) {
      return { ...base, state: 'UP_TO_DATE', before: toTip, message: `${c.to} already contains ${c.from}` };
    }
    let chosen: { id: string; builds: string[] } | undefined;
    let newestWhy = '';
    for (const candidate of ahead) {
      const g = await ctx.isGreen(repo, candidate.id, p.when);
      if (g.green) {
        chosen = { id: candidate.id, builds: g.builds };
        break;
      }
      if (!newestWhy) {
        newestWhy = `newest ${short(candidate.id)}: ${[...g.red, ...g.missing.map((m) => `${m} has not built it`)].join(', ')}`;
      }
    }
    if (!chosen) {
      return {
        ...base,
        state: 'NOT_GREEN',
        before: toTip,
        reason: `no commit of ${c.from} after ${c.to} has every required builder green (${newestWhy})`,
      };
    }
    const chosenAt = ahead.findIndex((x) => x.id === chosen.id);
    const older = new Set(ahead.slice(chosenAt + 1).map((x) => x.id));
    for (const cand of req.candidates ?? []) {
      if (cand.commit !== chosen.id && older.has(cand.commit)) {
        if (!base.superseded.includes(cand.commit)) base.superseded.push(cand.commit);
        if (!base.supersededBuilds.includes(cand.buildId)) base.supersededBuilds.push(cand.buildId);
      }
    }
    base.builds = chosen.builds;
    commit = chosen.id;
  }
  const what = spec.kind === 'merge' ? `Merge ${c.from} into ${c.to}` : `Merge ${c.from} ${short(commit)} into ${c.to}`;
  try {
    const r = await mirror.push(
      {
        commit,
        from: c.from,
        to: c.to,
        mode: c.mode,
        mergeTime: req.mergeTime,
        mergeMessage: `${what}\n\nMade by Kiln (${req.kind} ${req.name}).`,
        committer: ctx.config.git.committer,
        dryRun,
      },
      signal,
    );
    if (r.outcome === 'NOOP') return { ...base, state: 'UP_TO_DATE', commit, before: r.before, message: r.message };
    if (r.outcome === 'DRY_RUN')
      return { ...base, state: 'DRY_RUN', commit, before: r.before, after: r.after, message: r.message };
    return { ...base, state: 'PROMOTED', commit, before: r.before, after: r.after, message: r.message };
  } catch (e) {
    if (e instanceof MergeConflictError) return { ...base, state: 'FAILED', commit, before: toTip, reason: e.message };
    if (e instanceof GitError && e.kind !== 'unreachable') {
      const why =
        e.kind === 'auth' ? 'push refused (credentials)' : e.kind === 'rejected' ? 'push refused' : 'git failed';
      return { ...base, state: 'FAILED', commit, before: toTip, reason: `${why}: ${e.message}` };
    }
    return transient(e);
  }
}
