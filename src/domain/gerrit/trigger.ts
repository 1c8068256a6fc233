/**
 * When Kiln verifies a Gerrit patchset: which branches a project config covers, Norbert's rule,
 * Commit-Queue votes, the mapping from stream events to actions, and the CQ properties every build
 * of a verification carries. Pure and zod-free, so the verification workflow may import it; the
 * per-project config is validated Node side (`projectConfig.ts`).
 */
import type { BuilderId } from '../build.ts';
import {
  type AccountId,
  type ChangeStatus,
  type GerritChange,
  type GerritEventAccount,
  type GerritPatchset,
  type GerritStreamEvent,
  accountLabel,
  CODE_REVIEW,
  COMMIT_QUEUE,
  changeUrl,
  currentPatchset,
  defaultBaseUrl,
  isRecheckComment,
  labelVotes,
  VERIFIED,
} from './change.ts';
import type { GerritProjectConfig } from './projectConfig.ts';

/** Branch name without `refs/heads/`, so configs and events compare equal either way. */
function shortBranch(branch: string): string {
  return branch.startsWith('refs/heads/') ? branch.slice('refs/heads/'.length) : branch;
}

/** True when `config` covers `branch` (all branches when it lists none). */
export function configCoversBranch(config: GerritProjectConfig, branch: string): boolean {
  if (config.branches === undefined) return true;
  const b = shortBranch(branch);
  return config.branches.some((x) => shortBranch(x) === b);
}

/** A yes/no with the reason shown to users (in logs, build summaries and Gerrit messages). */
export interface TriggerDecision {
  build: boolean;
  reason: string;
}

function closedReason(status: ChangeStatus): string | undefined {
  if (status === 'MERGED') return 'change is merged';
  if (status === 'ABANDONED') return 'change is abandoned';
  return undefined;
}

/**
 * Norbert's rule (LibreOffice's Buildbot Gerrit Plugin): build iff the change is open, nobody voted
 * Code-Review < 0 or Verified < 0, and at least one member of the reviewer group voted
 * Code-Review > 0. Evaluate it on fresh change detail (`labels` of the current patchset), never on
 * an event alone: a later -1 or a new patchset must win.
 */
export function norbertsRule(
  change: GerritChange,
  reviewerGroupMembers: ReadonlySet<AccountId>,
  opts: { selfUsername?: string } = {},
): TriggerDecision {
  const closed = closedReason(change.status);
  if (closed) return { build: false, reason: closed };
  const codeReview = labelVotes(change, CODE_REVIEW);
  const vetoCR = codeReview.find((v) => v.value < 0);
  if (vetoCR) return { build: false, reason: `${CODE_REVIEW} ${vetoCR.value} by ${accountLabel(vetoCR.account)}` };
  // Kiln's own Verified -1 is the verdict of an earlier run; a new trigger (recheck) may run again.
  const vetoV = labelVotes(change, VERIFIED).find(
    (v) => v.value < 0 && (opts.selfUsername === undefined || v.account.username !== opts.selfUsername),
  );
  if (vetoV) return { build: false, reason: `${VERIFIED} ${vetoV.value} by ${accountLabel(vetoV.account)}` };
  const approval = codeReview.find((v) => v.value > 0 && reviewerGroupMembers.has(v.account._account_id));
  if (approval) {
    return { build: true, reason: `${CODE_REVIEW} +${approval.value} by ${accountLabel(approval.account)}` };
  }
  return { build: false, reason: `no ${CODE_REVIEW} > 0 by a member of the reviewer group` };
}

/** What a verification runs: a plain verification, or a CQ dry run / full run. */
export type VerificationMode = 'verify' | 'dry-run' | 'full-run';

/** The CQ run a Commit-Queue value asks for: +1 dry run, +2 (or more) full run, otherwise none. */
export function commitQueueMode(value: number | undefined): 'dry-run' | 'full-run' | undefined {
  if (value === undefined || value <= 0) return undefined;
  return value >= 2 ? 'full-run' : 'dry-run';
}

/** The highest Commit-Queue vote on the change's current patchset, or 0 when nobody voted. */
export function commitQueueVote(change: GerritChange): number {
  let max = 0;
  for (const v of labelVotes(change, COMMIT_QUEUE)) max = Math.max(max, v.value);
  return max;
}

/** The result of evaluating a project's trigger on fresh change detail. */
export type TriggerEvaluation =
  { build: true; reason: string; mode: VerificationMode; patchset: GerritPatchset } | { build: false; reason: string };

/**
 * Decides on fresh change detail (read with its current revision and detailed labels) whether the
 * project's trigger asks for a verification of the current patchset now. When `patchset` is given
 * (the one an event named) and it is no longer current, the answer is no: the newer patchset's
 * own event decides. `reviewerGroupMembers` is needed for the `approval` trigger; Verified votes by
 * `selfUsername` (Kiln's own account) do not veto.
 */
