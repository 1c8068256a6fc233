/**
 * Swarming API client for `swarming.v2.Tasks` over pRPC JSON (Node side; activities use it).
 * Requests go as JSON with proto field names; responses come back as protojson (lowerCamelCase,
 * int64 as strings, false/empty fields omitted) behind the `)]}'` XSSI prefix.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { formatZodError } from '../domain/zodIssues.ts';
import { type ErrorCode, UpstreamError } from '../domain/errors.ts';
import { TASK_STATES } from '../domain/swarming/status.ts';
import { type SwarmingNewTaskRequest } from '../domain/swarming/template.ts';

/**
 * The `builder_hash` template parameter: sha256 hex of `<bucket>:<builder>` (LUCI swarmbucket's
 * form). Compute it here, Node-side, and pass it to `newTaskRequest`.
 */
export function builderHash(bucket: string, builder: string): string {
  return createHash('sha256').update(`${bucket}:${builder}`).digest('hex');
}

/** gRPC status codes by number, as pRPC sends them in `X-Prpc-Grpc-Code`. */
export const GRPC_CODES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;
export type GrpcCodeName = (typeof GRPC_CODES)[number];

/** gRPC codes worth retrying: the server or the path to it was briefly unable to answer. */
const TRANSIENT_CODES: ReadonlySet<GrpcCodeName> = new Set([
  'UNAVAILABLE',
  'DEADLINE_EXCEEDED',
  'RESOURCE_EXHAUSTED',
  'INTERNAL',
  'UNKNOWN',
  'ABORTED',
]);

/** The Kiln code a Swarming failure maps to: its gRPC code where Kiln has one, UNAVAILABLE when transient. */
function kilnCodeOf(grpcCode: GrpcCodeName | undefined, transient: boolean): ErrorCode {
  if (transient) return 'UNAVAILABLE';
  switch (grpcCode) {
    case 'INVALID_ARGUMENT':
    case 'OUT_OF_RANGE':
      return 'INVALID_ARGUMENT';
    case 'NOT_FOUND':
      return 'NOT_FOUND';
    case 'PERMISSION_DENIED':
      return 'PERMISSION_DENIED';
    case 'UNAUTHENTICATED':
      return 'UNAUTHENTICATED';
    case 'ALREADY_EXISTS':
    case 'FAILED_PRECONDITION':
      return 'CONFLICT';
    default:
      return 'INTERNAL';
  }
}

/**
 * A failed Swarming call, in Kiln's error family (`UpstreamError`, like `GerritError`). `transient`
 * says whether retrying the same request may succeed (503 / UNAVAILABLE, 429, other 5xx, timeouts,
 * network errors) or not (bad request, not found, denied, malformed response). Activities turn
 * non-transient ones into non-retryable failures.
 */
export class SwarmingRpcError extends UpstreamError {
  constructor(
    message: string,
    /** `swarming.v2.Tasks` method, e.g. `NewTask`. */
    readonly method: string,
    /** HTTP status; 0 when no response arrived (timeout, connection refused). */
    readonly httpStatus: number,
    /** pRPC gRPC code from `X-Prpc-Grpc-Code`, when the server sent one. */
    readonly grpcCode: GrpcCodeName | undefined,
    transient: boolean,
    options?: { cause?: unknown },
  ) {
    super('swarming', kilnCodeOf(grpcCode, transient), message, transient, options);
    this.name = 'SwarmingRpcError';
  }
}

/** True for a `SwarmingRpcError` that a retry of the same request may fix. */
export function isTransientSwarmingError(err: unknown): boolean {
  return err instanceof SwarmingRpcError && err.transient;
}

const StringPairSchema = z.looseObject({ key: z.string(), value: z.string().default('') });
/** int32 arrive as numbers, int64 as strings; accept both for either. */
const IntSchema = z.union([
  z.number(),
  z
    .string()
    .regex(/^-?\d+$/)
    .transform(Number),
]);

const TaskPropertiesSchema = z.looseObject({
  dimensions: z.array(StringPairSchema).default([]),
  caches: z.array(z.looseObject({ name: z.string(), path: z.string() })).default([]),
  executionTimeoutSecs: IntSchema.optional(),
});

/** `swarming.v2.TaskRequestResponse`: the task as Swarming registered it (it may add tags). */
export const TaskRequestResponseSchema = z.looseObject({
  taskId: z.string().optional(),
  name: z.string().optional(),
  priority: IntSchema.optional(),
  tags: z.array(z.string()).default([]),
  taskSlices: z
    .array(z.looseObject({ properties: TaskPropertiesSchema.optional(), expirationSecs: IntSchema.optional() }))
    .default([]),
  serviceAccount: z.string().optional(),
  pubsubTopic: z.string().optional(),
  pubsubUserdata: z.string().optional(),
  createdTs: z.string().optional(),
});
export type TaskRequestResponse = z.infer<typeof TaskRequestResponseSchema>;

/** `swarming.v2.TaskResultResponse`: a task's state and outcome. */
export const TaskResultResponseSchema = z.looseObject({
  taskId: z.string().min(1),
  state: z.enum(TASK_STATES),
  /** True if the exit code was not 0. */
  failure: z.boolean().default(false),
  /** True if the bot died (state BOT_DIED). */
  internalFailure: z.boolean().default(false),
  exitCode: IntSchema.optional(),
  botId: z.string().optional(),
  runId: z.string().optional(),
  name: z.string().optional(),
  tags: z.array(z.string()).default([]),
  createdTs: z.string().optional(),
  startedTs: z.string().optional(),
  completedTs: z.string().optional(),
  abandonedTs: z.string().optional(),
  modifiedTs: z.string().optional(),
});
export type TaskResultResponse = z.infer<typeof TaskResultResponseSchema>;

