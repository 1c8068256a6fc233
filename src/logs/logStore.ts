/**
 * Build logs: one log per build attempt (lease generation), appended in chunks by byte offset so a
 * retried upload is harmless, then marked complete. `FileLogStore` keeps them as files under Kiln's
 * data dir (`<dataDir>/logs/<buildId>/<attempt>.log`); another backend (object store, database)
 * implements the same interface.
 */
import { mkdir, open, readdir, stat, writeFile } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { isBuildId } from '../domain/buildId.ts';
import { KilnError } from '../domain/errors.ts';

/** Which log: a build and its attempt (the lease generation that produced it). */
export interface LogKey {
  buildId: string;
  attempt: number;
}

/** Where a log stands: its size in bytes and whether its writer said it is complete. */
export interface LogState {
  size: number;
  complete: boolean;
}

/** Bytes read from a log, with the state of the whole log. */
export interface LogRead extends LogState {
  attempt: number;
  data: Buffer;
}

/** Limits on one append. */
export interface AppendLimits {
  /** Most bytes one attempt's log may hold; an append past it is refused with PAYLOAD_TOO_LARGE. */
  maxBytes?: number;
}

/** Storage for build logs. */
export interface LogStore {
  /**
   * Writes `data` at byte `offset`. Bytes the log already has must be the same (an upload retried
   * after a lost answer changes nothing) and are skipped; different bytes there are refused with
   * CONFLICT, so two writers never splice their data. An offset past the end is refused with
   * CONFLICT naming the size, so the writer resends from there. `complete` marks the log finished;
   * later appends are refused unless they only repeat what is there. A log may not grow past
   * `limits.maxBytes` (PAYLOAD_TOO_LARGE).
   */
  append(key: LogKey, offset: number, data: Buffer, complete: boolean, limits?: AppendLimits): Promise<LogState>;
  /** Reads from `offset` (up to `limit` bytes) of the given attempt, else the latest; undefined when the build has no log. */
  read(buildId: string, opts?: { attempt?: number; offset?: number; limit?: number }): Promise<LogRead | undefined>;
  /** The attempts that have a log, oldest first. */
  attempts(buildId: string): Promise<number[]>;
}

/** `store` with `limits` applied to every append (for code that appends without knowing them). */
export function withAppendLimits(store: LogStore, limits: AppendLimits): LogStore {
  return {
    append: (key, offset, data, complete, more) => store.append(key, offset, data, complete, { ...limits, ...more }),
    read: (buildId, opts) => store.read(buildId, opts),
    attempts: (buildId) => store.attempts(buildId),
  };
}

/**
 * The checks every store makes before writing: `existing` are the log's bytes from `offset` that
 * `data` overlaps. Returns the part of `data` that is new.
 */
export function freshBytes(
  offset: number,
  size: number,
  data: Buffer,
  existing: Buffer,
  complete: boolean,
  limits: AppendLimits,
): Buffer {
  if (offset > size) throw new KilnError('CONFLICT', `log has ${size} bytes; send from offset ${size}`);
  const overlap = Math.min(data.length, size - offset);
  if (!existing.subarray(0, overlap).equals(data.subarray(0, overlap))) {
    throw new KilnError(
      'CONFLICT',
      `the log already has different bytes at offset ${offset}; it has ${size} bytes (another writer, or a resend that changed)`,
    );
  }
  const fresh = data.subarray(overlap);
  if (fresh.length > 0 && complete)
    throw new KilnError('INVALID_BUILD_STATE', 'the log is complete; nothing can be added');
  if (limits.maxBytes !== undefined && size + fresh.length > limits.maxBytes) {
    throw new KilnError(
      'PAYLOAD_TOO_LARGE',
      `a build attempt's log may hold at most ${limits.maxBytes} bytes (logs.maxBytesPerAttempt); it has ${size}`,
    );
  }
  return fresh;
}

