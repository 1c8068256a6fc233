/**
 * A fake Swarming server for tests: `swarming.v2.Tasks` NewTask / GetResult / CancelTask over the
 * real pRPC JSON wire format (`)]}'\n` prefix, `X-Prpc-Grpc-Code`, protojson lowerCamelCase output,
 * either field spelling accepted on input), tasks in memory, `request_uuid` dedupe, and Pub/Sub push
 * notifications on state changes. Tests drive task state and inject failures.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo } from 'node:net';
import { type TaskState } from '../../src/domain/swarming/status.ts';

/** gRPC codes the fake answers with. */
const CODE = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
};

/** One call the fake received. */
export interface RecordedRequest {
  /** `NewTask`, `GetResult`, `CancelTask`, or whatever path was hit. */
  method: string;
  headers: IncomingMessage['headers'];
  /** Parsed JSON body with keys normalised to proto (snake_case) names; undefined if not JSON. */
  body: Record<string, unknown> | undefined;
  rawBody: string;
}

/** A task the fake holds. */
export interface FakeTask {
  taskId: string;
  /** The NewTask request, keys normalised to proto names. */
  request: Record<string, unknown>;
  state: TaskState;
  failure: boolean;
  internalFailure: boolean;
  exitCode: number;
  createdTs: string;
  startedTs?: string;
  completedTs?: string;
  abandonedTs?: string;
  /** Tags as registered: the request's plus the ones Swarming adds. */
  tags: string[];
}

/** One Pub/Sub push the fake attempted (or dropped). */
export interface SentNotification {
  taskId: string;
  state: TaskState;
  url: string;
  body: unknown;
  /** HTTP status of the push, 0 on a network error, undefined when dropped. */
  status?: number;
  dropped: boolean;
}

/** A canned reply for the next call of a method, for malformed-response tests. */
export interface CannedReply {
  status: number;
  body: string;
  headers?: Record<string, string>;
}

/** Fake options. */
export interface FakeSwarmingOptions {
  /** If set, every call must carry `Authorization: Bearer <token>`. */
  requireToken?: string;
  /** Where to POST Pub/Sub pushes for tasks created with a `pubsub_topic`. */
  notifyUrl?: string;
}

function snake(k: string): string {
  return k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
function camel(k: string): string {
  return k.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}
/** Renames object keys recursively (NewTaskRequest has no map fields, so every key is a field name). */
function renameKeys(v: unknown, f: (k: string) => string): unknown {
  if (Array.isArray(v)) return v.map((x) => renameKeys(x, f));
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [f(k), renameKeys(x, f)]));
  }
  return v;
}
/** Drops protojson zero values (false, 0, '', empty lists) the way the real server omits them. */
function omitDefaults(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(o).filter(
      ([, v]) => v !== undefined && v !== false && v !== 0 && v !== '' && !(Array.isArray(v) && v.length === 0),
    ),
  );
}

class RpcError extends Error {
  constructor(
    readonly httpStatus: number,
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** The fake. Start with `FakeSwarmingServer.start()`, stop with `close()`. */
export class FakeSwarmingServer {
  /** Every call received, in order. */
  readonly requests: RecordedRequest[] = [];
  /** Every Pub/Sub push attempted or dropped, in order. */
  readonly notifications: SentNotification[] = [];
  readonly tasks = new Map<string, FakeTask>();
  /** When true, state changes send no Pub/Sub push (recorded as dropped): the "lost notification" switch. */
  dropNotifications = false;
  notifyUrl: string | undefined;

  private readonly byRequestUuid = new Map<string, string>();
  private failuresLeft = 0;
  private failAfterCreate = true;
  private readonly canned = new Map<string, CannedReply[]>();
  private nextId = 0x5a1ee7000n;
  private readonly pending = new Set<Promise<void>>();

  private constructor(
    private readonly server: Server,
    /** `http://127.0.0.1:<port>`: pass as the client's `baseUrl`. */
    readonly baseUrl: string,
    private readonly opts: FakeSwarmingOptions,
  ) {
    this.notifyUrl = opts.notifyUrl;
  }

  /** Starts a fake on 127.0.0.1 with an ephemeral port. */
  static async start(opts: FakeSwarmingOptions = {}): Promise<FakeSwarmingServer> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const fake = new FakeSwarmingServer(server, `http://127.0.0.1:${port}`, opts);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => void fake.handle(req, res));
    return fake;
  }

