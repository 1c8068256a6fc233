/**
 * Live updates for the web UI: one poll of storage's change feed per API process (only while a page
 * listens), fanned out to every open page as server-sent events. Never a Temporal call: pages learn
 * what changed from storage, which every build transition writes. Each page gets only builds of
 * buckets its token may read; the JSON for one set of buckets is made once per poll, whatever the
 * number of pages.
 *
 * Rows written by another process can commit out of change-sequence order, so each poll re-reads the
 * last few seconds of changes and sends a row only when its version is newer than the one sent.
 */
import type pino from 'pino';
import { bucketPath } from '../domain/build.ts';
import { type StoredVerification } from '../domain/verification.ts';
import { type BuildSummary, type Storage } from '../storage/storage.ts';

/** One open page. */
export interface LiveSubscriber {
  /** `project/bucket`s the page may see. */
  readable: ReadonlySet<string>;
  /** Writes an SSE frame; false when the client is gone. */
  send(frame: string): void;
}

/** Options of `LiveFeed`. */
export interface LiveFeedOptions {
  storage: Storage;
  logger: pino.Logger;
  /** @default 1000 */
  intervalMs?: number;
  /** How far back each poll re-reads, for late commits. @default 5000 */
  overlapMs?: number;
}

/** What a `changes` event carries. */
export interface LiveChanges {
  builds: BuildSummary[];
  verifications: StoredVerification[];
}

/** See the module comment. */
export class LiveFeed {
  private readonly subscribers = new Set<LiveSubscriber>();
  private readonly intervalMs: number;
  private readonly overlapMs: number;
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  /** Cursors by the time they were reached, oldest first; the poll reads from one `overlapMs` old. */
  private cursors: { at: number; cursor: string }[] = [];
  /** Versions already sent, by build / verification ID, with when they were sent. */
  private readonly sent = new Map<string, { version: number; at: number }>();
  private closed = false;

  constructor(private readonly o: LiveFeedOptions) {
    this.intervalMs = o.intervalMs ?? 1000;
    this.overlapMs = o.overlapMs ?? 5000;
  }

  /** Number of open pages. */
  get size(): number {
    return this.subscribers.size;
  }

  /** Adds a page; polling starts with the first. Returns the function that removes it. */
  subscribe(s: LiveSubscriber): () => void {
    this.subscribers.add(s);
    if (!this.timer && !this.closed) this.timer = setInterval(() => void this.poll(), this.intervalMs);
    return () => {
      this.subscribers.delete(s);
      if (this.subscribers.size === 0) this.stopPolling();
    };
  }

  /**
   * Makes sure the feed has its starting cursor, so every change after this call reaches the pages
   * subscribed now (a page says hello after this, then fetches what it shows).
   */
  async ready(): Promise<void> {
    if (this.cursors.length === 0) this.cursors.push({ at: Date.now(), cursor: await this.o.storage.changeCursor() });
  }

  /** Stops polling and forgets every page (the API is closing). */
  close(): void {
    this.closed = true;
    this.subscribers.clear();
    this.stopPolling();
  }

  private stopPolling(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.cursors = [];
    this.sent.clear();
  }

  /** One poll: changed rows since the overlap cursor, newer than what was sent, to every page. */
  async poll(): Promise<void> {
    if (this.polling || this.subscribers.size === 0) return;
    this.polling = true;
    try {
      const now = Date.now();
      if (this.cursors.length === 0) {
        await this.ready();
        return;
      }
      while (this.cursors.length > 1 && (this.cursors[1]?.at ?? now) <= now - this.overlapMs) this.cursors.shift();
      const from = this.cursors[0]?.cursor ?? '0';
      const page = await this.o.storage.changesSince(from, 1000);
      this.cursors.push({ at: now, cursor: page.cursor });
      const fresh = <T extends { id: string; version: number }>(rows: T[], kind: string): T[] =>
        rows.filter((r) => {
          const key = `${kind}/${r.id}`;
          const seen = this.sent.get(key);
          if (seen && seen.version >= r.version) return false;
          this.sent.set(key, { version: r.version, at: now });
          return true;
        });
      const builds = fresh(page.builds, 'b');
      const verifications = fresh(page.verifications, 'v');
      for (const [k, v] of this.sent) if (v.at < now - 3 * this.overlapMs) this.sent.delete(k);
      if (builds.length > 0 || verifications.length > 0) this.fanOut({ builds, verifications });
    } catch (e) {
      this.o.logger.warn({ err: e }, 'live updates: storage poll failed; retrying');
    } finally {
      this.polling = false;
    }
  }

  private fanOut(changes: LiveChanges): void {
    // Pages with the same readable buckets share one serialized frame.
    const frames = new Map<string, string | null>();
    for (const s of this.subscribers) {
      const key = [...s.readable].sort().join(',');
      let frame = frames.get(key);
      if (frame === undefined) {
        const builds = changes.builds.filter((b) => s.readable.has(bucketPath(b.builder)));
        const verifications = changes.verifications.filter((v) =>
          v.platforms.every((p) => s.readable.has(bucketPath(p.builder))),
        );
        frame =
          builds.length + verifications.length > 0
            ? `event: changes\ndata: ${JSON.stringify({ builds, verifications })}\n\n`
            : null;
        frames.set(key, frame);
      }
      if (frame !== null) s.send(frame);
    }
  }
}
