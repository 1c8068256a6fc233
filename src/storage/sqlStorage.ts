/**
 * `Storage` in SQL that runs unchanged on PGlite and PostgreSQL. Build rows keep the whole build as
 * JSON plus the columns that searches and peeks filter on.
 */
import { createHash } from 'node:crypto';
import { type Build, type BuildLeaseKeys } from '../domain/build.ts';
import { KilnError } from '../domain/errors.ts';
import { type LogStore } from '../logs/logStore.ts';
import { SqlLogStore } from '../logs/sqlLogStore.ts';
import { type SqlClient, type SqlExecutor } from './sqlClient.ts';
import {
  type BuildPage,
  type BuildQuery,
  type BuildReservation,
  type LeaseKeyCheck,
  type PeekQuery,
  type ReserveBuildRequest,
  type Storage,
  type VerificationQuery,
} from './storage.ts';
import { type StoredVerification } from '../domain/verification.ts';

const MAX_PAGE = 1000;

/** Storage over any `SqlClient`; the backends differ only in how they connect. */
export class SqlStorage implements Storage {
  readonly logs: LogStore;

  constructor(
    private readonly db: SqlClient,
    readonly kind: Storage['kind'],
  ) {
    this.logs = new SqlLogStore(db);
  }

  async reserveBuild(req: ReserveBuildRequest): Promise<BuildReservation> {
    const { project, bucket, builder } = req.builder;
    const existing = async (): Promise<BuildReservation | undefined> => {
      if (req.requestKey === undefined) return undefined;
      const r = await this.db.query<{ build_id: string; number: number }>(
        'SELECT build_id::text AS build_id, number FROM schedule_requests WHERE request_key = $1',
        [req.requestKey],
      );
      const row = r.rows[0];
      return row ? { buildId: row.build_id, number: row.number, created: false } : undefined;
    };
    const seen = await existing();
    if (seen) return seen;
    const nextNumber = async (tx: SqlExecutor): Promise<number> => {
      const n = await tx.query<{ last_number: number }>(
        `INSERT INTO build_numbers (project, bucket, builder, last_number) VALUES ($1, $2, $3, 1)
         ON CONFLICT (project, bucket, builder) DO UPDATE SET last_number = build_numbers.last_number + 1
         RETURNING last_number`,
        [project, bucket, builder],
      );
      const number = n.rows[0]?.last_number;
      if (number === undefined) throw new KilnError('INTERNAL', 'build number allocation returned nothing');
      return number;
    };
    // Without a request key the number is one atomic statement: no transaction round trips.
    if (req.requestKey === undefined) return { buildId: req.buildId, number: await nextNumber(this.db), created: true };
    const reserved = await this.db
      .transaction(async (tx) => {
        const number = await nextNumber(tx);
        if (req.requestKey !== undefined) {
          const ins = await tx.query(
            `INSERT INTO schedule_requests (request_key, build_id, number) VALUES ($1, $2::bigint, $3)
           ON CONFLICT (request_key) DO NOTHING RETURNING number`,
            [req.requestKey, req.buildId, number],
          );
          // A concurrent request with the same key won: give the number back by rolling back.
          if (ins.rows.length === 0) throw new LostRace();
        }
        return { buildId: req.buildId, number, created: true };
      })
      .catch(async (e: unknown) => {
        if (!(e instanceof LostRace)) throw e;
        const winner = await existing();
        if (!winner) throw new KilnError('INTERNAL', 'schedule request vanished after a conflict');
        return winner;
      });
    return reserved;
  }

  async recordBuild(build: Build, leaseKeys?: BuildLeaseKeys): Promise<void> {
    // Same version, other content: the stored write came from a workflow task that was lost.
    await this.db.query(
      `INSERT INTO builds (id, project, bucket, builder, number, status, priority, leased, tags, dimensions,
                           create_time, update_time, version, data, lease_expires, lease_key_hashes, ended_by_key_hash)
       VALUES ($1::bigint, $2, $3, $4, $5, $6, $7, $8, $9::text[], $10::text[], $11, $12, $13, $14::jsonb, $15,
               $16::text[], $17)
       ON CONFLICT (id) DO UPDATE SET
         status = EXCLUDED.status, priority = EXCLUDED.priority, leased = EXCLUDED.leased,
         tags = EXCLUDED.tags, dimensions = EXCLUDED.dimensions, update_time = EXCLUDED.update_time,
         version = EXCLUDED.version, data = EXCLUDED.data, lease_expires = EXCLUDED.lease_expires,
         lease_key_hashes = EXCLUDED.lease_key_hashes, ended_by_key_hash = EXCLUDED.ended_by_key_hash
       WHERE builds.version < EXCLUDED.version
          OR (builds.version = EXCLUDED.version AND builds.data IS DISTINCT FROM EXCLUDED.data)`,
      [
        build.id,
        build.builder.project,
        build.builder.bucket,
        build.builder.builder,
        build.number,
        build.status,
        build.priority,
        build.leaseExpiration !== undefined,
        build.tags,
        build.dimensions,
        build.createTime,
        build.updateTime,
        build.version,
        JSON.stringify(build),
        build.leaseExpiration ?? null,
        leaseKeys ? leaseKeys.known.map(keyHash) : null,
        leaseKeys?.endedBy !== undefined ? keyHash(leaseKeys.endedBy) : null,
      ],
    );
  }

  async getBuild(id: string): Promise<Build | undefined> {
    const r = await this.db.query<{ data: Build }>('SELECT data FROM builds WHERE id = $1::bigint', [id]);
    return r.rows[0]?.data;
  }

