/**
 * A typed client for Kiln's HTTP API, used by the CLI, `kiln runner` and tests. Errors come back as
 * `KilnApiError` carrying the server's code, so callers branch on codes, not on text. Requests and
 * answers are typed by the route files' own schemas (`z.input` of the request, `z.infer` of the
 * answer), imported as types only: the client never loads server code.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { type ErrorCode, isErrorCode } from '../domain/errors.ts';
import type { CancelBuildResponse } from '../api/routes/cancelBuild.ts';
import type { CompleteBuildResponse, FailBuildRequest, SucceedBuildRequest } from '../api/routes/completeBuild.ts';
import type { GetBuildResponse } from '../api/routes/getBuild.ts';
import type { GetBuildByNumberResponse } from '../api/routes/getBuildByNumber.ts';
import type { BuilderResponse } from '../api/routes/getBuilder.ts';
import type { HeartbeatBatchRequest, HeartbeatBatchResponse } from '../api/routes/heartbeatBatch.ts';
import type { HeartbeatRequest, HeartbeatResponse } from '../api/routes/heartbeatBuild.ts';
import type { LeaseBuildRequest, LeaseBuildResponse } from '../api/routes/leaseBuild.ts';
import type { LeaseNextRequest, LeaseNextResponse } from '../api/routes/leaseNext.ts';
import type { PeekBuildsRequest, PeekBuildsResponse } from '../api/routes/peekBuilds.ts';
import type { DryRunResponse, PromotionsResponse } from '../api/routes/promotions.ts';
import type { ScheduleBuildRequest, ScheduleBuildResponse } from '../api/routes/scheduleBuild.ts';
import type { ScheduleActionResponse, SchedulesResponse } from '../api/routes/schedules.ts';
import type { SearchBuildsResponse } from '../api/routes/searchBuilds.ts';
import type { SearchVerificationsResponse } from '../api/routes/searchVerifications.ts';
import type { SetPriorityResponse } from '../api/routes/setPriority.ts';
import type { StartBuildRequest, StartBuildResponse } from '../api/routes/startBuild.ts';
import type { UpdateBuildRequest, UpdateBuildResponse } from '../api/routes/updateBuild.ts';
import type { UploadLogRequest, UploadLogResponse } from '../api/routes/uploadLog.ts';
import type { WatchLeasesRequest, WatchLeasesResponse } from '../api/routes/watchLeases.ts';

/** An error answer from the API (or a transport failure: code UNAVAILABLE, status 0). */
export class KilnApiError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly status: number,
    /** What a person can do about it, for the CLI to print. */
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'KilnApiError';
  }

  /**
   * True when the same request may succeed later: Kiln or what it depends on (Temporal, storage)
   * was unreachable or failed (any 5xx, 429, or no answer). 4xx answers are final.
   */
  get retryable(): boolean {
    return (
      this.code === 'UNAVAILABLE' ||
      this.code === 'INTERNAL' ||
      this.status === 0 ||
      this.status === 429 ||
      this.status >= 500
    );
  }
}

/** True for an error worth retrying the same request for (see `KilnApiError.retryable`). */
export function isRetryable(e: unknown): boolean {
  return e instanceof KilnApiError && e.retryable;
}

/** The error for a request that got no answer. */
function unreachable(baseUrl: string, e: unknown): KilnApiError {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  const why =
    err.name === 'TimeoutError'
      ? 'no answer in time'
      : [err.message, err.cause?.code ?? err.cause?.message].filter(Boolean).join(': ');
  return new KilnApiError(
    'UNAVAILABLE',
    `cannot reach Kiln at ${baseUrl} (${why})`,
    0,
    'is Kiln running there? `npm start` runs it on this machine; --api or KILN_API names another',
  );
}

/**
 * One HTTP exchange over node:http(s), on Node's keep-alive global agents. `fetch` took 3–4 times the
 * CPU per call (about 0.9 against 0.27 ms, client and a Fastify server together), and runners call
 * several times per build.
 */