/** `swarming.v2.TaskRequestMetadataResponse`: what NewTask returns. */
export const NewTaskResponseSchema = z.looseObject({
  taskId: z.string().min(1),
  request: TaskRequestResponseSchema.optional(),
  /** Set when the task was deduplicated and already finished. */
  taskResult: TaskResultResponseSchema.optional(),
});
export type NewTaskResponse = z.infer<typeof NewTaskResponseSchema>;

/** `swarming.v2.CancelResponse`. */
export const CancelResponseSchema = z.looseObject({
  /** The task went PENDING→CANCELED, or was RUNNING and will be killed. */
  canceled: z.boolean().default(false),
  wasRunning: z.boolean().default(false),
});
export type CancelResponse = z.infer<typeof CancelResponseSchema>;

/** How to reach one Swarming server. */
export interface SwarmingClientOptions {
  /** Swarming hostname, e.g. `chromium-swarm.appspot.com`. */
  hostname: string;
  /** Overrides `https://<hostname>`, e.g. `http://127.0.0.1:4567` in tests. */
  baseUrl?: string;
  /** OAuth bearer token, or a function returning a fresh one per call. */
  token?: string | (() => string | Promise<string>);
  /** Per-request timeout. @default 30000 */
  timeoutMs?: number;
}

/** The pRPC JSON response prefix that defeats XSSI. */
const XSSI_PREFIX = ")]}'";

/** A client for one Swarming server's `swarming.v2.Tasks` service. */
export class SwarmingClient {
  private readonly baseUrl: string;
  private readonly timeoutMs: number;

  constructor(private readonly opts: SwarmingClientOptions) {
    this.baseUrl = (opts.baseUrl ?? `https://${opts.hostname}`).replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /**
   * Creates a task. Retrying with the same `request_uuid` (Kiln derives it from the build id) returns
   * the task the first attempt created, so a retry after a lost response does not start a second one.
   */
  newTask(request: SwarmingNewTaskRequest): Promise<NewTaskResponse> {
    return this.call('NewTask', request, NewTaskResponseSchema);
  }

  /** The current state and outcome of a task. NOT_FOUND (not transient) when Swarming has no such task. */
  getResult(taskId: string): Promise<TaskResultResponse> {
    return this.call('GetResult', { task_id: taskId }, TaskResultResponseSchema);
  }

  /** Cancels a pending task, and kills a running one unless `killRunning` is false. Idempotent. */
  cancelTask(taskId: string, killRunning = true): Promise<CancelResponse> {
    return this.call('CancelTask', { task_id: taskId, kill_running: killRunning }, CancelResponseSchema);
  }

  private async call<T extends z.ZodType>(method: string, body: unknown, schema: T): Promise<z.infer<T>> {
    const headers: Record<string, string> = {
      'Content-Type': 'application/json',
      Accept: 'application/json',
      'X-Prpc-Timeout': `${this.timeoutMs}m`,
    };
    const token = typeof this.opts.token === 'function' ? await this.opts.token() : this.opts.token;
    if (token) headers['Authorization'] = `Bearer ${token}`;
    const where = `Swarming ${this.opts.hostname} ${method}`;

    let res: Response;
    let text: string;
    try {
      res = await fetch(`${this.baseUrl}/prpc/swarming.v2.Tasks/${method}`, {
        method: 'POST',
        headers,
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      text = await res.text();
    } catch (cause) {
      const timedOut = cause instanceof Error && (cause.name === 'TimeoutError' || cause.name === 'AbortError');
      const why = timedOut ? `timed out after ${this.timeoutMs} ms` : `failed: ${String(cause)}`;
      throw new SwarmingRpcError(`${where} ${why}`, method, 0, timedOut ? 'DEADLINE_EXCEEDED' : undefined, true, {
        cause,
      });
    }

    const codeHeader = res.headers.get('x-prpc-grpc-code');
    const grpcCode = codeHeader !== null && /^\d+$/.test(codeHeader) ? GRPC_CODES[Number(codeHeader)] : undefined;
    // pRPC: when the code header is present the client must ignore the HTTP status.
    const ok = codeHeader !== null ? grpcCode === 'OK' : res.ok;
    if (!ok) {
      const transient =
        grpcCode !== undefined ? TRANSIENT_CODES.has(grpcCode) : res.status === 429 || res.status >= 500;
      const detail = text.trim().slice(0, 500);
      throw new SwarmingRpcError(
        `${where}: HTTP ${res.status}${grpcCode ? ` ${grpcCode}` : ''}${detail ? `: ${detail}` : ''}`,
        method,
        res.status,
        grpcCode,
        transient,
      );
    }

    const malformed = (why: string, cause?: unknown) =>
      new SwarmingRpcError(`${where}: malformed response: ${why}`, method, res.status, grpcCode, false, { cause });
    let json: unknown;
    try {
      json = JSON.parse(text.startsWith(XSSI_PREFIX) ? text.slice(XSSI_PREFIX.length) : text);
    } catch (cause) {
      throw malformed('not JSON', cause);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw malformed(formatZodError(parsed.error, { all: true, separator: '; ' }));
    }
    return parsed.data;
  }
}
