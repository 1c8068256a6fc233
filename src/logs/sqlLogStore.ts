/**
 * Build logs in Kiln's database, for deployments with several API processes (on PostgreSQL any of
 * them serves any log). Same semantics as `FileLogStore`: append by byte offset (a retried upload
 * changes nothing), then complete. A log is a header row (size, complete) and its chunks; an append
 * locks the header row, so concurrent writers of one log take turns across processes.
 */
import { isBuildId } from '../domain/buildId.ts';
import { KilnError } from '../domain/errors.ts';
import { type SqlClient, type SqlExecutor } from '../storage/sqlClient.ts';
import {
  type AppendLimits,
  checkLogKey,
  freshBytes,
  type LogKey,
  type LogRead,
  type LogState,
  type LogStore,
} from './logStore.ts';

/** See the module comment. */
export class SqlLogStore implements LogStore {
  constructor(private readonly db: SqlClient) {}

  async append(
    key: LogKey,
    offset: number,
    data: Buffer,
    complete: boolean,
    limits: AppendLimits = {},
  ): Promise<LogState> {
    checkLogKey(key);
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new KilnError('INVALID_ARGUMENT', 'offset must be a non-negative integer');
    }
    return this.db.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO build_logs (build_id, attempt, size, complete) VALUES ($1::bigint, $2, 0, false)
         ON CONFLICT (build_id, attempt) DO NOTHING`,
        [key.buildId, key.attempt],
      );
      const head = (
        await tx.query<{ size: string; complete: boolean }>(
          'SELECT size, complete FROM build_logs WHERE build_id = $1::bigint AND attempt = $2 FOR UPDATE',
          [key.buildId, key.attempt],
        )
      ).rows[0];
      if (!head) throw new KilnError('INTERNAL', 'log header vanished');
      const size = Number(head.size);
      const overlap = Math.max(0, Math.min(data.length, size - offset));
      const existing =
        overlap > 0 ? await readRange(tx, key.buildId, key.attempt, offset, offset + overlap) : Buffer.alloc(0);
      const fresh = freshBytes(offset, size, data, existing, head.complete, limits);
      if (fresh.length > 0) {
        await tx.query(
          'INSERT INTO build_log_chunks (build_id, attempt, start_offset, data) VALUES ($1::bigint, $2, $3, $4)',
          [key.buildId, key.attempt, size, fresh],
        );
      }
      const state = { size: size + fresh.length, complete: complete || head.complete };
      if (fresh.length > 0 || state.complete !== head.complete) {
        await tx.query('UPDATE build_logs SET size = $3, complete = $4 WHERE build_id = $1::bigint AND attempt = $2', [
          key.buildId,
          key.attempt,
          state.size,
          state.complete,
        ]);
      }
      return state;
    });
  }

  async read(
    buildId: string,
    opts: { attempt?: number; offset?: number; limit?: number } = {},
  ): Promise<LogRead | undefined> {
    const attempt = opts.attempt ?? (await this.attempts(buildId)).at(-1);
    if (attempt === undefined) return undefined;
    checkLogKey({ buildId, attempt });
    const head = (
      await this.db.query<{ size: string; complete: boolean }>(
        'SELECT size, complete FROM build_logs WHERE build_id = $1::bigint AND attempt = $2',
        [buildId, attempt],
      )
    ).rows[0];
    if (!head) return undefined;
    const size = Number(head.size);
    const offset = Math.min(Math.max(opts.offset ?? 0, 0), size);
    const end = offset + Math.min(size - offset, opts.limit ?? size);
    const data = end > offset ? await readRange(this.db, buildId, attempt, offset, end) : Buffer.alloc(0);
    return { attempt, data, size, complete: head.complete };
  }

  async attempts(buildId: string): Promise<number[]> {
    if (!isBuildId(buildId)) throw new KilnError('INVALID_ARGUMENT', `not a build ID: ${buildId}`);
    const r = await this.db.query<{ attempt: number }>(
      'SELECT attempt FROM build_logs WHERE build_id = $1::bigint ORDER BY attempt',
      [buildId],
    );
    return r.rows.map((x) => x.attempt);
  }
}

/** Bytes [start, end) of a log (within its size). */
async function readRange(
  db: SqlExecutor,
  buildId: string,
  attempt: number,
  start: number,
  end: number,
): Promise<Buffer> {
  // The chunks that overlap [start, end): the one starting at or before start, and those after.
  const chunks = await db.query<{ start_offset: string; data: Uint8Array }>(
    `SELECT start_offset, data FROM build_log_chunks
     WHERE build_id = $1::bigint AND attempt = $2 AND start_offset < $4
       AND start_offset >= COALESCE((SELECT max(start_offset) FROM build_log_chunks
                                     WHERE build_id = $1::bigint AND attempt = $2 AND start_offset <= $3), 0)
     ORDER BY start_offset`,
    [buildId, attempt, start, end],
  );
  const parts = chunks.rows.map((c) => Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength));
  const first = Number(chunks.rows[0]?.start_offset ?? start);
  return Buffer.concat(parts).subarray(start - first, end - first);
}
