/**
 * `changeVerificationWorkflow`: one Gerrit patchset verified by one child build per configured
 * builder (BGP: one per platform) — see docs/architecture.md "Change verification". Workflow ID
 * `verify/<host>/<change>/<patchset>`; the API starts it with signal-with-start, so a second
 * trigger for the same patchset joins the running verification as a signal.
 *
 * Life: the first `verify`/`evaluate` event is decided on fresh change detail (activity); a yes
 * schedules the child builds (`buildWorkflow`, ID `build/<id>`, numbers from storage, CQ
 * properties, `buildset:patch/gerrit/<host>/<change>/<patchset>`). Children report each
 * transition with `buildProgressSignal`; the verification posts a message when a platform is
 * taken, rescheduled, and when it reports, then votes Verified +1 (all SUCCESS), −1 (any FAILURE)
 * or 0 with an explanation. A platform not taken within the idle timeout is canceled. `merged`
 * cancels builds not yet started and leaves the vote alone; `cancel` (new patchset, abandoned,
 * CQ vote removed) cancels everything. Every post goes through `postReviewOnce` with a key unique
 * to this verification attempt, so a retried activity posts once.
 */
import {
  ActivityFailure,
  allHandlersFinished,
  ApplicationFailure,
  type ChildWorkflowHandle,
  condition,
  defineQuery,
  defineSignal,
  getExternalWorkflowHandle,
  log,
  ParentClosePolicy,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { KilnActivities } from '../activities/index.ts';
import type { EvaluateTriggerResult, PostReviewResult, SubmitChangeResult } from '../activities/gerrit.ts';
import {
  type Build,
  type BuilderId,
  type BuildTimeouts,
  builderPath,
  isEnded,
  scheduledBuildOf,
} from '../src/domain/build.ts';
import { buildWorkflowId, newBuildId } from '../src/domain/buildId.ts';
import { VERIFIED } from '../src/domain/gerrit/change.ts';
import type { GerritProjectConfig } from '../src/domain/gerrit/projectConfig.ts';
import { cqBuildProperties, type GerritEventAction, type VerificationMode } from '../src/domain/gerrit/trigger.ts';
import { initialBuildSearchAttributes, KilnStatus } from '../src/domain/searchAttributes.ts';
import { gerritBuildset } from '../src/domain/tags.ts';
import { type StoredVerification, type VerificationPhase } from '../src/domain/verification.ts';
import type { SwarmingBuildSpec } from '../src/domain/swarming/build.ts';
import { type BuildProgress, buildProgressSignal, buildRepairSignal, buildWorkflow, cancelSignal } from './build.ts';
import { swarmingBuildWorkflow } from './swarmingBuild.ts';

/** One builder a verification schedules, resolved from config by the API when it starts the workflow. */
export interface VerificationBuilder {
  builder: BuilderId;
  /** The builder's dimensions (platform, `cap:<capability>` requirements). */
  dimensions: string[];
  priority: number;
  properties: Record<string, unknown>;
  timeouts: BuildTimeouts;
  /**
   * Set for a builder of a Swarming bucket: its build is a `swarmingBuildWorkflow` pushed to Swarming with this
   * spec (bucket config and task templates, snapshot when the verification started), not leased by a runner.
   */
  swarming?: SwarmingBuildSpec;
}

/** Input of `changeVerificationWorkflow`. */
export interface ChangeVerificationInput {
  host: string;
  project: string;
  branch: string;
  change: number;
  patchset: number;
  /** Commit SHA of the patchset: what reviews are posted on. */
  revision: string;
  ref: string;
  config: GerritProjectConfig;
  builders: VerificationBuilder[];
  /** A platform not taken this long after scheduling is canceled (vote 0). */
  idleTimeoutMs: number;
  /** The API's public base URL, for log links in messages. */
  publicUrl?: string;
  /** The Gerrit host's base URL (config `baseUrl`), for the `gerrit` build property. @default `https://<host>` */
  baseUrl?: string;
  /** The change's URL as Gerrit's event gave it, for `event.change.url`. @default `<baseUrl>/c/<project>/+/<n>` */
  changeUrl?: string;
}

/** A Gerrit event routed to this verification (see `routeGerritEvent`). */
export interface VerificationEvent {
  action: GerritEventAction;
  reason: string;
  eventType?: string;
  /** A new trigger (see `GerritEventDecision.fresh`): an ended verification of the patchset runs again. */
  fresh?: boolean;
  /** The CQ run a Commit-Queue vote asks for: a `full-run` turns a running dry run into a full run. */
  mode?: 'dry-run' | 'full-run';
}

/** One platform (builder) of a verification. */
export interface PlatformState {
  /** Builder name, used as the platform name in messages. */
  name: string;
  builder: BuilderId;
  buildId: string;
  number: number;
  status: Build['status'];
  /** A tinderbox or runner leased it at least once. */
  taken: boolean;
  /** Last known lease holder (kept after the build ends, for the report message). */
  holder?: string;
  url?: string;
  summary?: string;
  leaseResets: number;
  announcedGeneration: number;
  version: number;
  /** The child workflow has completed (its result is final). */
  ended?: boolean;
  /**
   * A repair restarted the build as a run of its own (`buildRepairSignal`): the child's result
   * ("terminated") is not the build's; its end comes as a progress signal.
   */
  repaired?: boolean;
  /** Why the verification itself canceled it (`discarded`: another platform failed before this one started). */
  canceledBecause?: 'idle' | 'merged' | 'canceled' | 'discarded';
  /** A Swarming build: Swarming runs it (no tinderbox takes it, so the idle timeout does not apply; its task expires). */
  swarming?: boolean;
}

/** What `getVerificationQuery` returns and the workflow ends with. */
export interface VerificationState {
  phase: VerificationPhase;
  /** Why it runs (or why not). */
  reason: string;
  mode?: VerificationMode;
  platforms: PlatformState[];
  merged: boolean;
  /** Set when the verification was canceled (new patchset, abandoned). */
  canceled?: string;
  /** Verified value posted; absent when no vote was posted. */
  vote?: number;
  /** First line of every message posted, in order. */
  messages: string[];
  /** While a Gerrit call is being retried: `waiting on Gerrit: <cause>`. */
  waiting?: string;
  /** Set when Kiln's setup, not the change, kept it from running (the reason says what to fix). */
  problem?: string;
  /** The vote Kiln sent and Gerrit dropped (an unknown label or a value out of range), e.g. `Verified +1`. */
  voteDropped?: string;
  /** Capabilities the change asked of its builds (`Kiln-Requires:` footers, `requires:` hashtags). */
  requirements?: string[];
  /** Full runs: true once Gerrit merged the change; `submitError` says why it did not. */
  submitted?: boolean;
  submitError?: string;
}

export const gerritEventSignal = defineSignal<[VerificationEvent]>('gerritEvent');
export const getVerificationQuery = defineQuery<VerificationState>('getVerification');

const { evaluateGerritTrigger, postGerritReview } = proxyActivities<KilnActivities>({
  // Above the Gerrit client's 30 s timeout, so an abandoned attempt's POST has ended (postReviewOnce).
  startToCloseTimeout: '2m',
  retry: { initialInterval: '1s', maximumInterval: '1m', maximumAttempts: 30 },
});

const { reserveBuildNumber } = proxyActivities<KilnActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '200ms', maximumInterval: '10s' },
});