export function evaluateTrigger(
  config: GerritProjectConfig,
  change: GerritChange,
  opts: { reviewerGroupMembers?: ReadonlySet<AccountId>; patchset?: number; selfUsername?: string } = {},
): TriggerEvaluation {
  if (change.project !== config.project) {
    return { build: false, reason: `change is in project ${change.project}, not ${config.project}` };
  }
  if (!configCoversBranch(config, change.branch)) {
    return { build: false, reason: `branch ${change.branch} is not verified` };
  }
  const closed = closedReason(change.status);
  if (closed) return { build: false, reason: closed };
  const current = currentPatchset(change);
  if (!current) return { build: false, reason: 'change detail has no current revision' };
  if (opts.patchset !== undefined && opts.patchset !== current.number) {
    return { build: false, reason: `patchset ${opts.patchset} is outdated (current is ${current.number})` };
  }
  switch (config.trigger) {
    case 'patchset-created':
      return { build: true, reason: `patchset ${current.number} uploaded`, mode: 'verify', patchset: current };
    case 'approval': {
      const d = norbertsRule(change, opts.reviewerGroupMembers ?? new Set(), { selfUsername: opts.selfUsername });
      return d.build
        ? { build: true, reason: d.reason, mode: 'verify', patchset: current }
        : { build: false, reason: d.reason };
    }
    case 'commit-queue': {
      const vote = commitQueueVote(change);
      const mode = commitQueueMode(vote);
      if (!mode) return { build: false, reason: `no ${COMMIT_QUEUE} vote` };
      return { build: true, reason: `${COMMIT_QUEUE} +${vote}`, mode, patchset: current };
    }
  }
}

/**
 * What to do about a stream event for one project config:
 * - `verify`: verify this patchset now (the trigger needs no fresh state);
 * - `evaluate`: read the change detail and call `evaluateTrigger` (fresh state decides);
 * - `cancel`: cancel the change's verifications (abandoned, or Commit-Queue vote removed);
 * - `merged`: the change merged: cancel builds not started, leave the vote alone;
 * - `ignore`: nothing to do (`reason` says why).
 */
export type GerritEventAction = 'verify' | 'evaluate' | 'cancel' | 'merged' | 'ignore';

/** One project config's decision about one stream event. */
export interface GerritEventDecision {
  action: GerritEventAction;
  reason: string;
  config: GerritProjectConfig;
  host: string;
  project: string;
  branch: string;
  change: number;
  patchset: number;
  revision: string;
  ref: string;
  /** A new patchset arrived: verifications of older patchsets of this change are obsolete. */
  supersedesOlderPatchsets: boolean;
  /**
   * The event is a new trigger (a vote changed to one that may qualify, a `recheck` comment, a Commit-Queue
   * vote): a verification of this patchset that already ended runs again. Otherwise (an upload or restore that
   * only asks the trigger to decide) an ended verification that voted is not repeated.
   */
  fresh: boolean;
  /** For Commit-Queue votes: the run the vote asks for (+1 dry run, +2 full run). */
  mode?: 'dry-run' | 'full-run';
  /** The change's web URL as the event gives it (Gerrit's canonical URL), when it does. */
  changeUrl?: string;
  eventType: GerritStreamEvent['type'];
}

/** Options for `routeGerritEvent`. */
export interface GerritRouteOptions {
  /** Kiln's own Gerrit account: events it authored (its own votes and messages) trigger nothing. */
  self?: { username?: string; email?: string };
}

function isSelf(a: GerritEventAccount | undefined, self: GerritRouteOptions['self']): boolean {
  if (!a || !self) return false;
  return (
    (self.username !== undefined && a.username === self.username) ||
    (self.email !== undefined && a.email !== undefined && a.email.toLowerCase() === self.email.toLowerCase())
  );
}

