/**
 * Branch promotion (seed 004's "merge the commits that built green into stable"):
 *
 * - `promotionWorkflow`, ID `promotion/<task queue>/<name>`: one per configured promotion, started by the first
 *   green commit's signal (signal-with-start from the build-end hook). It runs one attempt at a
 *   time; green commits reported meanwhile wait, and the next attempt takes the newest of them, so
 *   a newer green commit supersedes older ones. Continues as new with its waiting commits.
 * - `promotionAttemptWorkflow`, ID `promotion/<task queue>/<name>/<n>` (or a periodic merge's scheduled run):
 *   one per attempt, searchable (`KilnStatus`, `KilnTags` `promotion:<name>`, `repo:…`, `to:…`),
 *   stored for `kiln promotions`, and announced to the notification rules when it ends.
 * - `promotionDryRunWorkflow`: what every promotion and merge would push now, pushing nothing.
 */
import {
  ActivityFailure,
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  executeChild,
  log,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { LaunchpadActivities } from '../activities/launchpad.ts';
import { type PromotionAttempt, type PromotionCandidate, promotionTags } from '../src/domain/launchpad/promotion.ts';
import { KilnStatus, KilnTags } from '../src/domain/searchAttributes.ts';

/** What a promotion or merge is, as configured when the workflow started (for display; activities read the live config). */
export interface PromotionSpec {
  repo: string;
  from: string;
  to: string;
  mode: 'fast-forward' | 'merge';
}

/** Input of `promotionWorkflow`. */
export interface PromotionWorkflowInput {
  promotion: string;
  spec: PromotionSpec;
  /** Carried over by continue-as-new. */
  state?: PromotionWorkflowState;
  /** Continue as new after this many attempts in one run (tests lower it). @default 100 */
  maxAttemptsPerRun?: number;
}

/** What a run hands to the next. */
export interface PromotionWorkflowState {
  waiting: PromotionCandidate[];
  attempts: number;
  last?: { id: string; state: string; commit?: string };
}

/** A commit whose required builders are all green now. */
export const candidateSignal = defineSignal<[PromotionCandidate]>('promotionCandidate');
/** The promotion's waiting commits and last attempt. */
export const promotionStateQuery = defineQuery<PromotionWorkflowState & { running?: string }>('promotionState');

const MAX_WAITING = 100;

/** See the module comment. */
export async function promotionWorkflow(input: PromotionWorkflowInput): Promise<void> {
  const st: PromotionWorkflowState = input.state ?? { waiting: [], attempts: 0 };
  let running: string | undefined;
  setHandler(candidateSignal, (c) => {
    if (st.waiting.some((w) => w.commit === c.commit)) return;
    st.waiting.push(c);
    if (st.waiting.length > MAX_WAITING) st.waiting.splice(0, st.waiting.length - MAX_WAITING);
  });
  setHandler(promotionStateQuery, () => ({ ...st, running }));
  const historyLong = () => workflowInfo().continueAsNewSuggested;
  let runs = 0;
  for (;;) {
    await condition(() => st.waiting.length > 0 || historyLong());
    if (st.waiting.length > 0) {
      const candidates = st.waiting;
      st.waiting = [];
      st.attempts += 1;
      runs += 1;
      const id = `${workflowInfo().workflowId}/${st.attempts}`;
      running = id;
      try {
        const a = await executeChild(promotionAttemptWorkflow, {
          workflowId: id,
          args: [{ kind: 'promotion', name: input.promotion, spec: input.spec, candidates }],
          typedSearchAttributes: [
            { key: KilnStatus, value: 'RUNNING' },
            { key: KilnTags, value: promotionTags({ name: input.promotion, kind: 'promotion', ...input.spec }) },
          ],
          staticSummary: `Promote ${input.spec.repo} ${input.spec.from} → ${input.spec.to} (${input.promotion}, attempt ${st.attempts})`,
        });
        st.last = { id, state: a.state, ...(a.commit ? { commit: a.commit } : {}) };
      } catch (e) {
        log.warn('promotion attempt failed', { id, error: String(e) });
        st.last = { id, state: 'FAILED' };
      }
      running = undefined;
    }
    if (historyLong() || runs >= (input.maxAttemptsPerRun ?? 100)) {
      await condition(allHandlersFinished);
      return continueAsNew<typeof promotionWorkflow>({ ...input, state: st });
    }
  }
}

/** Input of `promotionAttemptWorkflow`. */
export interface PromotionAttemptInput {
  kind: 'promotion' | 'merge';
  name: string;
  spec: PromotionSpec;
  candidates?: PromotionCandidate[];
}

const { recordPromotionAttempt, announcePromotionEnded } = proxyActivities<LaunchpadActivities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', maximumInterval: '1m' },
});

const { runPromotion, dryRunPromotions } = proxyActivities<LaunchpadActivities>({
  startToCloseTimeout: '1h',
  heartbeatTimeout: '30s',
  retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '5m', maximumAttempts: 8 },
});

/** See the module comment. */
export async function promotionAttemptWorkflow(input: PromotionAttemptInput): Promise<PromotionAttempt> {
  const info = workflowInfo();
  const now = () => new Date(Date.now()).toISOString();
  const a: PromotionAttempt = {
    id: info.workflowId,
    name: input.name,
    kind: input.kind,
    ...input.spec,
    state: 'RUNNING',
    builds: [],
    superseded: [],
    supersededBuilds: [],
    dryRun: false,
    createTime: now(),
    updateTime: now(),
    version: 1,
  };
  upsertSearchAttributes([
    { key: KilnStatus, value: 'RUNNING' },
    { key: KilnTags, value: promotionTags(a) },
  ]);
  await recordPromotionAttempt({ attempt: a });
  try {
    const o = await runPromotion({
      kind: input.kind,
      name: input.name,
      candidates: input.candidates ?? [],
      // The attempt's start: a retried merge makes the same merge commit (same SHA).
      mergeTime: new Date(info.startTime).toISOString(),
    });
    Object.assign(a, o, { repo: o.repo || a.repo, from: o.from || a.from, to: o.to || a.to });
  } catch (e) {
    a.state = 'FAILED';
    a.reason = e instanceof ActivityFailure ? (e.cause?.message ?? e.message) : String(e);
  }
  a.updateTime = now();
  a.version = 2;
  upsertSearchAttributes([
    { key: KilnStatus, value: a.state },
    { key: KilnTags, value: [...promotionTags(a), ...(a.commit ? [`commit:${a.commit}`] : [])] },
  ]);
  await recordPromotionAttempt({ attempt: a });
  if (a.state === 'PROMOTED' || a.state === 'FAILED') await announcePromotionEnded({ attempt: a });
  log.info('promotion attempt ended', { id: a.id, state: a.state, commit: a.commit, reason: a.reason });
  return a;
}

/** Input of `promotionDryRunWorkflow`. */
export interface PromotionDryRunInput {
  repo?: string;
}

/** See the module comment. */
export async function promotionDryRunWorkflow(input: PromotionDryRunInput) {
  const r = await dryRunPromotions(input);
  if (!Array.isArray(r)) throw ApplicationFailure.nonRetryable('dry run returned nothing', 'INTERNAL');
  return r;
}
