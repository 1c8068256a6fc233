/**
 * The build service: what the API (and tests) call to schedule builds and to talk to their
 * workflows. It turns requests into workflow starts and updates, and Temporal failures back into
 * Kiln's fixed error codes. Auth is the caller's job.
 */
import { randomInt } from 'node:crypto';
import {
  type Client,
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
} from '@temporalio/client';
import { ApplicationFailure, WorkflowIdConflictPolicy, WorkflowIdReusePolicy } from '@temporalio/common';
import type pino from 'pino';
import { type Registry } from '../config/load.ts';
import { type BuilderConfig } from '../config/schema.ts';
import { type Build, type BuilderId, type BuildTimeouts, bucketPath, builderPath, isEnded } from '../domain/build.ts';
import { buildWorkflowId, newBuildId } from '../domain/buildId.ts';
import { isErrorCode, KilnError } from '../domain/errors.ts';
import { initialBuildSearchAttributes } from '../domain/searchAttributes.ts';
import { parseTag } from '../domain/tags.ts';
import { type StoredVerification } from '../domain/verification.ts';
import {
  type BuildPage,
  type BuildQuery,
  type PeekQuery,
  type Storage,
  type VerificationQuery,
} from '../storage/storage.ts';
import {
  type BuildWorkflowInput,
  buildWorkflow,
  cancelSignal,
  type CompleteRequest,
  failUpdate,
  getBuildQuery,
  type HeartbeatReply,
  heartbeatUpdate,
  type LeaseGrant,
  leaseUpdate,
  logWriterQuery,
  staleReportUpdate,
  setPriorityUpdate,
  startUpdate,
  storedUpdate,
  succeedUpdate,
} from '../../workflows/build.ts';
import { swarmingBuildWorkflow, swarmingNotifySignal } from '../../workflows/swarmingBuild.ts';
import { planSwarmingBuild, type SwarmingScheduleOptions } from './swarming.ts';

/** A schedule request after edge validation. */
export interface ScheduleRequest {
  builder: BuilderId;
  properties?: Record<string, unknown>;
  tags?: string[];
  priority?: number;
  /** Extra dimensions beyond the builder's (`key:value`). */
  dimensions?: string[];
  requestId?: string;
  createdBy?: string;
  gerritChanges?: Build['input']['gerritChanges'];
  /** Overrides of the builder's timeouts, in seconds (tests and special runs). */
  schedulingTimeoutSecs?: number;
  executionTimeoutSecs?: number;
  /** Only for builders of a Swarming bucket: per-build builder override and canary choice. */
  swarming?: SwarmingScheduleOptions;
}

/** Property keys Kiln reserves for itself; a schedule request may not set them. */
export const RESERVED_PROPERTIES = ['buildbucket', '$recipe_engine/buildbucket'] as const;

/** Builder config → the timeouts a build keeps for its whole life. */
export function timeoutsOf(
  cfg: BuilderConfig,
  req?: Pick<ScheduleRequest, 'schedulingTimeoutSecs' | 'executionTimeoutSecs'>,
): BuildTimeouts {
  return {
    schedulingTimeoutMs: (req?.schedulingTimeoutSecs ?? cfg.schedulingTimeoutSecs) * 1000,
    executionTimeoutMs: (req?.executionTimeoutSecs ?? cfg.executionTimeoutSecs) * 1000,
    defaultLeaseMs: cfg.leaseDurationSecs * 1000,
    maxLeaseMs: cfg.maxLeaseDurationSecs * 1000,
    maxLeaseResets: cfg.maxLeaseResets,
  };
}

/** Options of `BuildService`. */
export interface BuildServiceOptions {
  client: Client;
  storage: Storage;
  registry: Registry;
  taskQueue: string;
  logger: pino.Logger;
}

const CANCEL_WAIT_MS = 5000;
/**
 * How long `schedule` waits for a lease-mode build's workflow to store it. Longer only when no
 * worker runs; the build is already durable then (its workflow exists) and is stored once one does.
 * @default 3000
 */
const STORED_WAIT_MS = 3000;

/** See the module comment. */
export class BuildService {
  constructor(private readonly o: BuildServiceOptions) {}