function decideForConfig(
  config: GerritProjectConfig,
  event: GerritStreamEvent,
  opts: GerritRouteOptions,
): { action: GerritEventAction; reason: string; supersedes?: boolean; fresh?: boolean; mode?: 'dry-run' | 'full-run' } {
  const ps = event.patchSet.number;
  switch (event.type) {
    case 'patchset-created':
      return config.trigger === 'patchset-created'
        ? { action: 'verify', reason: `patchset ${ps} uploaded`, supersedes: true, fresh: true }
        : {
            action: 'evaluate',
            reason: `patchset ${ps} uploaded; ${config.trigger} trigger decides`,
            supersedes: true,
          };
    case 'change-restored':
      return config.trigger === 'patchset-created'
        ? { action: 'verify', reason: 'change restored' }
        : { action: 'evaluate', reason: `change restored; ${config.trigger} trigger decides` };
    case 'change-merged':
      return { action: 'merged', reason: 'change merged' };
    case 'change-abandoned':
      return { action: 'cancel', reason: 'change abandoned' };
    case 'comment-added': {
      if (isSelf(event.author, opts.self)) return { action: 'ignore', reason: "Kiln's own comment" };
      const who = event.author ? accountLabel(event.author) : 'someone';
      if (isRecheckComment(event.comment)) {
        return config.trigger === 'patchset-created'
          ? { action: 'verify', reason: `recheck requested by ${who}`, fresh: true }
          : {
              action: 'evaluate',
              reason: `recheck requested by ${who}; ${config.trigger} trigger decides`,
              fresh: true,
            };
      }
      if (config.trigger === 'patchset-created') {
        return { action: 'ignore', reason: 'votes do not trigger verifications for this project' };
      }
      const labels = config.trigger === 'approval' ? [CODE_REVIEW, VERIFIED] : [COMMIT_QUEUE];
      // Gerrit lists every label the author may vote on; only those this comment changed carry `oldValue`.
      const relevant = event.approvals.filter(
        (a) => labels.includes(a.type) && a.oldValue !== undefined && a.oldValue !== a.value,
      );
      if (relevant.length === 0) return { action: 'ignore', reason: `no ${labels.join('/')} vote changed` };
      if (config.trigger === 'commit-queue') {
        const cq = relevant[0]!;
        if (cq.value > 0) {
          return {
            action: 'evaluate',
            reason: `${COMMIT_QUEUE} +${cq.value} by ${who}`,
            fresh: true,
            mode: cq.value >= 2 ? 'full-run' : 'dry-run',
          };
        }
        if (cq.oldValue !== undefined && cq.oldValue > 0) {
          return { action: 'cancel', reason: `${COMMIT_QUEUE} vote removed` };
        }
        return { action: 'ignore', reason: `${COMMIT_QUEUE} ${cq.value}` };
      }
      const what = relevant.map((a) => `${a.type} ${a.value > 0 ? '+' : ''}${a.value}`).join(', ');
      // Only a vote that may newly satisfy Norbert's rule (a positive Code-Review, or a veto lifted) is a new trigger.
      if (!relevant.some((a) => (a.type === CODE_REVIEW && a.value > 0) || (a.oldValue ?? 0) < 0)) {
        return { action: 'ignore', reason: `${what} by ${who} cannot start a verification` };
      }
      return { action: 'evaluate', reason: `${what} by ${who}; Norbert's rule decides`, fresh: true };
    }
  }
}

/**
 * Maps a stream event from Gerrit `host` to what Kiln should do, once per project config it
 * concerns (same host and project, branch covered). Configs the event does not concern are left
 * out, so an empty array means "not ours".
 */
export function routeGerritEvent(
  host: string,
  event: GerritStreamEvent,
  configs: readonly GerritProjectConfig[],
  opts: GerritRouteOptions = {},
): GerritEventDecision[] {
  const out: GerritEventDecision[] = [];
  for (const config of configs) {
    if (config.host !== host || config.project !== event.change.project) continue;
    if (!configCoversBranch(config, event.change.branch)) continue;
    const d = decideForConfig(config, event, opts);
    out.push({
      action: d.action,
      reason: d.reason,
      config,
      host,
      project: event.change.project,
      branch: shortBranch(event.change.branch),
      change: event.change.number,
      patchset: event.patchSet.number,
      revision: event.patchSet.revision,
      ref: event.patchSet.ref,
      supersedesOlderPatchsets: d.supersedes ?? false,
      fresh: d.fresh ?? false,
      ...(d.mode ? { mode: d.mode } : {}),
      ...(event.change.url ? { changeUrl: event.change.url } : {}),
      eventType: event.type,
    });
  }
  return out;
}

/**
 * The properties every build of a verification carries. Two sets, by how the verification was triggered:
 *
 * - **CQ** (the `commit-queue` trigger, LUCI's Gerrit → CQ → Buildbucket flow): exactly what LUCI's CQ puts in a
 *   build's `properties` — `attempt_start_ts`, `category: "cq"`, `event.change.id` (`<project>~<branch>~<Change-Id>`,
 *   URL-encoded), `event.change.number`, `event.change.url`, `event.patchSet.ref`, `gerrit`, `master` (the LUCI
 *   bucket), `patch_project`, `patch_storage: "gerrit"`, `reason: "CQ"`, `revision: "HEAD"` (the recipe applies the
 *   patch set's ref on top of the branch head) — plus what Swarmbucket adds: `buildername` and `blamelist`. Kiln
 *   adds `dry_run` (CQ+1 or CQ+2) and `event.change.branch`.
 * - **BGP** (`patchset-created`, `approval`: the Buildbot Gerrit Plugin's tinderbox flow): the same keys, but
 *   `reason` is why the trigger fired, `revision` the patch set's commit SHA (what a tinderbox builds), and
 *   `event.change.id` Gerrit's own REST id; no `master`.
 */
