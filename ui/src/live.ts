/**
 * Live updates: one server-sent-event stream per browser tab (GET /api/v1/live, read with fetch so the
 * token goes in a header), shared by every component that listens. On each (re)connect the server says
 * `hello` and listeners refetch what they show; after that, `changes` frames carry the builds and
 * verifications storage has newer versions of.
 */
import { useEffect, useRef } from 'react';
import type { StoredVerification } from '../../src/domain/verification.ts';
import type { BuildSummaryOut } from '../../src/api/uiSchemas.ts';
import { authHeaders } from './api.ts';

/** What one `changes` frame carries. */
export interface LiveChanges {
  builds: BuildSummaryOut[];
  verifications: StoredVerification[];
}

interface Listener {
  changes(c: LiveChanges): void;
  hello(): void;
}

const listeners = new Set<Listener>();
let abort: AbortController | undefined;
let connected = false;
const statusListeners = new Set<(connected: boolean) => void>();

function setConnected(c: boolean): void {
  connected = c;
  for (const fn of statusListeners) fn(c);
}

/** True while some component listens (the stream is wanted). */
export function liveWanted(): boolean {
  return listeners.size > 0;
}

/** True while the stream is open. */
export function liveConnected(): boolean {
  return connected;
}

/** Told when the stream opens or drops. */
export function onLiveStatus(fn: (connected: boolean) => void): () => void {
  statusListeners.add(fn);
  return () => statusListeners.delete(fn);
}

async function run(signal: AbortSignal): Promise<void> {
  for (let delay = 500; !signal.aborted; delay = Math.min(delay * 2, 10_000)) {
    try {
      const res = await fetch('/api/v1/live', { headers: { accept: 'text/event-stream', ...authHeaders() }, signal });
      if (res.ok && res.body) {
        delay = 500;
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buf = '';
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          let end: number;
          while ((end = buf.indexOf('\n\n')) >= 0) {
            const frame = buf.slice(0, end);
            buf = buf.slice(end + 2);
            dispatch(frame);
          }
        }
      }
    } catch {
      /* dropped or aborted: reconnect below */
    }
    setConnected(false);
    if (!signal.aborted) await new Promise((r) => setTimeout(r, delay));
  }
}

function dispatch(frame: string): void {
  let event = 'message';
  let data = '';
  for (const line of frame.split('\n')) {
    if (line.startsWith('event: ')) event = line.slice(7);
    else if (line.startsWith('data: ')) data += line.slice(6);
  }
  if (event === 'hello') {
    setConnected(true);
    for (const l of listeners) l.hello();
  } else if (event === 'changes') {
    const c = JSON.parse(data) as LiveChanges;
    for (const l of listeners) l.changes(c);
  }
}

/** Restarts the stream (e.g. after the token changed). */
export function restartLive(): void {
  abort?.abort();
  abort = undefined;
  if (listeners.size > 0) start();
}

function start(): void {
  if (abort) return;
  abort = new AbortController();
  void run(abort.signal);
}

/**
 * Calls `onChanges` for every change frame and `onHello` on every (re)connect while the component is
 * mounted (changes carry versions: apply one only when it is newer than what is shown). The callbacks
 * may change between renders; the latest ones are used.
 */
export function useLive(onChanges: (c: LiveChanges) => void, onHello?: () => void): void {
  const ref = useRef({ onChanges, onHello });
  ref.current = { onChanges, onHello };
  useEffect(() => {
    const l: Listener = {
      changes: (c) => ref.current.onChanges(c),
      // On every (re)connect: what the page shows may predate the stream, so it refetches.
      hello: () => ref.current.onHello?.(),
    };
    listeners.add(l);
    start();
    return () => {
      listeners.delete(l);
      if (listeners.size === 0) {
        abort?.abort();
        abort = undefined;
      }
    };
  }, []);
}