  /** `host:port` of the fake, usable as a Swarming hostname in tags and URLs. */
  get host(): string {
    return new URL(this.baseUrl).host;
  }

  /**
   * The next `n` NewTask calls answer 503 UNAVAILABLE. With `afterCreate` (default) the task is created
   * first and only the response is lost — the case `request_uuid` exists for.
   */
  failNextNewTask(n: number, opts: { afterCreate?: boolean } = {}): void {
    this.failuresLeft = n;
    this.failAfterCreate = opts.afterCreate ?? true;
  }

  /** The next call of `method` gets `reply` verbatim instead of being served. */
  replyNext(method: string, reply: CannedReply): void {
    this.canned.set(method, [...(this.canned.get(method) ?? []), reply]);
  }

  /** The NewTask calls received. */
  newTaskRequests(): RecordedRequest[] {
    return this.requests.filter((r) => r.method === 'NewTask');
  }

  /**
   * Moves a task to `state` (timestamps follow) and, if it has a Pub/Sub topic and a notify URL is set,
   * pushes a notification; resolves once the push has been answered (or dropped).
   */
  async setState(
    taskId: string,
    state: TaskState,
    outcome: { failure?: boolean; internalFailure?: boolean; exitCode?: number } = {},
  ): Promise<void> {
    const task = this.tasks.get(taskId);
    if (!task) throw new Error(`fake swarming: no task ${taskId}`);
    const now = new Date().toISOString();
    task.state = state;
    if (state === 'RUNNING') task.startedTs ??= now;
    if (state === 'COMPLETED') {
      task.startedTs ??= now;
      task.completedTs = now;
      task.exitCode = outcome.exitCode ?? (outcome.failure ? 1 : 0);
      task.failure = outcome.failure ?? task.exitCode !== 0;
    }
    if (['EXPIRED', 'BOT_DIED', 'CANCELED', 'KILLED', 'NO_RESOURCE', 'TIMED_OUT'].includes(state))
      task.abandonedTs = now;
    task.internalFailure = outcome.internalFailure ?? state === 'BOT_DIED';
    await this.notify(task);
  }

  /** Waits for every Pub/Sub push in flight. */
  async settled(): Promise<void> {
    await Promise.all([...this.pending]);
  }

  /** Stops the server. */
  async close(): Promise<void> {
    await this.settled();
    this.server.closeAllConnections();
    await new Promise<void>((resolve, reject) => this.server.close((err) => (err ? reject(err) : resolve())));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const rawBody = Buffer.concat(chunks).toString('utf8');
    const m = /^\/prpc\/swarming\.v2\.Tasks\/(\w+)$/.exec(req.url ?? '');
    const method = m?.[1] ?? req.url ?? '';
    let body: Record<string, unknown> | undefined;
    try {
      const parsed: unknown = JSON.parse(rawBody);
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
        body = renameKeys(parsed, snake) as Record<string, unknown>;
      }
    } catch {
      body = undefined;
    }
    this.requests.push({ method, headers: req.headers, body, rawBody });

