/**
 * A typed client for Kiln's HTTP API, used by the CLI, `kiln runner` and tests. Errors come back as
 * `KilnApiError` carrying the server's code, so callers branch on codes, not on text.
 */
import { type Build } from '../domain/build.ts';
import { type ErrorCode, isErrorCode } from '../domain/errors.ts';
import { type StoredVerification } from '../domain/verification.ts';
import { type PromotionAttempt } from '../domain/launchpad/promotion.ts';
import { type ScheduleView } from '../launchpad/api.ts';

/** An error answer from the API (or a transport failure, code UNAVAILABLE). */
export class KilnApiError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'KilnApiError';
  }
}

/** A granted lease. */
export interface LeaseResponse {
  leaseKey: string;
  leaseExpiration: string;
  build: Build;
}

/** A builder as `GET /api/v1/builders/:p/:b/:n` returns it. */
export interface BuilderInfo {
  builder: { project: string; bucket: string; builder: string };
  command?: string[];
  dimensions: string[];
  leaseDurationSecs: number;
  maxLeaseDurationSecs: number;
  executionTimeoutSecs: number;
}

/** Where a log stands after an upload. */
export interface LogUploadResponse {
  attempt: number;
  size: number;
  complete: boolean;
}

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

  /** Sends one request; JSON in and out. */
  async request<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.o.token) headers.authorization = `Bearer ${this.o.token}`;
    let res: Response;
    try {
      res = await fetch(new URL(path, this.o.baseUrl), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.o.timeoutMs ?? 30_000),
      });
    } catch (e) {
      throw new KilnApiError('UNAVAILABLE', `cannot reach Kiln at ${this.o.baseUrl}: ${(e as Error).message}`, 0);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text.length ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!res.ok) {
      const e = json as { code?: unknown; message?: unknown } | undefined;
      const code = isErrorCode(e?.code) ? e.code : res.status >= 500 ? 'UNAVAILABLE' : 'INVALID_ARGUMENT';
      throw new KilnApiError(code, typeof e?.message === 'string' ? e.message : `HTTP ${res.status}`, res.status);
    }
    return json as T;
  }

  schedule(req: {
    builder: { project: string; bucket: string; builder: string };
    properties?: Record<string, unknown>;
    tags?: string[];
    priority?: number;
    dimensions?: string[];
    requestId?: string;
  }): Promise<Build> {
    return this.request('POST', '/api/v1/builds', req);
  }

  /** A change's stored verification attempts, newest patch set first. */
  verifications(q: {
    change: number;
    host?: string;
    patchset?: number;
  }): Promise<{ verifications: StoredVerification[] }> {
    const p = new URLSearchParams({ change: String(q.change) });
    if (q.host !== undefined) p.set('host', q.host);
    if (q.patchset !== undefined) p.set('patchset', String(q.patchset));
    return this.request('GET', `/api/v1/verifications?${p.toString()}`);
  }

  get(id: string): Promise<Build> {
    return this.request('GET', `/api/v1/builds/${encodeURIComponent(id)}`);
  }

  search(q: Record<string, string | string[] | number | undefined>): Promise<{ builds: Build[]; nextCursor?: string }> {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) {
      if (v === undefined) continue;
      for (const x of Array.isArray(v) ? v : [v]) p.append(k, String(x));
    }
    return this.request('GET', `/api/v1/builds?${p.toString()}`);
  }

  cancel(id: string, reason?: string): Promise<Build> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/cancel`, { reason });
  }

  setPriority(id: string, priority: number): Promise<Build> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/priority`, { priority });
  }

  peek(req: {
    buckets: string[];
    dimensions?: string[];
    builders?: string[];
    maxBuilds?: number;
  }): Promise<{ builds: Build[] }> {
    return this.request('POST', '/api/v1/peek', req);
  }

  lease(
    id: string,
    req: { leaseDurationSecs?: number; holder?: string; requestId?: string } = {},
  ): Promise<LeaseResponse> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/lease`, req);
  }

  start(id: string, req: { leaseKey: string; url?: string }): Promise<Build> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/start`, req);
  }

  heartbeat(id: string, req: { leaseKey: string; leaseDurationSecs?: number }): Promise<{ leaseExpiration: string }> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/heartbeat`, req);
  }

  heartbeatBatch(heartbeats: { buildId: string; leaseKey: string; leaseDurationSecs?: number }[]): Promise<{
    results: { buildId: string; leaseExpiration?: string; error?: { code: ErrorCode; message: string } }[];
  }> {
    return this.request('POST', '/api/v1/heartbeat', { heartbeats });
  }

  succeed(
    id: string,
    req: {
      leaseKey: string;
      output?: { properties?: Record<string, unknown> };
      summaryMarkdown?: string;
      url?: string;
    },
  ): Promise<Build> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/succeed`, req);
  }

  /** A builder's config as runners need it (command, dimensions, lease settings). */
  getBuilder(b: { project: string; bucket: string; builder: string }): Promise<BuilderInfo> {
    const path = [b.project, b.bucket, b.builder].map(encodeURIComponent).join('/');
    return this.request('GET', `/api/v1/builders/${path}`);
  }

  /** Appends `data` at byte `offset` of the build's log; the lease key is the capability. */
  uploadLog(
    id: string,
    req: { leaseKey: string; offset: number; data: string; complete?: boolean },
  ): Promise<LogUploadResponse> {
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
      throw new KilnApiError('UNAVAILABLE', `cannot reach Kiln at ${this.o.baseUrl}: ${(e as Error).message}`, 0);
    }
    const data = Buffer.from(await res.arrayBuffer());
    if (!res.ok) {
      let e: { code?: unknown; message?: unknown } | undefined;
      try {
        e = JSON.parse(data.toString('utf8')) as typeof e;
      } catch {
        e = undefined;
      }
      const code = isErrorCode(e?.code) ? e.code : res.status >= 500 ? 'UNAVAILABLE' : 'INVALID_ARGUMENT';
      throw new KilnApiError(code, typeof e?.message === 'string' ? e.message : `HTTP ${res.status}`, res.status);
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

  fail(
    id: string,
    req: {
      leaseKey: string;
      failureReason?: 'BUILD_FAILURE' | 'INFRA_FAILURE';
      output?: { properties?: Record<string, unknown> };
      summaryMarkdown?: string;
      url?: string;
    },
  ): Promise<Build> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/fail`, req);
  }

  // ---- launchpad: schedulers and promotions ----

  /** Every scheduler and periodic merge with its state. */
  schedules(): Promise<{ schedules: ScheduleView[] }> {
    return this.request('GET', '/api/v1/schedules');
  }

  /** Pauses, unpauses or triggers a scheduler or periodic merge. */
  scheduleAction(name: string, action: 'pause' | 'unpause' | 'trigger', note?: string): Promise<{ ok: boolean }> {
    return this.request('POST', `/api/v1/schedules/${encodeURIComponent(name)}/${action}`, note ? { note } : {});
  }

  /** Promotion and merge attempts, newest first. */
  promotions(q: { repo?: string; name?: string; build?: string; limit?: number } = {}): Promise<{
    promotions: PromotionAttempt[];
  }> {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
    return this.request('GET', `/api/v1/promotions?${p.toString()}`);
  }

  /** What every promotion and merge (of `repo`) would push now, pushing nothing. */
  promotionDryRun(repo?: string): Promise<{
    results: (Omit<PromotionAttempt, 'id' | 'createTime' | 'updateTime' | 'version' | 'kind'> & { kind: string })[];
  }> {
    return this.request('POST', '/api/v1/promotions/dry-run', repo ? { repo } : {});
  }
}
