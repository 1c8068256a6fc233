/**
 * Swarming activities: create, poll and cancel a build's task over `swarming.v2.Tasks`. Transient
 * Swarming errors (503, timeouts, network) are thrown as-is so Temporal retries them; permanent ones
 * become non-retryable `SWARMING_REJECTED` failures. NewTask is safe to retry: the request carries a
 * `request_uuid` derived from the build id, so Swarming answers a retry with the task it created.
 */
import { type FailureType } from '../src/domain/errors.ts';
import { activityFailure } from './failure.ts';
import type pino from 'pino';
import { type TaskOutcome } from '../src/domain/swarming/status.ts';
import { type CreatedTaskView, type SwarmingNewTaskRequest } from '../src/domain/swarming/template.ts';
import { type SwarmingClient, SwarmingRpcError } from '../src/swarming/client.ts';

/** What the Swarming activities need from the worker. */
export interface SwarmingActivityDeps {
  /** The client for a Swarming server by hostname. */
  clientFor(hostname: string): SwarmingClient;
  /** Sent as every task's `pubsub_auth_token`; kept out of workflow history on purpose. */
  notifyToken?: string;
}

/** `ApplicationFailure.type` of a Swarming call that retrying cannot fix. */
export const SWARMING_REJECTED = 'SWARMING_REJECTED' satisfies FailureType;
/** `ApplicationFailure.type` when the worker has no Swarming settings. */
export const SWARMING_NOT_CONFIGURED = 'SWARMING_NOT_CONFIGURED' satisfies FailureType;

/** A task's state as the workflow needs it. */
export interface TaskResultView extends TaskOutcome {
  taskId: string;
  startedTs?: string;
  completedTs?: string;
  exitCode?: number;
  botId?: string;
}

/** What `createSwarmingTask` returns: the task and the tags/dimensions Swarming registered. */
export interface CreatedTask extends CreatedTaskView {
  /** Present when Swarming deduplicated the request onto a task that already exists. */
  result?: TaskResultView;
}

async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof SwarmingRpcError && !e.transient) {
      throw activityFailure(SWARMING_REJECTED, `${what}: ${e.message}`, { nonRetryable: true });
    }
    throw e;
  }
}

function view(r: {
  taskId: string;
  state: TaskOutcome['state'];
  failure: boolean;
  internalFailure: boolean;
  startedTs?: string | undefined;
  completedTs?: string | undefined;
  exitCode?: number | undefined;
  botId?: string | undefined;
}): TaskResultView {
  return {
    taskId: r.taskId,
    state: r.state,
    failure: r.failure,
    internalFailure: r.internalFailure,
    ...(r.startedTs !== undefined ? { startedTs: r.startedTs } : {}),
    ...(r.completedTs !== undefined ? { completedTs: r.completedTs } : {}),
    ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}),
    ...(r.botId !== undefined ? { botId: r.botId } : {}),
  };
}

/** Creates the Swarming activities; without `deps` every call fails non-retryably with SWARMING_NOT_CONFIGURED. */
export function createSwarmingActivities(deps: SwarmingActivityDeps | undefined, logger: pino.Logger) {
  const client = (hostname: string): SwarmingClient => {
    if (!deps) {
      throw activityFailure(SWARMING_NOT_CONFIGURED, 'this worker has no Swarming settings (config: swarming)', {
        nonRetryable: true,
      });
    }
    return deps.clientFor(hostname);
  };
  return {
    /** NewTask for a build; retries return the same task (same `request_uuid`). */
    async createSwarmingTask(input: { hostname: string; request: SwarmingNewTaskRequest }): Promise<CreatedTask> {
      const request = { ...input.request };
      if (request.pubsub_topic !== undefined && deps?.notifyToken !== undefined)
        request.pubsub_auth_token = deps.notifyToken;
      const res = await call(`NewTask on ${input.hostname}`, () => client(input.hostname).newTask(request));
      logger.info(
        { hostname: input.hostname, taskId: res.taskId, requestUuid: request.request_uuid },
        'swarming task created',
      );
      const dims = res.request?.taskSlices[0]?.properties?.dimensions ?? [];
      return {
        taskId: res.taskId,
        request: {
          tags: res.request?.tags ?? [],
          taskSlices: [{ properties: { dimensions: dims.map((d) => ({ key: d.key, value: d.value })) } }],
        },
        ...(res.taskResult ? { result: view(res.taskResult) } : {}),
      };
    },

    /** The task's current state. */
    async getSwarmingTaskResult(input: { hostname: string; taskId: string }): Promise<TaskResultView> {
      return view(await call(`GetResult ${input.taskId}`, () => client(input.hostname).getResult(input.taskId)));
    },

    /** Cancels the task, killing it if it runs. Idempotent. */
    async cancelSwarmingTask(input: {
      hostname: string;
      taskId: string;
    }): Promise<{ canceled: boolean; wasRunning: boolean }> {
      const r = await call(`CancelTask ${input.taskId}`, () => client(input.hostname).cancelTask(input.taskId, true));
      logger.info({ hostname: input.hostname, taskId: input.taskId, ...r }, 'swarming task cancel requested');
      return { canceled: r.canceled, wasRunning: r.wasRunning };
    },
  };
}

/** The Swarming activity types workflows proxy. */
export type SwarmingActivities = ReturnType<typeof createSwarmingActivities>;