/**
 * Gerrit calls of verifications started with `SEMANTICS_PATCH`: Temporal retries each call once, then the
 * workflow itself retries with backoff, so the stored verification can say what it is waiting on.
 */
const gerritOnce = proxyActivities<KilnActivities>({
  startToCloseTimeout: '2m',
  retry: { initialInterval: '1s', maximumAttempts: 2 },
});

/** Rounds of `gerritOnce` attempts before a Gerrit call is given up (backoff 2 s doubling to 5 min: about 3 h). */
const GERRIT_MAX_ROUNDS = 40;

const { recordVerification } = proxyLocalActivities<KilnActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '200ms', maximumInterval: '10s' },
});

/** Patch: the verification writes itself to storage (`recordVerification`) as it changes. */
const STORE_PATCH = 'kiln-store-verifications';

/**
 * Patch: the Buildbot Gerrit Plugin's semantics — an idle platform makes the vote neutral even when another
 * failed; a failure discards the platforms not yet taken; a new trigger runs an ended verification again; a
 * CQ+2 turns a running dry run into a full run and a passing full run submits the change; votes Gerrit drops
 * are recorded as dropped; Gerrit calls retried in the open ("waiting on Gerrit: …"); trigger failures end
 * the verification with the reason instead of failing the workflow.
 */