  /** Schedules a build, or returns the build an earlier request with the same `requestId` made. */
  async schedule(req: ScheduleRequest): Promise<Build> {
    const swarming = planSwarmingBuild(this.o.registry, req);
    const cfg = swarming?.builderConfig ?? this.o.registry.builder(req.builder);
    if (!cfg) throw this.o.registry.builderNotFound(req.builder);
    const properties = { ...cfg.properties, ...(req.properties ?? {}) };
    for (const k of RESERVED_PROPERTIES) {
      if (req.properties && k in req.properties) throw new KilnError('INVALID_ARGUMENT', `properties.${k} is reserved`);
    }
    const tags = req.tags ?? [];
    tags.forEach((t, i) => {
      if (!parseTag(t)) throw new KilnError('INVALID_ARGUMENT', `tags[${i}]: "${t}" is not a key:value tag`);
    });
    const reservation = await this.o.storage.reserveBuild({
      buildId: newBuildId(Date.now(), randomInt(65536)),
      builder: req.builder,
      requestKey: req.requestId === undefined ? undefined : `${bucketPath(req.builder)}/${req.requestId}`,
    });
    if (!reservation.created) {
      const existing = await this.find(reservation.buildId);
      if (existing) return existing;
      // The first request reserved the number but died before starting the workflow: start it now.
    }
    const now = new Date().toISOString();
    const build: Build = {
      id: reservation.buildId,
      builder: req.builder,
      number: reservation.number,
      status: 'SCHEDULED',
      statusDetails: {},
      tags: [...tags, `builder:${req.builder.builder}`],
      input: { properties, ...(req.gerritChanges ? { gerritChanges: req.gerritChanges } : {}) },
      priority: req.priority ?? cfg.priority,
      dimensions: [...new Set([...cfg.dimensions, ...(req.dimensions ?? [])])].sort(),
      createTime: now,
      updateTime: now,
      createdBy: req.createdBy,
      leaseGeneration: 0,
      leaseResets: 0,
      events: [],
      version: 1,
    };
    const timeouts = timeoutsOf(cfg, req);
    if (swarming) {
      await this.startWorkflow(swarmingBuildWorkflow, build, [{ build, timeouts, swarming: swarming.spec }]);
      return build;
    }
    return this.startLeaseBuild(build, { build, timeouts });
  }

  private workflowStartOptions(build: Build) {
    return {
      workflowId: buildWorkflowId(build.id),
      taskQueue: this.o.taskQueue,
      workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
      typedSearchAttributes: initialBuildSearchAttributes(build),
      staticSummary: `${builderPath(build.builder)} #${build.number} — build ${build.id}${build.createdBy ? `, scheduled by ${build.createdBy}` : ''}`,
      staticDetails: `tags: ${build.tags.join(', ') || '(none)'}`,
    };
  }

  /** Swarming buckets run `swarmingBuildWorkflow`: same ID, messages and storage, but pushed to Swarming. */
  private async startWorkflow(
    workflow: typeof swarmingBuildWorkflow,
    build: Build,
    args: Parameters<typeof swarmingBuildWorkflow>,
  ): Promise<void> {
    try {
      await this.o.client.workflow.start(workflow, { ...this.workflowStartOptions(build), args });
    } catch (e) {
      if (!(e instanceof WorkflowExecutionAlreadyStartedError)) throw e;
    }
  }