/** Refuses anything that could step outside the log folder: build IDs are decimal, attempts integers. */
export function checkLogKey(key: LogKey): void {
  if (!isBuildId(key.buildId)) throw new KilnError('INVALID_ARGUMENT', `not a build ID: ${key.buildId}`);
  if (!Number.isSafeInteger(key.attempt) || key.attempt < 0)
    throw new KilnError('INVALID_ARGUMENT', `bad log attempt ${key.attempt}`);
}

/** Logs as files; see the module comment. One process writes a given folder. */
export class FileLogStore implements LogStore {
  private readonly root: string;
  /** Appends to one log run one at a time. */
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(root: string) {
    this.root = resolve(root);
  }

  private dir(buildId: string): string {
    if (!isBuildId(buildId)) throw new KilnError('INVALID_ARGUMENT', `not a build ID: ${buildId}`);
    const d = resolve(this.root, buildId);
    if (!d.startsWith(this.root + sep)) throw new KilnError('INVALID_ARGUMENT', 'bad log path');
    return d;
  }

  private paths(key: LogKey): { log: string; done: string } {
    checkLogKey(key);
    const d = this.dir(key.buildId);
    return { log: join(d, `${key.attempt}.log`), done: join(d, `${key.attempt}.complete`) };
  }

  private async serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(name) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(name, tail);
    void tail.then(() => {
      if (this.locks.get(name) === tail) this.locks.delete(name);
    });
    return next;
  }

  async append(
    key: LogKey,
    offset: number,
    data: Buffer,
    complete: boolean,
    limits: AppendLimits = {},
  ): Promise<LogState> {
    if (!Number.isSafeInteger(offset) || offset < 0)
      throw new KilnError('INVALID_ARGUMENT', 'offset must be a non-negative integer');
    const p = this.paths(key);
    return this.serial(p.log, async () => {
      await mkdir(this.dir(key.buildId), { recursive: true });
      const size = await fileSize(p.log);
      const wasComplete = await exists(p.done);
      const overlap = Math.max(0, Math.min(data.length, size - offset));
      const existing = overlap > 0 ? await readBytes(p.log, offset, overlap) : Buffer.alloc(0);
      const fresh = freshBytes(offset, size, data, existing, wasComplete, limits);
      if (fresh.length > 0) {
        const fh = await open(p.log, 'a');
        try {
          await fh.write(fresh);
        } finally {
          await fh.close();
        }
      }
      if (complete && !wasComplete) await writeFile(p.done, '');
      return { size: size + fresh.length, complete: complete || wasComplete };
    });
  }

  async read(
    buildId: string,
    opts: { attempt?: number; offset?: number; limit?: number } = {},
  ): Promise<LogRead | undefined> {
    const attempt = opts.attempt ?? (await this.attempts(buildId)).at(-1);
    if (attempt === undefined) return undefined;
    const p = this.paths({ buildId, attempt });
    const size = await fileSize(p.log, -1);
    if (size < 0) return undefined;
    const offset = Math.min(Math.max(opts.offset ?? 0, 0), size);
    const length = Math.min(size - offset, opts.limit ?? size);
    const data = length > 0 ? await readBytes(p.log, offset, length) : Buffer.alloc(0);
    return { attempt, data, size, complete: await exists(p.done) };
  }

  async attempts(buildId: string): Promise<number[]> {
    let names: string[];
    try {
      names = await readdir(this.dir(buildId));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    return names
      .map((n) => /^(\d+)\.log$/.exec(n)?.[1])
      .filter((n): n is string => n !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
  }
}

async function readBytes(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const data = Buffer.alloc(length);
    const { bytesRead } = await fh.read(data, 0, length, offset);
    return data.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function fileSize(path: string, missing = 0): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return missing;
    throw e;
  }
}

async function exists(path: string): Promise<boolean> {
  return (await fileSize(path, -1)) >= 0;
}
