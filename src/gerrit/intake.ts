/**
 * Gerrit event intake (Node side, used by `POST /api/v1/gerrit/events`): parses a stream event,
 * routes it per project config (`routeGerritEvent`), and starts or signals the patchset's
 * `changeVerificationWorkflow`. Starts use signal-with-start, so a second trigger for the same
 * patchset joins the running verification. A new patchset cancels the older patchsets'
 * verifications; abandoning cancels all of them; a merge tells the current one.
 */
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import type pino from 'pino';
import { type Registry } from '../config/load.ts';
import { verificationWorkflowId } from '../domain/buildId.ts';
import { KilnError } from '../domain/errors.ts';
import { configCoversBranch, type GerritEventDecision, routeGerritEvent } from '../domain/gerrit/trigger.ts';
import { KilnBuildset, KilnStatus } from '../domain/searchAttributes.ts';
import { gerritBuildset } from '../domain/tags.ts';
import {
  type ChangeVerificationInput,
  changeVerificationWorkflow,
  gerritEventSignal,
  VERIFICATION_STATUSES,
  type VerificationBuilder,
  type VerificationEvent,
} from '../../workflows/changeVerification.ts';
import { timeoutsOf } from '../builds/service.ts';
import { planSwarmingBuild } from '../builds/swarming.ts';
import { parseGerritEvent } from './events.ts';
import { type GerritSettings, projectBuilders } from './settings.ts';

/** How many older patchsets a new one cancels verifications of (bounded fan-out). */
const MAX_OLDER_PATCHSETS = 50;

/** What the intake did with one event, per project config it concerns. */
export interface IntakeAction {
  /** `poll`: a `ref-updated` event made git pollers poll (see `onRefUpdated`). */
  action: GerritEventDecision['action'] | 'poll';
  reason: string;
  workflowId?: string;
}

/** Options of `GerritIntake`. */
export interface GerritIntakeOptions {
  client: Client;
  registry: Registry;
  settings: GerritSettings;
  taskQueue: string;
  logger: pino.Logger;
  publicUrl?: string;
  /** Handles `ref-updated` events (git pollers poll at once); absent → they are refused like other unhandled types. */
  onRefUpdated?: (host: string, event: unknown) => Promise<IntakeAction[]>;
}

/** See the module comment. */
export class GerritIntake {
  constructor(readonly o: GerritIntakeOptions) {}

  /** The host an event came from: the one named, or the only configured one. */
  hostOf(named: string | undefined): string {
    if (named !== undefined) {
      if (!this.o.settings.hosts.has(named))
        throw new KilnError('INVALID_ARGUMENT', `Gerrit host ${named} is not configured`);
      return named;
    }
    const hosts = [...this.o.settings.hosts.keys()];
    if (hosts.length !== 1)
      throw new KilnError('INVALID_ARGUMENT', 'several Gerrit hosts are configured: name one with ?host=');
    return hosts[0]!;
  }

  /**
   * Handles one stream event from `host`. Malformed events and event types Kiln does not act on
   * are refused with INVALID_ARGUMENT (and logged); events no project config concerns are
   * accepted with no actions.
   */
  async handle(hostName: string | undefined, body: unknown): Promise<IntakeAction[]> {
    const host = this.hostOf(hostName);
    let parsed;
    try {
      parsed = parseGerritEvent(body);
    } catch (e) {
      this.o.logger.warn({ host, err: (e as Error).message }, 'malformed Gerrit event refused');
      throw e;
    }
    if (parsed.kind === 'unknown' && parsed.type === 'ref-updated' && this.o.onRefUpdated) {
      const actions = await this.o.onRefUpdated(host, body).catch((e: unknown) => {
        throw new KilnError('INVALID_ARGUMENT', `Gerrit ref-updated event: ${(e as Error).message}`);
      });
      this.o.logger.info({ host, type: parsed.type, actions }, 'Gerrit event');
      return actions;
    }
    if (parsed.kind === 'unknown') {
      this.o.logger.info({ host, type: parsed.type }, 'Gerrit event type not handled; refused');
      throw new KilnError('INVALID_ARGUMENT', `Gerrit event type ${parsed.type} is not handled`);
    }
    const decisions = routeGerritEvent(host, parsed.event, this.o.settings.projects, { self: this.o.settings.self });
    const out: IntakeAction[] = [];
    for (const d of decisions) out.push(await this.act(d));
    if (decisions.length === 0) out.push({ action: 'ignore', reason: this.notOurs(host, parsed.event.change) });
    this.o.logger.info(
      {
        host,
        type: parsed.event.type,
        change: parsed.event.change.number,
        patchset: parsed.event.patchSet.number,
        actions: out,
      },
      'Gerrit event',
    );
    return out;
  }

