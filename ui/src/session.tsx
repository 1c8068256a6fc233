/**
 * Who the user is to Kiln: GET /api/v1/session with the token kept for this browser session. With
 * auth on and no (or a refused) token, the app shows the token prompt with the server's reason.
 */
import { createContext, type FormEvent, type ReactNode, useCallback, useContext, useEffect, useState } from 'react';
import type { SessionResponse } from '../../src/api/routes/getSession.ts';
import type { Role } from '../../src/config/schema.ts';
import { ApiError, apiGet, onUnauthenticated, sessionToken, setSessionToken } from './api.ts';
import { restartLive } from './live.ts';

const RANK: Record<Role, number> = { READER: 0, SCHEDULER: 1, WRITER: 2 };

/** The session and what it allows. */
export interface Session extends SessionResponse {
  /** True when the caller has at least `role` on `bucket` (`project/bucket`). */
  can(bucket: string, role: Role): boolean;
  signOut(): void;
}

const SessionContext = createContext<Session | undefined>(undefined);

/** The current session (inside `SessionGate`). */
export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error('useSession outside SessionGate');
  return s;
}

/** Renders `children` once the session is known; the token prompt while it is refused. */
export function SessionGate({ children }: { children: ReactNode }) {
  const [session, setSession] = useState<SessionResponse>();
  const [reason, setReason] = useState<string>();
  const [failed, setFailed] = useState<string>();
  const load = useCallback(async () => {
    try {
      setSession(await apiGet<SessionResponse>('/api/v1/session'));
      setReason(undefined);
      setFailed(undefined);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        setSession(undefined);
        setReason(sessionToken() ? `The token was refused: ${e.message}` : undefined);
      } else {
        setFailed(e instanceof Error ? e.message : String(e));
      }
    }
  }, []);
  useEffect(() => {
    void load();
  }, [load]);
  useEffect(
    () =>
      onUnauthenticated((why) => {
        setSession(undefined);
        setReason(sessionToken() ? `The token was refused: ${why}` : `A token is needed: ${why}`);
      }),
    [],
  );
  const signOut = useCallback(() => {
    setSessionToken(undefined);
    setSession(undefined);
    setReason('Signed out.');
    restartLive();
  }, []);
  if (failed) {
    return (
      <div className="error" role="alert">
        Kiln's API did not answer: {failed}{' '}
        <button type="button" onClick={() => void load()}>
          Retry
        </button>
      </div>
    );
  }
  if (!session) {
    return (
      <TokenPrompt
        reason={reason}
        onToken={(t) => {
          setSessionToken(t);
          restartLive();
          void load();
        }}
      />
    );
  }
  const roles = new Map(session.buckets.map((b) => [b.bucket, b.role]));
  const value: Session = {
    ...session,
    can: (bucket, role) => {
      const has = roles.get(bucket);
      return has !== undefined && RANK[has] >= RANK[role];
    },
    signOut,
  };
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

/** Asks for a bearer token; kept in sessionStorage (this tab, until it closes). */
function TokenPrompt({ reason, onToken }: { reason?: string; onToken(token: string): void }) {
  const [token, setToken] = useState('');
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (token.trim()) onToken(token.trim());
  };
  return (
    <div className="prompt">
      <h1>Kiln</h1>
      <form onSubmit={submit} aria-label="token prompt">
        <p>This Kiln needs a token. It is kept in this browser tab until you close it.</p>
        {reason && (
          <p className="error" role="alert" data-testid="token-reason">
            {reason}
          </p>
        )}
        <label>
          Token{' '}
          <input
            type="password"
            name="token"
            autoComplete="off"
            value={token}
            onChange={(e) => setToken(e.target.value)}
            autoFocus
          />
        </label>{' '}
        <button type="submit">Sign in</button>
      </form>
    </div>
  );
}
