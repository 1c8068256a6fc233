/**
 * The UI's one way to the HTTP API (same origin): JSON in and out, the bearer token from the browser
 * session, and Kiln's `{code, message}` errors as `ApiError`. A 401 anywhere sends the app back to its
 * token prompt with the server's reason.
 */
import { useCallback, useEffect, useRef, useState } from 'react';

const TOKEN_KEY = 'kiln.token';

/** The token kept for this browser session (tab), if any. */
export function sessionToken(): string | undefined {
  return sessionStorage.getItem(TOKEN_KEY) ?? undefined;
}

/** Keeps (or with undefined, forgets) the token for this browser session. */
export function setSessionToken(token: string | undefined): void {
  if (token === undefined) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

/** An error answer of the API. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Listeners told when the API answers 401 (the token is missing, wrong, or no longer configured). */
const unauthenticated = new Set<(reason: string) => void>();
export function onUnauthenticated(fn: (reason: string) => void): () => void {
  unauthenticated.add(fn);
  return () => unauthenticated.delete(fn);
}

/** Headers every call sends. */
export function authHeaders(): Record<string, string> {
  const t = sessionToken();
  return t ? { authorization: `Bearer ${t}` } : {};
}

async function failure(res: Response): Promise<ApiError> {
  let code = 'HTTP_' + res.status;
  let message = res.statusText || `HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { code?: string; message?: string };
    code = body.code ?? code;
    message = body.message ?? message;
  } catch {
    /* not JSON */
  }
  const e = new ApiError(res.status, code, message);
  if (res.status === 401) for (const fn of unauthenticated) fn(message);
  return e;
}

/** GET a JSON answer. */
export async function apiGet<T>(path: string, signal?: AbortSignal): Promise<T> {
  const res = await fetch(path, { headers: { accept: 'application/json', ...authHeaders() }, signal });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

/** POST a JSON body, get a JSON answer. */
export async function apiPost<T>(path: string, body: unknown): Promise<T> {
  const res = await fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...authHeaders() },
    body: JSON.stringify(body ?? {}),
  });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

/** GET text with its headers (build logs). */
export async function apiText(path: string, signal?: AbortSignal): Promise<{ text: string; headers: Headers }> {
  const res = await fetch(path, { headers: authHeaders(), signal });
  if (!res.ok) throw await failure(res);
  return { text: await res.text(), headers: res.headers };
}

/** What `useApi` holds. */
export interface ApiState<T> {
  data?: T;
  error?: ApiError | Error;
  loading: boolean;
  /** Fetches again, keeping the current data on screen meanwhile. */
  reload(): void;
  /** Replaces the data (live updates patch it in place). */
  setData(fn: (d: T | undefined) => T | undefined): void;
}

/** Fetches `path` (null: nothing) whenever it changes. */
export function useApi<T>(path: string | null): ApiState<T> {
  const [data, setDataState] = useState<T>();
  const [error, setError] = useState<ApiError | Error>();
  const [loading, setLoading] = useState(path !== null);
  const [tick, setTick] = useState(0);
  const current = useRef(path);
  current.current = path;
  useEffect(() => {
    if (path === null) return;
    const abort = new AbortController();
    setLoading(true);
    apiGet<T>(path, abort.signal)
      .then((d) => {
        if (current.current !== path) return;
        setDataState(d);
        setError(undefined);
      })
      .catch((e: unknown) => {
        if (abort.signal.aborted) return;
        setError(e instanceof Error ? e : new Error(String(e)));
      })
      .finally(() => {
        if (!abort.signal.aborted) setLoading(false);
      });
    return () => abort.abort();
  }, [path, tick]);
  useEffect(() => {
    setDataState(undefined);
    setError(undefined);
  }, [path]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  const setData = useCallback((fn: (d: T | undefined) => T | undefined) => setDataState((d) => fn(d)), []);
  return { data, error, loading, reload, setData };
}