  async checkLeaseKeys(items: { buildId: string; leaseKey: string }[]): Promise<LeaseKeyCheck[]> {
    if (items.length === 0) return [];
    const r = await this.db.query<{ id: string; data: Build; hashes: string[] | null; ended_by: string | null }>(
      `SELECT id::text AS id, data, lease_key_hashes AS hashes, ended_by_key_hash AS ended_by
       FROM builds WHERE id = ANY($1::bigint[])`,
      [[...new Set(items.map((it) => it.buildId))]],
    );
    const rows = new Map(r.rows.map((row) => [row.id, row]));
    return items.map((it) => {
      const row = rows.get(it.buildId);
      if (!row) return { endedBy: false };
      const h = keyHash(it.leaseKey);
      return {
        build: row.data,
        ...(row.hashes !== null ? { known: row.hashes.includes(h) } : {}),
        endedBy: row.ended_by === h,
      };
    });
  }

  async searchBuilds(q: BuildQuery): Promise<BuildPage> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: (p: string) => string, value: unknown): void => {
      params.push(value);
      where.push(sql(`$${params.length}`));
    };
    if (q.buckets !== undefined) add((p) => `(project || '/' || bucket) = ANY(${p}::text[])`, q.buckets);
    if (q.builder?.project) add((p) => `project = ${p}`, q.builder.project);
    if (q.builder?.bucket) add((p) => `bucket = ${p}`, q.builder.bucket);
    if (q.builder?.builder) add((p) => `builder = ${p}`, q.builder.builder);
    if (q.status) add((p) => `status = ${p}`, q.status);
    const tags = [...(q.tags ?? []), ...(q.buildset !== undefined ? [`buildset:${q.buildset}`] : [])];
    if (tags.length > 0) add((p) => `tags @> ${p}::text[]`, tags);
    if (q.createdAfter) add((p) => `create_time >= ${p}`, q.createdAfter);
    if (q.createdBefore) add((p) => `create_time < ${p}`, q.createdBefore);
    if (q.cursor) add((p) => `id > ${p}::bigint`, q.cursor);
    const limit = Math.min(Math.max(q.limit ?? 100, 1), MAX_PAGE);
    params.push(limit + 1);
    const r = await this.db.query<{ data: Build }>(
      `SELECT data FROM builds ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id ASC LIMIT $${params.length}`,
      params,
    );
    const builds = r.rows.slice(0, limit).map((row) => row.data);
    const last = builds[builds.length - 1];
    return r.rows.length > limit && last ? { builds, nextCursor: last.id } : { builds };
  }

  async peekBuilds(q: PeekQuery): Promise<Build[]> {
    if (q.buckets.length === 0) return [];
    const pairs = q.buckets.map((b) => b.split('/'));
    const params: unknown[] = [pairs.map((p) => p[0] ?? ''), pairs.map((p) => p[1] ?? '')];
    // Row comparison on (project, bucket) lets the planner use the partial index of SCHEDULED builds.
    // A stored lease past its expiry may be one the workflow never granted (a lost workflow task):
    // offer the build, and let the workflow decide at lease time.
    const where = [
      `status = 'SCHEDULED'`,
      '(NOT leased OR lease_expires <= now())',
      `(project, bucket) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
    ];
    if (q.dimensions !== undefined) {
      params.push(q.dimensions);
      where.push(`dimensions <@ $${params.length}::text[]`);
    }
    if (q.builders !== undefined) {
      params.push(q.builders);
      where.push(`builder = ANY($${params.length}::text[])`);
    }
    params.push(Math.min(Math.max(q.limit ?? 10, 1), MAX_PAGE));
    const r = await this.db.query<{ data: Build }>(
      `SELECT data FROM builds WHERE ${where.join(' AND ')} ORDER BY priority ASC, id DESC LIMIT $${params.length}`,
      params,
    );
    return r.rows.map((row) => row.data);
  }

  async recordVerification(v: StoredVerification): Promise<void> {
    await this.db.query(
      `INSERT INTO verifications (id, host, change, patchset, phase, create_time, update_time, version, data)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
       ON CONFLICT (id) DO UPDATE SET
         phase = EXCLUDED.phase, update_time = EXCLUDED.update_time, version = EXCLUDED.version, data = EXCLUDED.data
       WHERE verifications.version < EXCLUDED.version
          OR (verifications.version = EXCLUDED.version AND verifications.data IS DISTINCT FROM EXCLUDED.data)`,
      [v.id, v.host, v.change, v.patchset, v.phase, v.createTime, v.updateTime, v.version, JSON.stringify(v)],
    );
  }

  async getVerification(id: string): Promise<StoredVerification | undefined> {
    const r = await this.db.query<{ data: StoredVerification }>('SELECT data FROM verifications WHERE id = $1', [id]);
    return r.rows[0]?.data;
  }

  async findVerifications(q: VerificationQuery): Promise<StoredVerification[]> {
    const params: unknown[] = [q.change];
    const where = ['change = $1'];
    if (q.host !== undefined) where.push(`host = $${params.push(q.host)}`);
    if (q.patchset !== undefined) where.push(`patchset = $${params.push(q.patchset)}`);
    params.push(Math.min(Math.max(q.limit ?? 100, 1), MAX_PAGE));
    const r = await this.db.query<{ data: StoredVerification }>(
      `SELECT data FROM verifications WHERE ${where.join(' AND ')}
       ORDER BY patchset DESC, create_time DESC LIMIT $${params.length}`,
      params,
    );
    return r.rows.map((row) => row.data);
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

/** What storage keeps of a lease key: its SHA-256, never the key itself. */
function keyHash(leaseKey: string): string {
  return createHash('sha256').update(leaseKey).digest('hex');
}

/** Internal: a concurrent schedule with the same request key committed first. */
class LostRace extends Error {}
