/**
 * Promotion attempts: one per try at bringing a green commit of `from` into `to` (or, for a
 * periodic merge, `from`'s tip into `to`). Stored so `kiln promotions` lists them after Temporal's
 * retention, and so a build's page can say which promotion it fed. Pure: workflows may import it.
 */

/** Where an attempt stands. */
export const PROMOTION_STATES = [
  /** Planning or pushing. */
  'RUNNING',
  /** The commit (or a merge commit of it) was pushed to `to`. */
  'PROMOTED',
  /** `to` already had the commit: nothing to push. */
  'UP_TO_DATE',
  /** No commit of `from` newer than `to` has every required builder green. */
  'NOT_GREEN',
  /** Dry run: nothing pushed; `message` says what would have been. */
  'DRY_RUN',
  /** A merge conflict, a refused push (not a fast-forward, auth, a hook), or a missing branch: `reason` says. */
  'FAILED',
] as const;
export type PromotionState = (typeof PROMOTION_STATES)[number];

/** True for the states an attempt never leaves. */
export function isFinalPromotionState(s: PromotionState): boolean {
  return s !== 'RUNNING';
}

/** A green commit a build end reported to a promotion: the coordinator's wake-up call. */
export interface PromotionCandidate {
  commit: string;
  /** The build whose SUCCESS completed the set of required builders. */
  buildId: string;
}

/** One attempt, as stored and listed. */
export interface PromotionAttempt {
  /** The attempt's workflow ID: `promotion/<task queue>/<name>/<n>`, or the periodic merge's scheduled run. */
  id: string;
  /** The promotion's or periodic merge's name. */
  name: string;
  kind: 'promotion' | 'merge';
  repo: string;
  from: string;
  to: string;
  mode: 'fast-forward' | 'merge';
  state: PromotionState;
  /** The commit of `from` brought into `to`. */
  commit?: string;
  /** What `to` pointed at before, and after a push. */
  before?: string;
  after?: string;
  /** Builds whose SUCCESS made `commit` green (what fed this attempt). */
  builds: string[];
  /** Older green commits this attempt's newer commit superseded. */
  superseded: string[];
  /** Builds of the superseded commits (they fed this attempt too). */
  supersededBuilds: string[];
  /** Why it failed, or what a dry run would do; set when final. */
  reason?: string;
  message?: string;
  dryRun: boolean;
  createTime: string;
  updateTime: string;
  version: number;
}

/** The `KilnTags` search attribute of an attempt's workflow. */
export function promotionTags(a: Pick<PromotionAttempt, 'name' | 'kind' | 'repo' | 'from' | 'to'>): string[] {
  return [`promotion:${a.name}`, `kind:${a.kind}`, `repo:${a.repo}`, `from:${a.from}`, `to:${a.to}`];
}