export interface CqBuildProperties {
  /** `<url-encoded project>~<url-encoded branch>~<Change-Id>` (CQ), or Gerrit's REST id of the change (BGP). */
  'event.change.id': string;
  'event.change.number': number;
  'event.change.url': string;
  'event.patchSet.ref': string;
  /** The change's target branch (what tinderboxes get as `GERRIT_TASK_BRANCH`), when known. */
  'event.change.branch'?: string;
  /** The Gerrit server's base URL (config `baseUrl`, else `https://<host>`). */
  gerrit: string;
  /** CQ only: the build's LUCI bucket (`luci.<project>.<bucket>`, or the bucket's own name when it is one). */
  master?: string;
  patch_project: string;
  patch_storage: 'gerrit';
  /** `CQ` (CQ), or why the trigger fired (BGP). */
  reason: string;
  /** `HEAD` (CQ), or the patchset's commit SHA: what a tinderbox checks out (BGP). */
  revision: string;
  /** Always `cq`: recipes test `category == 'cq'` to know a Gerrit patch is under test. */
  category: 'cq';
  /** When this verification attempt started, in microseconds since the epoch. */
  attempt_start_ts: number;
  buildername: string;
  /** Who to blame: the change owner's email, when Gerrit shows it. */
  blamelist: string[];
  /** Only for Commit-Queue verifications: true for a dry run (CQ+1). */
  dry_run?: boolean;
}

/** Inputs of `cqBuildProperties`. */
export interface CqBuildPropertiesInput {
  /** Gerrit host name (no scheme), as in the project config. */
  host: string;
  /** The host's base URL (scheme, host, path prefix). @default `https://<host>` */
  baseUrl?: string;
  /** The change's URL from the stream event (Gerrit's canonical one). @default `<baseUrl>/c/<project>/+/<n>` */
  changeUrl?: string;
  /** The change's target branch. */
  branch?: string;
  /** `branch` and `change_id` make the CQ's `event.change.id`; without them Gerrit's REST `id` is used. */
  change: Pick<GerritChange, 'id' | 'project' | '_number' | 'owner'> &
    Partial<Pick<GerritChange, 'branch' | 'change_id'>>;
  patchset: GerritPatchset;
  builder: BuilderId;
  /** Start of the verification attempt (ms since epoch); the same for every builder of the attempt. */
  attemptStartMs: number;
  /** Why the trigger fired; BGP builds carry it as `reason`. @default 'CQ' */
  reason?: string;
  /** `dry-run`/`full-run` (a Commit-Queue vote): the CQ set, with `dry_run`. @default 'verify' (the BGP set) */
  mode?: VerificationMode;
}

/**
 * The LUCI bucket name of a builder's bucket, as CQ's `master` property and Buildbucket v1 name it: the bucket
 * itself when it is already `luci.<…>` (`luci.infra.try`), else `luci.<project>.<bucket>`.
 */
export function luciBucketName(b: Pick<BuilderId, 'project' | 'bucket'>): string {
  return b.bucket.startsWith('luci.') ? b.bucket : `luci.${b.project}.${b.bucket}`;
}

/** The CQ build properties of one builder's build in a verification (see `CqBuildProperties`). Pure. */
export function cqBuildProperties(input: CqBuildPropertiesInput): CqBuildProperties {
  const base = (input.baseUrl ?? defaultBaseUrl(input.host)).replace(/\/+$/, '');
  const cq = input.mode === 'dry-run' || input.mode === 'full-run';
  const { change } = input;
  const branch = change.branch ?? input.branch;
  const common = {
    'event.change.number': change._number,
    'event.change.url': input.changeUrl ?? changeUrl(base, change.project, change._number),
    'event.patchSet.ref': input.patchset.ref,
    gerrit: base,
    patch_project: change.project,
    patch_storage: 'gerrit' as const,
    category: 'cq' as const,
    attempt_start_ts: Math.floor(input.attemptStartMs) * 1000,
    buildername: input.builder.builder,
    blamelist: change.owner.email ? [change.owner.email] : [],
  };
  const props: CqBuildProperties = cq
    ? {
        ...common,
        'event.change.id':
          branch !== undefined && change.change_id !== undefined
            ? `${encodeURIComponent(change.project)}~${encodeURIComponent(branch)}~${change.change_id}`
            : change.id,
        master: luciBucketName(input.builder),
        reason: 'CQ',
        revision: 'HEAD',
      }
    : { ...common, 'event.change.id': change.id, reason: input.reason ?? 'CQ', revision: input.patchset.revision };
  if (input.branch !== undefined) props['event.change.branch'] = input.branch;
  if (cq) props.dry_run = input.mode === 'dry-run';
  return props;
}