  /**
   * Verifies a patchset by hand (the plugin's `schedule` command): as if its upload had triggered a verification
   * of a `patchset-created` project. Answers why not when no project config covers the change.
   */
  async scheduleByHand(
    host: string,
    c: { project: string; branch: string; change: number; patchset: number; revision: string; ref: string },
    by: string,
  ): Promise<IntakeAction> {
    const config = this.o.settings.projects.find(
      (p) => p.host === host && p.project === c.project && configCoversBranch(p, c.branch),
    );
    if (!config) return { action: 'ignore', reason: this.notOurs(host, c) };
    return this.act({
      action: 'verify',
      reason: `scheduled by ${by}`,
      config,
      host,
      ...c,
      supersedesOlderPatchsets: false,
      fresh: true,
      eventType: 'patchset-created',
    });
  }

  /** Why no project config concerns an event's change (the answer to its sender). */
  private notOurs(host: string, change: { project: string; branch: string }): string {
    const configs = this.o.settings.projects.filter((p) => p.host === host && p.project === change.project);
    if (configs.length === 0) return `project ${change.project} on ${host} is not configured for verification`;
    const branches = configs.flatMap((c) => c.branches ?? []);
    return `branch ${change.branch} of ${change.project} is not verified (configured: ${branches.join(', ')})`;
  }

  private async act(d: GerritEventDecision): Promise<IntakeAction> {
    const id = verificationWorkflowId(d.host, d.change, d.patchset);
    const event: VerificationEvent = {
      action: d.action,
      reason: d.reason,
      eventType: d.eventType,
      ...(d.fresh ? { fresh: true } : {}),
      ...(d.mode ? { mode: d.mode } : {}),
    };
    switch (d.action) {
      case 'ignore':
        return { action: d.action, reason: d.reason };
      case 'verify':
      case 'evaluate': {
        if (d.supersedesOlderPatchsets) {
          await this.signalOlder(d, d.patchset - 1, { action: 'cancel', reason: `patch set ${d.patchset} uploaded` });
        }
        await this.o.client.workflow.signalWithStart(changeVerificationWorkflow, {
          workflowId: id,
          taskQueue: this.o.taskQueue,
          args: [this.input(d)],
          signal: gerritEventSignal,
          signalArgs: [event],
          typedSearchAttributes: [
            { key: KilnBuildset, value: gerritBuildset(d.host, d.change, d.patchset) },
            { key: KilnStatus, value: VERIFICATION_STATUSES.evaluating },
          ],
          staticSummary: `Verify ${d.host} change ${d.change} patch set ${d.patchset} (${d.project}, ${d.branch})`,
        });
        return { action: d.action, reason: d.reason, workflowId: id };
      }
      case 'cancel':
        await this.signalOlder(d, d.patchset, event);
        return { action: d.action, reason: d.reason, workflowId: id };
      case 'merged':
        await this.signal(id, event);
        return { action: d.action, reason: d.reason, workflowId: id };
    }
  }

  /** Signals the verifications of patchsets `upTo`, `upTo - 1`, … (those that are running). */
  private async signalOlder(d: GerritEventDecision, upTo: number, event: VerificationEvent): Promise<void> {
    const from = Math.max(1, upTo - MAX_OLDER_PATCHSETS + 1);
    const ids: string[] = [];
    for (let ps = from; ps <= upTo; ps++) ids.push(verificationWorkflowId(d.host, d.change, ps));
    await Promise.all(ids.map((id) => this.signal(id, event)));
  }

  private async signal(workflowId: string, event: VerificationEvent): Promise<void> {
    try {
      await this.o.client.workflow.getHandle(workflowId).signal(gerritEventSignal, event);
    } catch (e) {
      if (!(e instanceof WorkflowNotFoundError)) throw e;
    }
  }

  private input(d: GerritEventDecision): ChangeVerificationInput {
    const builders: VerificationBuilder[] = projectBuilders(d.config).map(({ id, path }) => {
      // A Swarming builder: its build is pushed to Swarming with the bucket's config and templates.
      const plan = planSwarmingBuild(this.o.registry, { builder: id });
      if (plan) {
        return {
          builder: id,
          dimensions: plan.builderConfig.dimensions,
          priority: plan.builderConfig.priority,
          properties: {},
          timeouts: timeoutsOf(plan.builderConfig),
          swarming: plan.spec,
        };
      }
      const cfg = this.o.registry.builder(id);
      if (!cfg) throw new KilnError('BUILDER_NOT_FOUND', `builder ${path} is not configured`);
      return {
        builder: id,
        dimensions: cfg.dimensions,
        priority: cfg.priority,
        properties: cfg.properties,
        timeouts: timeoutsOf(cfg),
      };
    });
    return {
      host: d.host,
      project: d.project,
      branch: d.branch,
      change: d.change,
      patchset: d.patchset,
      revision: d.revision,
      ref: d.ref,
      config: d.config,
      builders,
      idleTimeoutMs: this.o.settings.idleTimeoutMs,
      ...(this.o.publicUrl ? { publicUrl: this.o.publicUrl } : {}),
      ...(this.o.settings.hosts.get(d.host) ? { baseUrl: this.o.settings.hosts.get(d.host)!.baseUrl } : {}),
      ...(d.changeUrl ? { changeUrl: d.changeUrl } : {}),
    };
  }
}