    const canned = this.canned.get(method)?.shift();
    if (canned) {
      res.writeHead(canned.status, canned.headers ?? {});
      res.end(canned.body);
      return;
    }
    try {
      if (req.method !== 'POST' || !m) throw new RpcError(501, CODE.UNIMPLEMENTED, `unknown method ${req.url}`);
      if (this.opts.requireToken !== undefined && req.headers.authorization !== `Bearer ${this.opts.requireToken}`) {
        throw new RpcError(401, CODE.UNAUTHENTICATED, 'missing or bad bearer token');
      }
      if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) {
        throw new RpcError(400, CODE.INVALID_ARGUMENT, 'this fake only speaks application/json');
      }
      if (!body) throw new RpcError(400, CODE.INVALID_ARGUMENT, 'could not decode body as JSON object');
      this.reply(res, 200, CODE.OK, await this.serve(method, body));
    } catch (err) {
      if (err instanceof RpcError) this.reply(res, err.httpStatus, err.code, `${err.message}\n`);
      else this.reply(res, 500, CODE.INTERNAL, `Internal Server Error: ${String(err)}\n`);
    }
  }

  private reply(res: ServerResponse, status: number, code: number, payload: unknown): void {
    const ok = code === CODE.OK;
    res.writeHead(status, {
      'Content-Type': ok ? 'application/json' : 'text/plain',
      'X-Prpc-Grpc-Code': String(code),
      'X-Content-Type-Options': 'nosniff',
    });
    res.end(ok ? `)]}'\n${JSON.stringify(payload)}\n` : String(payload));
  }

  private async serve(method: string, body: Record<string, unknown>): Promise<unknown> {
    switch (method) {
      case 'NewTask':
        return this.newTask(body);
      case 'GetResult':
        return this.resultOf(this.taskFor(body));
      case 'CancelTask':
        return this.cancel(this.taskFor(body), body['kill_running'] === true);
      default:
        throw new RpcError(501, CODE.UNIMPLEMENTED, `method swarming.v2.Tasks/${method} not implemented by the fake`);
    }
  }

  private taskFor(body: Record<string, unknown>): FakeTask {
    const id = body['task_id'];
    if (typeof id !== 'string' || id === '') throw new RpcError(400, CODE.INVALID_ARGUMENT, 'task_id is required');
    const task = this.tasks.get(id);
    if (!task) throw new RpcError(404, CODE.NOT_FOUND, `no such task: ${id}`);
    return task;
  }

  private async newTask(req: Record<string, unknown>): Promise<unknown> {
    const uuid = typeof req['request_uuid'] === 'string' ? req['request_uuid'] : '';
    const existing = uuid ? this.tasks.get(this.byRequestUuid.get(uuid) ?? '') : undefined;
    if (this.failuresLeft > 0 && !this.failAfterCreate) {
      this.failuresLeft--;
      throw new RpcError(503, CODE.UNAVAILABLE, 'Service Unavailable');
    }
    const task = existing ?? this.create(req, uuid);
    if (this.failuresLeft > 0) {
      this.failuresLeft--;
      throw new RpcError(503, CODE.UNAVAILABLE, 'Service Unavailable');
    }
    return {
      taskId: task.taskId,
      request: this.requestView(task),
      taskResult: this.resultOf(task),
    };
  }

  private create(req: Record<string, unknown>, uuid: string): FakeTask {
    const bad = (msg: string) => new RpcError(400, CODE.INVALID_ARGUMENT, `bad request: ${msg}`);
    if (typeof req['name'] !== 'string' || req['name'] === '') throw bad('name is required');
    if ('properties' in req) throw bad('properties is deprecated, use task_slices instead.');
    if ('expiration_secs' in req) throw bad('expiration_secs is deprecated, set it in task_slices instead.');
    const slices = req['task_slices'];
    if (!Array.isArray(slices) || slices.length === 0) throw bad('task_slices is required');
    const dims: { key: string; value: string }[] = [];
    for (const [i, s] of slices.entries()) {
      const slice = s as { expiration_secs?: unknown; properties?: { dimensions?: unknown } };
      const exp = Number(slice.expiration_secs);
      if (!Number.isInteger(exp) || exp < 1) throw bad(`invalid expiration_secs of slice ${i}`);
      const d = (slice.properties?.dimensions ?? []) as { key: string; value: string }[];
      if (d.filter((x) => x.key === 'pool').length !== 1) throw bad('pool is required');
      if (i === 0) dims.push(...d);
    }
    const priority = req['priority'] === undefined ? 200 : Number(req['priority']);
    if (!Number.isInteger(priority) || priority < 1 || priority > 255) throw bad(`priority: invalid ${priority}`);
    if (req['pubsub_userdata'] && !req['pubsub_topic']) throw bad('pubsub_userdata requires pubsub_topic');

    const taskId = (this.nextId++ * 16n).toString(16).padStart(16, '0'); // summary ids end with 0
    const serviceAccount = typeof req['service_account'] === 'string' ? req['service_account'] : 'none';
    const added = [
      ...dims.map((x) => `${x.key}:${x.value}`),
      `priority:${priority}`,
      `service_account:${serviceAccount}`,
      'user:none',
    ];
    const tags = [...new Set([...((req['tags'] as string[] | undefined) ?? []), ...added])].sort();
    const task: FakeTask = {
      taskId,
      request: { ...req, priority },
      state: 'PENDING',
      failure: false,
      internalFailure: false,
      exitCode: 0,
      createdTs: new Date().toISOString(),
      tags,
    };
    this.tasks.set(taskId, task);
    if (uuid) this.byRequestUuid.set(uuid, taskId);
    return task;
  }

  private requestView(task: FakeTask): unknown {
    const { request_uuid: _u, pubsub_auth_token: _t, ...rest } = task.request;
    return omitDefaults({
      ...(renameKeys(rest, camel) as Record<string, unknown>),
      taskId: task.taskId,
      tags: task.tags,
      createdTs: task.createdTs,
    });
  }

  private resultOf(task: FakeTask): unknown {
    const ran = task.startedTs !== undefined;
    return omitDefaults({
      taskId: task.taskId,
      state: task.state,
      name: task.request['name'],
      tags: task.tags,
      createdTs: task.createdTs,
      startedTs: task.startedTs,
      completedTs: task.completedTs,
      abandonedTs: task.abandonedTs,
      modifiedTs: new Date().toISOString(),
      failure: task.failure,
      internalFailure: task.internalFailure,
      exitCode: task.exitCode ? String(task.exitCode) : undefined, // int64 → string in protojson
      botId: ran ? 'fake-bot-1' : undefined,
      runId: ran ? `${task.taskId.slice(0, -1)}1` : undefined,
    });
  }

  private async cancel(task: FakeTask, killRunning: boolean): Promise<unknown> {
    if (task.state === 'PENDING') {
      await this.setState(task.taskId, 'CANCELED');
      return { canceled: true };
    }
    if (task.state === 'RUNNING' && killRunning) {
      await this.setState(task.taskId, 'KILLED');
      return { canceled: true, wasRunning: true };
    }
    return omitDefaults({ canceled: false, wasRunning: task.state === 'RUNNING' });
  }

  private async notify(task: FakeTask): Promise<void> {
    const topic = task.request['pubsub_topic'];
    const url = this.notifyUrl;
    if (typeof topic !== 'string' || topic === '' || url === undefined) return;
    const data = { task_id: task.taskId, userdata: String(task.request['pubsub_userdata'] ?? '') };
    const token = task.request['pubsub_auth_token'];
    const body = {
      message: {
        data: Buffer.from(JSON.stringify(data, null, 2)).toString('base64'),
        ...(typeof token === 'string' && token !== '' ? { attributes: { auth_token: token } } : {}),
        messageId: String(this.notifications.length + 1),
        publishTime: new Date().toISOString(),
      },
      subscription: `projects/fake/subscriptions/${topic.split('/').pop() ?? 'swarming'}`,
    };
    const sent: SentNotification = {
      taskId: task.taskId,
      state: task.state,
      url,
      body,
      dropped: this.dropNotifications,
    };
    this.notifications.push(sent);
    if (this.dropNotifications) return;
    const p = fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    })
      .then(async (r) => {
        sent.status = r.status;
        await r.arrayBuffer();
      })
      .catch(() => {
        sent.status = 0;
      });
    this.pending.add(p);
    await p.finally(() => this.pending.delete(p));
  }
}