function exchange(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: string | undefined,
  signal: AbortSignal,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const all = body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) };
    const req = send(url, { method, headers: all, signal }, (res) => {
      res.setEncoding('utf8');
      let text = '';
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
      res.on('close', () => {
        if (!res.complete) reject(new Error('the connection closed before the whole answer came'));
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The error for a non-2xx answer, from its `{code, message}` body when it has one. */
function answerError(baseUrl: string, status: number, body: unknown): KilnApiError {
  const e = body as { code?: unknown; message?: unknown } | undefined;
  const code = isErrorCode(e?.code) ? e.code : status >= 500 ? 'UNAVAILABLE' : 'INVALID_ARGUMENT';
  const message = typeof e?.message === 'string' ? e.message : `HTTP ${status}`;
  const hint =
    code === 'UNAVAILABLE'
      ? `Kiln at ${baseUrl} cannot serve this right now; try again`
      : code === 'INTERNAL'
        ? `Kiln at ${baseUrl} failed (the details are in its log); try again, and report it if it persists`
        : code === 'UNAUTHENTICATED'
          ? "set KILN_TOKEN (or --token) to a token from the config's acls"
          : undefined;
  return new KilnApiError(code, message, status, hint);
}

/** A granted lease: the lease route's answer (src/api/routes/leaseBuild.ts). */
export type LeaseResponse = LeaseBuildResponse;

/** A builder as `GET /api/v1/builders/:p/:b/:n` returns it (src/api/routes/getBuilder.ts). */
export type BuilderInfo = BuilderResponse;

/** Part of a log as read: bytes from the asked offset, and the state of the whole log. */
export interface LogChunk {
  data: Buffer;
  contentType: string;
  size: number;
  complete: boolean;
  /** The lease generation that wrote it; undefined when the build has no log yet. */
  attempt?: number;
}

/** Options of `KilnClient`. */
export interface KilnClientOptions {
  /** e.g. http://127.0.0.1:8080 */
  baseUrl: string;
  token?: string;
  /** @default 30000 */
  timeoutMs?: number;
}

/** See the module comment. */
export class KilnClient {
  constructor(private readonly o: KilnClientOptions) {}

  /** Sends one request; JSON in and out. `opts` overrides the timeout and can abort it. */
  async request<T>(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    opts: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.o.token) headers.authorization = `Bearer ${this.o.token}`;
    const timeout = AbortSignal.timeout(opts.timeoutMs ?? this.o.timeoutMs ?? 30_000);
    let res: { status: number; text: string };
    try {
      res = await exchange(
        new URL(path, this.o.baseUrl),
        method,
        headers,
        body === undefined ? undefined : JSON.stringify(body),
        // AbortSignal.any only when the caller brings a signal: it costs about a millisecond a call.
        opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout,
      );
    } catch (e) {
      if (opts.signal?.aborted) throw opts.signal.reason ?? e;
      throw unreachable(this.o.baseUrl, timeout.aborted ? timeout.reason : e);
    }
    let json: unknown;
    try {
      json = res.text.length ? JSON.parse(res.text) : undefined;
    } catch {
      json = undefined;
    }
    if (res.status < 200 || res.status > 299) throw answerError(this.o.baseUrl, res.status, json);
    return json as T;
  }

  schedule(req: ScheduleBuildRequest): Promise<ScheduleBuildResponse> {
    return this.request('POST', '/api/v1/builds', req);
  }

  /** A change's stored verification attempts, newest patch set first. */
  verifications(q: { change: number; host?: string; patchset?: number }): Promise<SearchVerificationsResponse> {
    const p = new URLSearchParams({ change: String(q.change) });
    if (q.host !== undefined) p.set('host', q.host);
    if (q.patchset !== undefined) p.set('patchset', String(q.patchset));
    return this.request('GET', `/api/v1/verifications?${p.toString()}`);
  }

  get(id: string): Promise<GetBuildResponse> {
    return this.request('GET', `/api/v1/builds/${encodeURIComponent(id)}`);
  }

  /** A build by builder and per-builder number. */
  getByNumber(
    b: { project: string; bucket: string; builder: string },
    number: number,
  ): Promise<GetBuildByNumberResponse> {
    const path = [b.project, b.bucket, b.builder].map(encodeURIComponent).join('/');
    return this.request('GET', `/api/v1/builders/${path}/builds/${number}`);
  }

  search(q: Record<string, string | string[] | number | undefined>): Promise<SearchBuildsResponse> {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) {
      if (v === undefined) continue;
      for (const x of Array.isArray(v) ? v : [v]) p.append(k, String(x));
    }
    return this.request('GET', `/api/v1/builds?${p.toString()}`);
  }

  cancel(id: string, reason?: string): Promise<CancelBuildResponse> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/cancel`, { reason });
  }

  setPriority(id: string, priority: number): Promise<SetPriorityResponse> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/priority`, { priority });
  }

  peek(req: PeekBuildsRequest): Promise<PeekBuildsResponse> {
    return this.request('POST', '/api/v1/peek', req);
  }

  lease(id: string, req: LeaseBuildRequest = {}): Promise<LeaseBuildResponse> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/lease`, req);
  }

  /** Peek + lease (+ start) in one call: the best build the runner covers, or `{lease: null}`. */
  leaseNext(req: LeaseNextRequest): Promise<LeaseNextResponse> {
    return this.request('POST', '/api/v1/lease-next', req);
  }

  start(id: string, req: StartBuildRequest): Promise<StartBuildResponse> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/start`, req);
  }

  heartbeat(id: string, req: HeartbeatRequest): Promise<HeartbeatResponse> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/heartbeat`, req);
  }

  heartbeatBatch(heartbeats: HeartbeatBatchRequest['heartbeats']): Promise<HeartbeatBatchResponse> {
    return this.request('POST', '/api/v1/heartbeat', { heartbeats });
  }

  succeed(id: string, req: SucceedBuildRequest): Promise<CompleteBuildResponse> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/succeed`, req);
  }

  /**
   * Long-polls until one of the held leases is over (build ended, lease reset): answers at once when
   * one already is, else when storage shows it, else `{results: []}` after `timeoutSecs`.
   */
  watch(
    builds: WatchLeasesRequest['builds'],
    opts: { timeoutSecs: number; signal?: AbortSignal },
  ): Promise<WatchLeasesResponse> {
    return this.request(
      'POST',
      '/api/v1/watch',
      { builds, timeoutSecs: opts.timeoutSecs },
      { timeoutMs: (opts.timeoutSecs + 15) * 1000, signal: opts.signal },
    );
  }

  /** A builder's config as runners need it (command, dimensions, lease settings). */
  getBuilder(b: { project: string; bucket: string; builder: string }): Promise<BuilderResponse> {
    const path = [b.project, b.bucket, b.builder].map(encodeURIComponent).join('/');
    return this.request('GET', `/api/v1/builders/${path}`);
  }

  /** Appends `data` at byte `offset` of the build's log; the lease key is the capability. */
  // ---- chromium2: steps and output properties mid-build ----
  /** Reports steps and/or output properties with the lease key (`POST /api/v1/builds/:id/update`). */
  updateBuild(id: string, req: UpdateBuildRequest): Promise<UpdateBuildResponse> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/update`, req);
  }

  uploadLog(id: string, req: UploadLogRequest): Promise<UploadLogResponse> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/log`, req);
  }

  /** Reads the build's log (latest attempt unless given) from byte `offset`. */
  async readLog(id: string, opts: { offset?: number; attempt?: number } = {}): Promise<LogChunk> {
    const p = new URLSearchParams();
    if (opts.offset !== undefined) p.set('offset', String(opts.offset));
    if (opts.attempt !== undefined) p.set('attempt', String(opts.attempt));
    const headers: Record<string, string> = {};
    if (this.o.token) headers.authorization = `Bearer ${this.o.token}`;
    let res: Response;
    try {
      res = await fetch(new URL(`/api/v1/builds/${encodeURIComponent(id)}/log?${p.toString()}`, this.o.baseUrl), {
        headers,
        signal: AbortSignal.timeout(this.o.timeoutMs ?? 30_000),
      });
    } catch (e) {
      throw unreachable(this.o.baseUrl, e);
    }
    let data: Buffer;
    try {
      data = Buffer.from(await res.arrayBuffer());
    } catch (e) {
      throw unreachable(this.o.baseUrl, e);
    }
    if (!res.ok) {
      let body: unknown;
      try {
        body = JSON.parse(data.toString('utf8'));
      } catch {
        body = undefined;
      }
      throw answerError(this.o.baseUrl, res.status, body);
    }
    const attempt = res.headers.get('x-kiln-log-attempt');
    return {
      data,
      contentType: res.headers.get('content-type') ?? '',
      size: Number(res.headers.get('x-kiln-log-size') ?? data.length),
      complete: res.headers.get('x-kiln-log-complete') === 'true',
      attempt: attempt === null ? undefined : Number(attempt),
    };
  }

  fail(id: string, req: FailBuildRequest): Promise<CompleteBuildResponse> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/fail`, req);
  }

  // ---- launchpad: schedulers and promotions ----

  /** Every scheduler and periodic merge with its state. */
  schedules(): Promise<SchedulesResponse> {
    return this.request('GET', '/api/v1/schedules');
  }

  /** Pauses, unpauses or triggers a scheduler or periodic merge. */
  scheduleAction(
    name: string,
    action: 'pause' | 'unpause' | 'trigger',
    note?: string,
  ): Promise<ScheduleActionResponse> {
    return this.request('POST', `/api/v1/schedules/${encodeURIComponent(name)}/${action}`, note ? { note } : {});
  }

  /** Promotion and merge attempts, newest first. */
  promotions(q: { repo?: string; name?: string; build?: string; limit?: number } = {}): Promise<PromotionsResponse> {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
    return this.request('GET', `/api/v1/promotions?${p.toString()}`);
  }

  /** What every promotion and merge (of `repo`) would push now, pushing nothing. */
  promotionDryRun(repo?: string): Promise<DryRunResponse> {
    return this.request('POST', '/api/v1/promotions/dry-run', repo ? { repo } : {});
  }
}
