/**
 * A typed client for Kiln's HTTP API, used by the CLI, `kiln runner` and tests. Errors come back as
 * `KilnApiError` carrying the server's code, so callers branch on codes, not on text.
 */
import { type Build } from '../domain/build.ts';
import { type ErrorCode, isErrorCode } from '../domain/errors.ts';

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

  peek(req: { buckets: string[]; dimensions?: string[]; builders?: string[]; maxBuilds?: number }): Promise<{ builds: Build[] }> {
    return this.request('POST', '/api/v1/peek', req);
  }

  lease(id: string, req: { leaseDurationSecs?: number; holder?: string; requestId?: string } = {}): Promise<LeaseResponse> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/lease`, req);
  }

  start(id: string, req: { leaseKey: string; url?: string }): Promise<Build> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/start`, req);
  }

  heartbeat(id: string, req: { leaseKey: string; leaseDurationSecs?: number }): Promise<{ leaseExpiration: string }> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/heartbeat`, req);
  }

  heartbeatBatch(
    heartbeats: { buildId: string; leaseKey: string; leaseDurationSecs?: number }[],
  ): Promise<{ results: ({ buildId: string; leaseExpiration?: string; error?: { code: ErrorCode; message: string } })[] }> {
    return this.request('POST', '/api/v1/heartbeat', { heartbeats });
  }

  succeed(id: string, req: { leaseKey: string; output?: { properties?: Record<string, unknown> }; summaryMarkdown?: string; url?: string }): Promise<Build> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/succeed`, req);
  }

  fail(
    id: string,
    req: { leaseKey: string; failureReason?: 'BUILD_FAILURE' | 'INFRA_FAILURE'; output?: { properties?: Record<string, unknown> }; summaryMarkdown?: string; url?: string },
  ): Promise<Build> {
    return this.request('POST', `/api/v1/builds/${encodeURIComponent(id)}/fail`, req);
  }
}
