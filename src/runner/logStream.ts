/**
 * Streams a build's output to Kiln while it runs: bytes are decoded as UTF-8 (a character split
 * across reads is held back), buffered, and uploaded every few seconds at their byte offset, so a
 * retried chunk is harmless. `finish()` uploads the rest and marks the log complete.
 */
import { StringDecoder } from 'node:string_decoder';
import type pino from 'pino';
import { KilnApiError, type KilnClient } from '../client/kilnClient.ts';

/** Characters per upload; well under the API's body limit even when every one needs escaping. */
const MAX_CHUNK_CHARS = 64 * 1024;

/** See the module comment. */
export class LogStream {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';
  /** Bytes the server has. */
  private offset = 0;
  private inFlight: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Set when the server refuses for good (lease gone): nothing more is sent. */
  private closed = false;

  constructor(
    private readonly o: {
      client: KilnClient;
      buildId: string;
      leaseKey: string;
      flushIntervalMs: number;
      logger: pino.Logger;
    },
  ) {
    this.timer = setInterval(() => void this.flush(false), o.flushIntervalMs);
    this.timer.unref();
  }

  /** Adds output bytes. */
  write(chunk: Buffer | string): void {
    this.pending += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
  }

  /** Uploads what is buffered; with `complete`, all of it and the end mark. */
  flush(complete: boolean): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.inFlight) await this.inFlight.catch(() => undefined);
      if (this.closed) return;
      do {
        if (this.closed) return;
        const data = this.pending.slice(0, MAX_CHUNK_CHARS);
        const last = data.length === this.pending.length;
        if (data.length === 0 && !complete) return;
        try {
          const r = await this.o.client.uploadLog(this.o.buildId, {
            leaseKey: this.o.leaseKey,
            offset: this.offset,
            data,
            complete: complete && last,
          });
          this.pending = this.pending.slice(data.length);
          this.offset = r.size;
        } catch (e) {
          const code = e instanceof KilnApiError ? e.code : 'UNAVAILABLE';
          if (code === 'UNAVAILABLE' || code === 'INTERNAL') {
            this.o.logger.warn({ buildId: this.o.buildId, err: (e as Error).message }, 'log upload failed; will retry');
            if (!complete) return;
            await new Promise((r) => setTimeout(r, 1000));
            continue;
          }
          this.o.logger.warn({ buildId: this.o.buildId, code }, 'log upload refused; not sending more');
          this.closed = true;
          return;
        }
        if (data.length === 0 || (complete && last)) return;
      } while (this.pending.length > 0 || complete);
    };
    const p = run();
    this.inFlight = p;
    return p;
  }

  /** Uploads the rest and marks the log complete (gives up after `timeoutMs` of failures). */
  async finish(timeoutMs = 30_000): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.pending += this.decoder.end();
    await Promise.race([this.flush(true), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
    this.closed = true;
  }
}