const SEMANTICS_PATCH = 'kiln-bgp-semantics';

/**
 * Patch: a verification builder of a Swarming bucket runs as a `swarmingBuildWorkflow` child (the CQ → Buildbucket
 * → Swarming flow). Only inputs with `VerificationBuilder.swarming` take this path, which older runs never had.
 */
const SWARMING_CHILD_PATCH = 'kiln-verification-swarming-builders';

/** Search attribute values of `KilnStatus` on verification workflows (for `kiln stuck` and the UI). */
export const VERIFICATION_STATUSES = {
  evaluating: 'EVALUATING',
  waiting: 'WAITING_ON_BUILDS',
  ended: 'ENDED',
} as const;

/** How long to wait for the first event after a start without one. */
const FIRST_EVENT_WAIT = '10 minutes';

/** `4h`, `90s`, `2m` — for messages. */
export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s % 3600 === 0 && s >= 3600) return `${s / 3600}h`;
  if (s % 60 === 0 && s >= 60) return `${s / 60}m`;
  return `${s}s`;
}

/** See the module comment. */
export async function changeVerificationWorkflow(input: ChangeVerificationInput): Promise<VerificationState> {
  const info = workflowInfo();
  /** Every review key of this attempt starts with this (a rerun after a vote has a new run id). */
  const keyPrefix = `${info.workflowId}/`;
  const keyBase = `${keyPrefix}${info.firstExecutionRunId.slice(0, 8)}`;
  const st: VerificationState = { phase: 'EVALUATING', reason: '', platforms: [], merged: false, messages: [] };
  // Runs started before verifications were stored replay (and go on) without storing.
  const storing = patched(STORE_PATCH);
  const v2 = patched(SEMANTICS_PATCH);
  const createTime = new Date(Date.now()).toISOString();
  /** Bumped on every change of `st`; storage has seen `storedVersion`. */
  let version = 1;
  let storedVersion = 0;
  const touch = (): void => {
    version += 1;
  };
  const store = async (): Promise<void> => {
    if (!storing || storedVersion >= version) return;
    const v = version;
    const verification: StoredVerification = {
      id: `${info.workflowId}/${info.runId}`,
      workflowId: info.workflowId,
      runId: info.runId,
      host: input.host,
      project: input.project,
      branch: input.branch,
      change: input.change,
      patchset: input.patchset,
      phase: st.phase,
      reason: st.reason,
      mode: st.mode,
      platforms: st.platforms.map((p) => ({
        name: p.name,
        builder: p.builder,
        buildId: p.buildId,
        number: p.number,
        status: p.status,
        holder: p.holder,
      })),
      merged: st.merged,
      canceled: st.canceled,
      vote: st.vote,
      messages: [...st.messages],
      ...(st.waiting !== undefined ? { waiting: st.waiting } : {}),
      ...(st.problem !== undefined ? { problem: st.problem } : {}),
      ...(st.voteDropped !== undefined ? { voteDropped: st.voteDropped } : {}),
      ...(st.requirements !== undefined ? { requirements: st.requirements } : {}),
      ...(st.submitted !== undefined ? { submitted: st.submitted } : {}),
      ...(st.submitError !== undefined ? { submitError: st.submitError } : {}),
      createTime,
      updateTime: new Date(Date.now()).toISOString(),
      version: v,
    };
    await recordVerification({ verification });
    storedVersion = Math.max(storedVersion, v);
  };
  const inbox: VerificationEvent[] = [];
  const outbox: { key: string; message: string; vote?: number }[] = [];

  const post = (key: string, message: string, vote?: number): void => {
    outbox.push({ key: `${keyBase}/${key}`, message, vote });
  };
  const byId = (id: string): PlatformState | undefined => st.platforms.find((p) => p.buildId === id);

  // ---- handlers ----

  setHandler(getVerificationQuery, () => st);
  setHandler(gerritEventSignal, (e) => {
    inbox.push(e);
  });
  setHandler(buildRepairSignal, ({ buildId }) => {
    const p = byId(buildId);
    if (!p || p.ended) return;
    p.repaired = true;
    touch();
  });
  setHandler(buildProgressSignal, (pr: BuildProgress) => {
    const p = byId(pr.buildId);
    if (!p || pr.version <= p.version) return;
    p.version = pr.version;
    touch();
    // A repaired build is no longer this workflow's child: its end arrives here.
    if (p.repaired && isEnded(pr.status)) {
      onEnded(p, pr.status, pr.summary, pr.url);
      return;
    }
    if (!isEnded(p.status)) p.status = pr.status;
    if (pr.url !== undefined) p.url = pr.url;
    if (pr.leaseResets > p.leaseResets) {
      p.leaseResets = pr.leaseResets;
      if (pr.status === 'SCHEDULED') {
        post(
          `${p.name}/rescheduled/${pr.leaseResets}`,
          `${p.name}: ${p.holder ?? 'the tinderbox'} went silent and its lease expired; the task was rescheduled.`,
        );
      }
    }
    if (pr.leaseHolder !== undefined && !isEnded(pr.status) && pr.leaseGeneration > p.announcedGeneration) {
      p.announcedGeneration = pr.leaseGeneration;
      p.taken = true;
      p.holder = pr.leaseHolder;
      post(`${p.name}/taken/${pr.leaseGeneration}`, `${p.name}: taken by ${pr.leaseHolder} (build ${p.buildId}).`);
    }
  });

  const setStatus = (status: string): void => {
    upsertSearchAttributes([{ key: KilnStatus, value: status }]);
  };

  const finish = async (phase: VerificationPhase): Promise<VerificationState> => {
    st.phase = phase;
    touch();
    setStatus(VERIFICATION_STATUSES.ended);
    await store();
    await condition(allHandlersFinished);
    return st;
  };

  // ---- decide ----

  let decision: Extract<EvaluateTriggerResult, { build: true }> | undefined;
  let decidingEvent: VerificationEvent | undefined;
  while (!decision) {
    if (inbox.length === 0 && !(await condition(() => inbox.length > 0, FIRST_EVENT_WAIT))) {
      st.reason ||= 'no trigger arrived';
      return finish('NOT_TRIGGERED');
    }
    const ev = inbox.shift()!;
    if (ev.action === 'verify' || ev.action === 'evaluate') {
      const evaluateInput = {
        host: input.host,
        config: input.config,
        project: input.project,
        change: input.change,
        patchset: input.patchset,
        // A new trigger runs again; an upload or restore that only asks the trigger does not repeat a vote.
        votedKeyPrefix: ev.action === 'evaluate' && !(v2 && ev.fresh === true) ? keyPrefix : undefined,
      };
      let r: EvaluateTriggerResult;
      if (v2) {
        try {
          r = await gerritCall(() => gerritOnce.evaluateGerritTrigger(evaluateInput));
        } catch (e) {
          r = { build: false, reason: `could not read the change from Gerrit: ${failureCause(e)}` };
        }
      } else {
        r = await evaluateGerritTrigger(evaluateInput);
      }
      if (r.build) {
        decision = r;
        decidingEvent = ev;
      } else {
        st.reason = r.reason;
        if (r.problem !== undefined) st.problem = r.problem;
      }
    } else if (ev.action !== 'ignore') {
      st.reason = ev.reason;
    }
    // Signals that arrive while this run ends make the server refuse the completion, so they are
    // handled by the same run.
    if (!decision && inbox.length === 0) return finish('NOT_TRIGGERED');
  }

  // ---- schedule one build per platform ----

  const d = decision;
  st.phase = 'BUILDING';
  // A `verify` needs no trigger rule: its event says why (an upload, a recheck).
  st.reason = v2 && decidingEvent?.action === 'verify' ? decidingEvent.reason : d.reason;
  st.mode = d.mode;
  const requirements = d.requirements ?? [];
  if (requirements.length > 0) st.requirements = requirements;
  setStatus(VERIFICATION_STATUSES.waiting);
  const attemptStartMs = Date.now();
  const buildset = gerritBuildset(input.host, input.change, input.patchset);
  const children = new Map<string, ChildWorkflowHandle<typeof buildWorkflow | typeof swarmingBuildWorkflow>>();

  const schedule = async (bc: VerificationBuilder): Promise<void> => {
    const path = builderPath(bc.builder);
    // Listed before any await, so platforms keep the config's order in messages.
    const p: PlatformState = {
      name: bc.builder.builder,
      builder: bc.builder,
      buildId: newBuildId(Date.now(), Math.floor(Math.random() * 65536)),
      number: 0,
      status: 'SCHEDULED',
      taken: false,
      leaseResets: 0,
      announcedGeneration: 0,
      version: 0,
    };
    st.platforms.push(p);
    const r = await reserveBuildNumber({ buildId: p.buildId, builder: bc.builder, requestKey: `${keyBase}/${path}` });
    p.buildId = r.buildId;
    p.number = r.number;
    const now = new Date(Date.now()).toISOString();
    const cq = cqBuildProperties({
      host: input.host,
      change: d.change,
      patchset: d.patchset,
      builder: bc.builder,
      attemptStartMs,
      reason: d.reason,
      mode: d.mode,
      baseUrl: input.baseUrl,
      changeUrl: input.changeUrl,
      branch: input.branch,
    });
    const build = scheduledBuildOf({
      id: r.buildId,
      builder: bc.builder,
      number: r.number,
      tags: [`buildset:${buildset}`, `builder:${bc.builder.builder}`],
      input: {
        properties: { ...bc.properties, ...cq },
        gerritChanges: [{ host: input.host, project: input.project, change: input.change, patchset: input.patchset }],
      },
      priority: bc.priority,
      dimensions: [...new Set([...bc.dimensions, ...requirements.map((r) => `cap:${r}`)])].sort(),
      createTime: now,
      createdBy: `verification ${info.workflowId}`,
    });
    const childOptions = {
      workflowId: buildWorkflowId(build.id),
      // Builds outlive an operator terminating the verification; they end by their own timers.
      parentClosePolicy: ParentClosePolicy.ABANDON,
      typedSearchAttributes: initialBuildSearchAttributes(build),
      staticSummary: `${path} #${build.number} — build ${build.id}, verifying ${input.host} change ${input.change} patch set ${input.patchset}`,
    };
    // ---- chromium2: Swarming verification builders (patched) ----
    let handle: ChildWorkflowHandle<typeof buildWorkflow | typeof swarmingBuildWorkflow>;
    if (bc.swarming !== undefined && patched(SWARMING_CHILD_PATCH)) {
      p.swarming = true;
      handle = await startChild(swarmingBuildWorkflow, {
        ...childOptions,
        args: [{ build, timeouts: bc.timeouts, swarming: bc.swarming }],
      });
    } else {
      handle = await startChild(buildWorkflow, { ...childOptions, args: [{ build, timeouts: bc.timeouts }] });
    }
    children.set(build.id, handle);
    void handle.result().then(
      (b) => onEnded(p, b.status, b.summaryMarkdown, b.url),
      (e: unknown) => {
        // Terminated by a repair that restarted it: the new run reports its end (buildProgressSignal).
        if (p.repaired) return;
        onEnded(p, 'INFRA_FAILURE', `build workflow failed: ${String(e)}`);
      },
    );
  };

  const logLink = (p: PlatformState): string | undefined =>
    // A Swarming build's log is on its task's page.
    p.swarming
      ? p.url
      : input.publicUrl
        ? `${input.publicUrl.replace(/\/+$/, '')}/api/v1/builds/${p.buildId}/log`
        : p.url;

  const onEnded = (p: PlatformState, status: Build['status'], summary?: string, url?: string): void => {
    if (p.ended) return;
    p.ended = true;
    touch();
    p.status = status;
    if (summary !== undefined) p.summary = summary;
    if (url !== undefined) p.url = url;
    // Taken platforms report; the verification's own cancels are summed up in its own messages.
    if ((p.taken || p.swarming === true) && p.canceledBecause !== 'canceled') {
      const link = logLink(p);
      post(
        `${p.name}/report`,
        `${p.name}: ${status}${p.holder ? ` on ${p.holder}` : ''}.${link ? ` Log: ${link}` : ''}`,
      );
    }
    // Fail fast (the plugin's `put`): a failure discards the platforms still waiting for a tinderbox.
    if (v2 && status === 'FAILURE' && !st.merged && !st.canceled) {
      const waiting = st.platforms.filter((x) => x !== p && x.status === 'SCHEDULED' && !x.canceledBecause);
      for (const x of waiting) cancelBuild(x, 'discarded', `discarded: ${p.name} failed`);
      if (waiting.length > 0) {
        post(
          `discarded/${p.name}`,
          `${p.name} failed: discarded ${waiting.map((x) => x.name).join(', ')} (not started yet).`,
        );
      }
    }
  };

  const cancelBuild = (p: PlatformState, why: NonNullable<PlatformState['canceledBecause']>, reason: string): void => {
    if (isEnded(p.status)) return;
    p.canceledBecause = why;
    void getExternalWorkflowHandle(buildWorkflowId(p.buildId))
      .signal(cancelSignal, { reason, canceledBy: 'kiln-verification' })
      .catch((e: unknown) => log.warn('cancel failed', { buildId: p.buildId, error: String(e) }));
  };

  await Promise.all(input.builders.map(schedule));
  touch();
  await store();

  // ---- follow the builds ----

  const idleDeadline = attemptStartMs + input.idleTimeoutMs;
  let idleChecked = false;
  const allEnded = (): boolean => st.platforms.every((p) => p.ended === true);

  const handleEvent = (ev: VerificationEvent): void => {
    touch();
    if (ev.action === 'merged' && !st.merged && !st.canceled) {
      st.merged = true;
      const pending = st.platforms.filter((p) => p.status === 'SCHEDULED');
      const running = st.platforms.filter((p) => p.status === 'STARTED');
      for (const p of pending) cancelBuild(p, 'merged', 'change merged before the build started');
      const parts = ['Change merged while the verification was pending.'];
      if (pending.length) parts.push(`Canceled (not started): ${pending.map((p) => p.name).join(', ')}.`);
      if (running.length) parts.push(`Still running, will report here: ${running.map((p) => p.name).join(', ')}.`);
      parts.push('The Verified vote is left alone.');
      post('merged', parts.join(' '));
    } else if (ev.action === 'cancel' && !st.canceled) {
      st.canceled = ev.reason;
      const live = st.platforms.filter((p) => !isEnded(p.status));
      for (const p of live) cancelBuild(p, 'canceled', ev.reason);
      if (!st.merged) {
        post(
          'canceled',
          `Verification of patch set ${input.patchset} canceled: ${ev.reason}.${live.length ? ` Canceled: ${live.map((p) => p.name).join(', ')}.` : ''}`,
        );
      }
    } else if (
      v2 &&
      ev.action === 'evaluate' &&
      ev.mode === 'full-run' &&
      st.mode === 'dry-run' &&
      !st.merged &&
      !st.canceled
    ) {
      st.mode = 'full-run';
      post('full-run', 'Commit-Queue +2: this dry run is now a full run; the change is submitted when it passes.');
    } else {
      log.info('event joined the running verification', { ...ev });
    }
  };

  for (;;) {
    while (inbox.length > 0) handleEvent(inbox.shift()!);
    if (!idleChecked && Date.now() >= idleDeadline) {
      idleChecked = true;
      for (const p of st.platforms) {
        if (!p.taken && !p.swarming && !isEnded(p.status) && !(v2 && p.canceledBecause !== undefined)) {
          cancelBuild(p, 'idle', `no tinderbox took the task within ${formatDuration(input.idleTimeoutMs)}`);
        }
      }
    }
    if (outbox.length > 0) {
      await flush();
      continue;
    }
    if (storing && storedVersion < version) {
      await store();
      continue;
    }
    if (allEnded()) break;
    const wake = (): boolean =>
      inbox.length > 0 || outbox.length > 0 || allEnded() || (storing && storedVersion < version);
    if (idleChecked) await condition(wake);
    else await condition(wake, Math.max(1, idleDeadline - Date.now()));
  }

  // ---- vote ----

  if (!st.merged && !st.canceled) {
    const failed = st.platforms.filter((p) => p.status === 'FAILURE');
    const passed = st.platforms.filter((p) => p.status === 'SUCCESS');
    // The plugin: an idle platform makes the verdict unknown (neutral) even when another platform failed.
    const idle = v2 && st.platforms.some((p) => p.canceledBecause === 'idle');
    const discarded = st.platforms.filter((p) => p.canceledBecause === 'discarded');
    if (failed.length > 0 && !idle) {
      const also = v2 && discarded.length > 0 ? ` (discarded: ${discarded.map((p) => p.name).join(', ')})` : '';
      post('vote', `Verified -1: failed on ${failed.map((p) => p.name).join(', ')}${also}.`, -1);
    } else if (passed.length === st.platforms.length) {
      post('vote', `Verified +1: all platforms passed (${passed.map((p) => p.name).join(', ')}).`, 1);
    } else {
      const why = st.platforms
        .filter((p) => p.status !== 'SUCCESS')
        .map((p) => {
          if (p.canceledBecause === 'idle')
            return `${p.name}: no tinderbox took the task within ${formatDuration(input.idleTimeoutMs)}`;
          if (p.status === 'INFRA_FAILURE')
            return `${p.name}: infrastructure failure${p.summary ? ` (${p.summary})` : ''}`;
          return `${p.name}: ${p.status.toLowerCase()}`;
        });
      post('vote', `Verified 0: no verdict. ${why.join('; ')}.`, 0);
    }
  }
  await flush();

  // ---- CQ full run: submit ----

  if (v2 && st.mode === 'full-run' && st.vote === 1 && !st.merged && !st.canceled) {
    let r: SubmitChangeResult;
    try {
      r = await gerritCall(() =>
        gerritOnce.submitGerritChange({ host: input.host, project: input.project, change: input.change }),
      );
    } catch (e) {
      r = { submitted: false, reason: `could not reach Gerrit: ${failureCause(e)}` };
    }
    touch();
    if (r.submitted) {
      st.submitted = true;
    } else {
      st.submitted = false;
      st.submitError = r.reason;
      post('submit', `Verified +1, but the change was not submitted: ${r.reason}`);
      await flush();
    }
  }
  return finish('ENDED');

  /** Posts everything queued, in order; a post that cannot be made is logged, not retried forever. */
  async function flush(): Promise<void> {
    while (outbox.length > 0) {
      const m = outbox.shift()!;
      const postInput = {
        host: input.host,
        project: input.project,
        change: input.change,
        revision: input.revision,
        key: m.key,
        review: {
          message: m.message,
          ...(m.vote !== undefined ? { labels: { [VERIFIED]: m.vote } } : {}),
          notify: m.vote !== undefined ? ('OWNER' as const) : ('NONE' as const),
        },
      };
      try {
        const r: PostReviewResult = v2
          ? await gerritCall(() => gerritOnce.postGerritReview(postInput))
          : await postGerritReview(postInput);
        st.messages.push(m.message);
        touch();
        if (m.vote === undefined) continue;
        if (v2 && r.dropped !== undefined && r.dropped.length > 0) {
          // Gerrit answered 200 and left the vote out: the label is unknown or the value out of its range.
          st.voteDropped = `${VERIFIED} ${m.vote > 0 ? '+' : ''}${m.vote}`;
          post(
            'vote-dropped',
            `Kiln's vote ${st.voteDropped} was dropped by Gerrit: the project has no ${VERIFIED} label, or ` +
              `${m.vote} is outside its range. Give the project a ${VERIFIED} label (-1..+1) and let Kiln's ` +
              `account vote on it.`,
          );
        } else {
          st.vote = m.vote;
        }
      } catch (e) {
        log.error('could not post to Gerrit', { key: m.key, error: String(e) });
      }
    }
  }

  /**
   * Runs a Gerrit activity (`gerritOnce`, one Temporal retry) until it succeeds, retrying transient failures with
   * backoff and saying so in the stored verification (`waiting`); throws a non-retryable failure at once, and
   * the last one after `GERRIT_MAX_ROUNDS` rounds.
   */
  async function gerritCall<T>(call: () => Promise<T>): Promise<T> {
    for (let round = 1; ; round++) {
      try {
        const r = await call();
        if (st.waiting !== undefined) {
          st.waiting = undefined;
          touch();
        }
        return r;
      } catch (e) {
        const cause = e instanceof ActivityFailure ? e.cause : e;
        const retryable = !(cause instanceof ApplicationFailure && cause.nonRetryable);
        if (!retryable || round >= GERRIT_MAX_ROUNDS) {
          if (st.waiting !== undefined) {
            st.waiting = undefined;
            touch();
          }
          throw e;
        }
        st.waiting = `waiting on Gerrit: ${failureCause(e)}`;
        touch();
        await store();
        await sleep(Math.min(2000 * 2 ** (round - 1), 5 * 60_000));
      }
    }
  }
}

/** The message of the innermost cause of an activity failure (Gerrit's own answer, for users). */
function failureCause(e: unknown): string {
  let cur: unknown = e;
  while (cur instanceof Error && cur.cause instanceof Error) cur = cur.cause;
  const msg = cur instanceof Error ? cur.message : String(cur);
  return msg.replace(/^Gerrit /, '');
}