  /**
   * Starts a lease-mode build with update-with-start and answers once its workflow has stored it,
   * so the build is leasable (peek) and readable (GET) when `schedule` returns. Without a worker
   * that takes `STORED_WAIT_MS`; the build is durable as soon as the start is acknowledged.
   */
  private async startLeaseBuild(build: Build, input: BuildWorkflowInput): Promise<Build> {
    const start = new WithStartWorkflowOperation(buildWorkflow, { ...this.workflowStartOptions(build), args: [input] });
    const abort = new AbortController();
    const stored = this.o.client.withAbortSignal(abort.signal, () =>
      this.o.client.workflow.executeUpdateWithStart(storedUpdate, { startWorkflowOperation: start }),
    );
    stored.catch(() => undefined); // awaited below once the start is known
    try {
      await start.workflowHandle();
    } catch (e) {
      if (!(e instanceof WorkflowExecutionAlreadyStartedError)) throw e;
      return build; // the same build, started by an earlier request with this requestId, has ended
    }
    const timer = setTimeout(() => abort.abort(), STORED_WAIT_MS);
    try {
      return await stored;
    } catch (e) {
      this.o.logger.warn({ buildId: build.id, err: e }, 'scheduled; not stored yet (is a worker running?)');
      return build;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The build from storage, or from its workflow when storage has not seen it yet. */
  async find(id: string): Promise<Build | undefined> {
    const stored = await this.o.storage.getBuild(id);
    if (stored) return stored;
    const deadline = Date.now() + STORED_WAIT_MS;
    try {
      return await this.o.client.withDeadline(deadline, () =>
        this.o.client.workflow.getHandle(buildWorkflowId(id)).query(getBuildQuery),
      );
    } catch (e) {
      if (e instanceof WorkflowNotFoundError) return undefined;
      // A query needs a worker; a build whose workflow no worker has run yet cannot answer one.
      if (Date.now() >= deadline) {
        throw new KilnError(
          'UNAVAILABLE',
          `build ${id} is not stored yet and its workflow did not answer within ${STORED_WAIT_MS} ms (is a worker running?); try again`,
        );
      }
      throw e;
    }
  }

  /** The build, or BUILD_NOT_FOUND. */
  async get(id: string): Promise<Build> {
    const b = await this.find(id);
    if (!b) throw new KilnError('BUILD_NOT_FOUND', `build ${id} not found`);
    return b;
  }

  /** The build of `builder` numbered `number`, from storage (where schedule has put it before answering). */
  getByNumber(builder: BuilderId, number: number): Promise<Build | undefined> {
    return this.o.storage.getBuildByNumber(builder, number);
  }

  search(q: BuildQuery): Promise<BuildPage> {
    return this.o.storage.searchBuilds(q);
  }

  /** A change's stored verifications; see `Storage.findVerifications`. */
  findVerifications(q: VerificationQuery): Promise<StoredVerification[]> {
    return this.o.storage.findVerifications(q);
  }

  /** Lease-mode builds only: Swarming buckets are never offered to runners. */
  peek(q: PeekQuery): Promise<Build[]> {
    return this.o.storage.peekBuilds({ ...q, buckets: q.buckets.filter((p) => !this.o.registry.bucket(p)?.swarming) });
  }

  /** Cancels a build from any non-ended state; idempotent. Waits briefly to return the ended build. */
  async cancel(id: string, reason: string | undefined, canceledBy: string | undefined): Promise<Build> {
    const b = await this.get(id);
    if (isEnded(b.status)) return b;
    try {
      await this.o.client.workflow.getHandle(buildWorkflowId(id)).signal(cancelSignal, { reason, canceledBy });
    } catch (e) {
      if (!(e instanceof WorkflowNotFoundError)) throw e;
    }
    const deadline = Date.now() + CANCEL_WAIT_MS;
    for (let delay = 20; ; delay = Math.min(delay * 2, 250)) {
      const now = await this.get(id);
      if (isEnded(now.status) || Date.now() > deadline) return now;
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  lease(id: string, req: { leaseDurationMs?: number; holder?: string; requestId?: string }): Promise<LeaseGrant> {
    return this.update(id, (h) => h.executeUpdate(leaseUpdate, { args: [req] }));
  }

  start(id: string, req: { leaseKey: string; url?: string }): Promise<Build> {
    return this.update(id, (h) => h.executeUpdate(startUpdate, { args: [req] }));
  }

  heartbeat(id: string, req: { leaseKey: string; leaseDurationMs?: number }): Promise<HeartbeatReply> {
    return this.update(id, (h) => h.executeUpdate(heartbeatUpdate, { args: [req] }));
  }

  /** Many heartbeats in one call; each answers on its own. */
  heartbeatBatch(
    items: { buildId: string; leaseKey: string; leaseDurationMs?: number }[],
  ): Promise<({ buildId: string } & (HeartbeatReply | { error: { code: string; message: string } }))[]> {
    return Promise.all(
      items.map(async (it) => {
        try {
          return { buildId: it.buildId, ...(await this.heartbeat(it.buildId, it)) };
        } catch (e) {
          const k = e instanceof KilnError ? e : new KilnError('INTERNAL', 'heartbeat failed');
          if (!(e instanceof KilnError)) this.o.logger.error({ err: e, buildId: it.buildId }, 'heartbeat failed');
          return { buildId: it.buildId, error: { code: k.code, message: k.message } };
        }
      }),
    );
  }

  succeed(id: string, req: CompleteRequest): Promise<Build> {
    return this.report(id, 'succeed', req);
  }

  fail(id: string, req: CompleteRequest): Promise<Build> {
    return this.report(id, 'fail', req);
  }

  /**
   * Throws LEASE_EXPIRED / BUILD_IS_COMPLETED unless `leaseKey` may write the build's log (the
   * current lease, or the one current when the build ended). Returns the attempt (lease generation).
   */
  async checkLogWriter(id: string, leaseKey: string): Promise<number> {
    let r;
    try {
      r = await this.o.client.workflow.getHandle(buildWorkflowId(id)).query(logWriterQuery, leaseKey);
    } catch (e) {
      if (e instanceof WorkflowNotFoundError) {
        await this.get(id);
        throw new KilnError('BUILD_IS_COMPLETED', `build ${id} has ended and its workflow is gone`);
      }
      throw e;
    }
    if (!r.ok) throw new KilnError(r.code, r.message);
    return Number.parseInt(leaseKey.split('.')[0] ?? '0', 10);
  }

  /**
   * Tells a Swarming build that its task changed (a Pub/Sub notification); the build then polls the
   * task. A build that has ended and closed is fine (notifications are at-least-once); an unknown one
   * is BUILD_NOT_FOUND.
   */
  async notifySwarming(id: string, req: { taskId: string; messageId?: string }): Promise<void> {
    try {
      await this.o.client.workflow.getHandle(buildWorkflowId(id)).signal(swarmingNotifySignal, req);
    } catch (e) {
      if (!(e instanceof WorkflowNotFoundError)) throw e;
      await this.get(id);
    }
  }

  setPriority(id: string, priority: number): Promise<Build> {
    return this.update(id, (h) => h.executeUpdate(setPriorityUpdate, { args: [{ priority }] }));
  }

  private async report(id: string, kind: 'succeed' | 'fail', req: CompleteRequest): Promise<Build> {
    try {
      return await this.update(id, (h) =>
        h.executeUpdate(kind === 'succeed' ? succeedUpdate : failUpdate, { args: [req] }),
      );
    } catch (e) {
      if (e instanceof KilnError && e.code === 'BUILD_IS_COMPLETED') {
        // A retried report whose first try ended the build (and closed its workflow) gets the same
        // answer: same outcome, same lease generation. Nothing changes, so the key need not be checked.
        const stored = await this.o.storage.getBuild(id);
        const outcomes = kind === 'succeed' ? ['SUCCESS'] : ['FAILURE', 'INFRA_FAILURE'];
        if (
          stored &&
          outcomes.includes(stored.status) &&
          req.leaseKey.split('.')[0] === String(stored.leaseGeneration)
        ) {
          return stored;
        }
      }
      if (e instanceof KilnError && (e.code === 'LEASE_EXPIRED' || e.code === 'BUILD_IS_COMPLETED')) {
        // Refused, not applied — but noted in the build's own history for whoever looks later.
        await this.o.client.workflow
          .getHandle(buildWorkflowId(id))
          .executeUpdate(staleReportUpdate, { args: [{ leaseKey: req.leaseKey, report: kind }] })
          .catch(() => undefined);
      }
      throw e;
    }
  }

  /** Runs an update on the build's workflow, mapping Temporal errors to Kiln codes. */
  private async update<T>(id: string, fn: (h: ReturnType<Client['workflow']['getHandle']>) => Promise<T>): Promise<T> {
    const handle = this.o.client.workflow.getHandle(buildWorkflowId(id));
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn(handle);
      } catch (e) {
        if (e instanceof WorkflowUpdateFailedError && e.cause instanceof ApplicationFailure) {
          const code = e.cause.type;
          throw new KilnError(isErrorCode(code) ? code : 'INTERNAL', e.cause.message);
        }
        if (e instanceof WorkflowNotFoundError) {
          // Ended and closed, or never existed: storage knows which.
          const stored = await this.o.storage.getBuild(id);
          if (stored && isEnded(stored.status)) {
            throw new KilnError(
              'BUILD_IS_COMPLETED',
              `build ${id} has ended with status ${stored.status}; stop working on it`,
            );
          }
          if (!stored) throw new KilnError('BUILD_NOT_FOUND', `build ${id} not found`);
          // The run was continuing as new just then: the next run takes the retry.
          if (attempt < 3) continue;
        }
        throw e;
      }
    }
  }
}
