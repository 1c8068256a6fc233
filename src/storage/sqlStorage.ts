/**
 * `Storage` in SQL that runs unchanged on PGlite and PostgreSQL. Build rows keep the whole build as
 * JSON plus the columns that searches and peeks filter on.
 */
import { createHash } from 'node:crypto';
import { type Build, type BuilderId, type BuildLeaseKeys } from '../domain/build.ts';
import { KilnError } from '../domain/errors.ts';
import { type LogStore } from '../logs/logStore.ts';
import { SqlLogStore } from '../logs/sqlLogStore.ts';
import { type SqlClient, type SqlExecutor } from './sqlClient.ts';
import {
  type BuilderRecentBuilds,
  type BuilderStats,
  type BuilderSummary,
  type BuildPage,
  type BuildQuery,
  type BuildStatsFigures,
  type BuildSummary,
  type ChangeFeedPage,
  type BuildReservation,
  type LeaseKeyCheck,
  type RecordedBuildWrite,
  type ReplacedBuild,
  type PeekQuery,
  type ReserveBuildRequest,
  type Storage,
  type VerificationQuery,
  type BuildState,
  type OpenBuildStat,
  type BuildProgressWrite,
} from './storage.ts';
import { type BuildStep, type StoredBuildProgress } from '../domain/steps.ts';
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

  get sql(): SqlClient {
    return this.db;
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
    await this.writeBuild(build, leaseKeys, 'upsert');
  }

  async recordBuildReplacing(build: Build, leaseKeys?: BuildLeaseKeys): Promise<RecordedBuildWrite> {
    const rows = await this.writeBuild(build, leaseKeys, 'replacing');
    const row = rows[0];
    if (!row) return { written: false };
    return row.previous === null ? { written: true } : { written: true, previous: row.previous };
  }

  async insertBuild(build: Build): Promise<boolean> {
    return (await this.writeBuild(build, undefined, 'insert')).length > 0;
  }

  /**
   * The upsert of `recordBuild`; `replacing` also returns (one row when it wrote) the previous row's
   * fields of `ReplacedBuild`, read from the statement's snapshot, or null for a new build; `insert`
   * writes only a build storage has not seen (one row when it did).
   */
  private async writeBuild(
    build: Build,
    leaseKeys: BuildLeaseKeys | undefined,
    mode: 'upsert' | 'replacing' | 'insert',
  ): Promise<{ previous: ReplacedBuild | null }[]> {
    // Same version, other content: the stored write came from a workflow task that was lost.
    const onConflict =
      mode === 'insert'
        ? 'ON CONFLICT (id) DO NOTHING RETURNING NULL AS previous'
        : `ON CONFLICT (id) DO UPDATE SET
         status = EXCLUDED.status, priority = EXCLUDED.priority, leased = EXCLUDED.leased,
         tags = EXCLUDED.tags, dimensions = EXCLUDED.dimensions, update_time = EXCLUDED.update_time,
         version = EXCLUDED.version, data = EXCLUDED.data, lease_expires = EXCLUDED.lease_expires,
         lease_key_hashes = EXCLUDED.lease_key_hashes, ended_by_key_hash = EXCLUDED.ended_by_key_hash
       WHERE builds.version < EXCLUDED.version
          OR (builds.version = EXCLUDED.version AND builds.data IS DISTINCT FROM EXCLUDED.data)
       ${mode === 'replacing' ? 'RETURNING (SELECT data FROM previous) AS previous' : ''}`;
    const r = await this.db.query<{ previous: ReplacedBuild | null }>(
      `${mode === 'replacing' ? PREVIOUS_BUILD_CTE : ''}INSERT INTO builds (id, project, bucket, builder, number, status, priority, leased, tags, dimensions,
                           create_time, update_time, version, data, lease_expires, lease_key_hashes, ended_by_key_hash)
       VALUES ($1::bigint, $2, $3, $4, $5, $6, $7, $8, $9::text[], $10::text[], $11, $12, $13, $14::jsonb, $15,
               $16::text[], $17)
       ${onConflict}`,
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
    return r.rows;
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

  async getBuildByNumber(builder: BuilderId, number: number): Promise<Build | undefined> {
    const r = await this.db.query<{ data: Build }>(
      'SELECT data FROM builds WHERE project = $1 AND bucket = $2 AND builder = $3 AND number = $4 ORDER BY id DESC LIMIT 1',
      [builder.project, builder.bucket, builder.builder, number],
    );
    return r.rows[0]?.data;
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
    if (q.createdBy !== undefined) add((p) => `data->>'createdBy' = ${p}`, q.createdBy);
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
    const { text, params } = peekStatement(q);
    const r = await this.db.query<{ data: Build }>(text, params);
    return r.rows.map((row) => row.data);
  }

  async peekBuildIds(q: PeekQuery): Promise<{ id: string; bucket: string }[]> {
    if (q.buckets.length === 0) return [];
    const { text, params } = peekStatement(q, 'ids');
    const r = await this.db.query<{ id: string; project: string; bucket: string }>(text, params);
    return r.rows.map((row) => ({ id: row.id, bucket: `${row.project}/${row.bucket}` }));
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

  // --- web UI read model (issue 14): summaries, grids, statistics, change feed ---

  async getBuilds(ids: string[]): Promise<Build[]> {
    if (ids.length === 0) return [];
    const r = await this.db.query<{ data: Build }>('SELECT data FROM builds WHERE id = ANY($1::bigint[])', [ids]);
    return r.rows.map((row) => row.data);
  }

  async builderSummaries(builders: BuilderId[], opts: { queueLimit?: number } = {}): Promise<BuilderSummary[]> {
    if (builders.length === 0) return [];
    const queueLimit = Math.min(Math.max(opts.queueLimit ?? 10, 0), MAX_PAGE);
    // One statement: per builder, index lookups on (project, bucket, builder, status, id).
    const r = await this.db.query<{
      project: string;
      bucket: string;
      builder: string;
      pending: number;
      running: number;
      oldest: string | null;
      last_build: BuildSummary | null;
      last_green: BuildSummary | null;
      queue: BuildSummary[] | null;
    }>(
      `SELECT b.project, b.bucket, b.builder,
         (SELECT count(*)::int FROM builds x WHERE ${SAME_BUILDER} AND x.status = 'SCHEDULED') AS pending,
         (SELECT count(*)::int FROM builds x WHERE ${SAME_BUILDER} AND x.status = 'STARTED') AS running,
         (SELECT x.data->>'createTime' FROM builds x WHERE ${SAME_BUILDER} AND x.status = 'SCHEDULED'
            ORDER BY x.id DESC LIMIT 1) AS oldest,
         (SELECT ${SUMMARY} FROM builds x WHERE ${SAME_BUILDER} ORDER BY x.id ASC LIMIT 1) AS last_build,
         (SELECT ${SUMMARY} FROM builds x WHERE ${SAME_BUILDER} AND x.status = 'SUCCESS'
            ORDER BY x.id ASC LIMIT 1) AS last_green,
         (SELECT jsonb_agg(q.s ORDER BY q.priority, q.id DESC) FROM (
            SELECT ${SUMMARY} AS s, x.priority, x.id FROM builds x
            WHERE ${SAME_BUILDER} AND x.status = 'SCHEDULED' ORDER BY x.priority ASC, x.id DESC LIMIT $4) q) AS queue
       FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS b(project, bucket, builder, n)
       ORDER BY b.n`,
      [...builderArrays(builders), queueLimit],
    );
    return r.rows.map((row) => ({
      builder: { project: row.project, bucket: row.bucket, builder: row.builder },
      pending: row.pending,
      running: row.running,
      ...(row.oldest !== null ? { oldestPendingTime: row.oldest } : {}),
      ...(row.last_build ? { lastBuild: row.last_build } : {}),
      ...(row.last_green ? { lastGreen: row.last_green } : {}),
      queue: row.queue ?? [],
    }));
  }

  async recentBuildsByBuilder(builders: BuilderId[], perBuilder: number): Promise<BuilderRecentBuilds[]> {
    if (builders.length === 0) return [];
    const r = await this.db.query<{ project: string; bucket: string; builder: string; builds: BuildSummary[] | null }>(
      `SELECT b.project, b.bucket, b.builder,
         (SELECT jsonb_agg(q.s ORDER BY q.id ASC) FROM (
            SELECT ${SUMMARY} AS s, x.id FROM builds x WHERE ${SAME_BUILDER} ORDER BY x.id ASC LIMIT $4) q) AS builds
       FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS b(project, bucket, builder, n)
       ORDER BY b.n`,
      [...builderArrays(builders), Math.min(Math.max(perBuilder, 1), MAX_PAGE)],
    );
    return r.rows.map((row) => ({
      builder: { project: row.project, bucket: row.bucket, builder: row.builder },
      builds: row.builds ?? [],
    }));
  }

  async builderStats(builder: BuilderId, from: string, to: string): Promise<BuilderStats> {
    // Percentiles in SQL over the builder's builds in the window (index on builder + create_time);
    // GROUPING SETS gives each day and the whole window in one pass.
    const r = await this.db.query<StatsRow & { day: string | null }>(
      `WITH w AS (
         SELECT status, create_time,
           extract(epoch FROM (data->>'startTime')::timestamptz - create_time) * 1000 AS queue_ms,
           extract(epoch FROM (data->>'endTime')::timestamptz - (data->>'startTime')::timestamptz) * 1000 AS duration_ms
         FROM builds
         WHERE project = $1 AND bucket = $2 AND builder = $3 AND create_time >= $4 AND create_time < $5)
       SELECT to_char(date_trunc('day', create_time AT TIME ZONE 'UTC'), 'YYYY-MM-DD') AS day, ${STATS_COLUMNS}
       FROM w GROUP BY GROUPING SETS ((date_trunc('day', create_time AT TIME ZONE 'UTC')), ())
       ORDER BY 1 NULLS FIRST`,
      [builder.project, builder.bucket, builder.builder, from, to],
    );
    const whole = r.rows.find((row) => row.day === null);
    return {
      window: whole ? statsFigures(whole) : { ...EMPTY_FIGURES },
      days: r.rows.filter((row) => row.day !== null).map((row) => ({ day: row.day as string, ...statsFigures(row) })),
    };
  }

  async openBuilds(buckets: string[], limit: number): Promise<BuildSummary[]> {
    if (buckets.length === 0) return [];
    const pairs = buckets.map((b) => b.split('/'));
    const r = await this.db.query<{ s: BuildSummary }>(
      `SELECT ${SUMMARY.replaceAll('x.', '')} AS s FROM builds
       WHERE status IN ('SCHEDULED', 'STARTED') AND (project, bucket) IN (SELECT * FROM unnest($1::text[], $2::text[]))
       ORDER BY priority ASC, id DESC LIMIT $3`,
      [pairs.map((p) => p[0] ?? ''), pairs.map((p) => p[1] ?? ''), Math.min(Math.max(limit, 1), MAX_PAGE)],
    );
    return r.rows.map((row) => row.s);
  }

  async recentVerifications(opts: { active?: boolean; limit?: number }): Promise<StoredVerification[]> {
    const r = await this.db.query<{ data: StoredVerification }>(
      `SELECT data FROM verifications ${opts.active ? `WHERE phase IN ('EVALUATING', 'BUILDING')` : ''}
       ORDER BY create_time DESC LIMIT $1`,
      [Math.min(Math.max(opts.limit ?? 100, 1), MAX_PAGE)],
    );
    return r.rows.map((row) => row.data);
  }

  async changeCursor(): Promise<string> {
    const r = await this.db.query<{ c: string }>(
      `SELECT greatest((SELECT coalesce(max(change_seq), 0) FROM builds),
                       (SELECT coalesce(max(change_seq), 0) FROM verifications))::text AS c`,
    );
    return r.rows[0]?.c ?? '0';
  }

  async changesSince(cursor: string, limit = 1000): Promise<ChangeFeedPage> {
    const n = Math.min(Math.max(limit, 1), MAX_PAGE);
    const [b, v] = await Promise.all([
      this.db.query<{ seq: string; s: BuildSummary }>(
        `SELECT change_seq::text AS seq, ${SUMMARY.replaceAll('x.', '')} AS s FROM builds
         WHERE change_seq > $1::bigint ORDER BY change_seq LIMIT $2`,
        [cursor, n],
      ),
      this.db.query<{ seq: string; data: StoredVerification }>(
        `SELECT change_seq::text AS seq, data FROM verifications WHERE change_seq > $1::bigint ORDER BY change_seq LIMIT $2`,
        [cursor, n],
      ),
    ]);
    // A full page of one table caps the cursor there, so the rest of it comes next time.
    let next = BigInt(cursor);
    const lastOf = (rows: { seq: string }[]) => BigInt(rows[rows.length - 1]?.seq ?? cursor);
    const full = [b.rows.length === n ? lastOf(b.rows) : undefined, v.rows.length === n ? lastOf(v.rows) : undefined];
    const cap = full
      .filter((x): x is bigint => x !== undefined)
      .reduce<bigint | undefined>((m, x) => (m === undefined || x < m ? x : m), undefined);
    for (const rows of [b.rows, v.rows]) for (const row of rows) if (BigInt(row.seq) > next) next = BigInt(row.seq);
    if (cap !== undefined && cap < next) next = cap;
    const upTo = (seq: string) => BigInt(seq) <= next;
    return {
      cursor: next.toString(),
      builds: b.rows.filter((row) => upTo(row.seq)).map((row) => row.s),
      verifications: v.rows.filter((row) => upTo(row.seq)).map((row) => row.data),
    };
  }

  async getBuildStates(ids: string[]): Promise<BuildState[]> {
    if (ids.length === 0) return [];
    const r = await this.db.query<{
      id: string;
      bucket: string;
      status: BuildState['status'];
      lease_generation: number;
    }>(
      `SELECT id::text AS id, project || '/' || bucket AS bucket, status,
              (data->>'leaseGeneration')::int AS lease_generation
       FROM builds WHERE id = ANY($1::bigint[])`,
      [ids],
    );
    return r.rows.map((row) => ({
      id: row.id,
      bucket: row.bucket,
      status: row.status,
      leaseGeneration: row.lease_generation,
    }));
  }

  async overdueLeases(before: string, limit: number): Promise<string[]> {
    // The partial index of leased open builds (builds_lease_overdue) keeps this to those.
    const r = await this.db.query<{ id: string }>(
      `SELECT id::text AS id FROM builds
       WHERE leased AND status IN ('SCHEDULED', 'STARTED') AND lease_expires < $1::timestamptz
       ORDER BY lease_expires DESC LIMIT $2`,
      [before, Math.min(Math.max(limit, 1), MAX_PAGE)],
    );
    return r.rows.map((row) => row.id);
  }

  async openBuildStats(): Promise<OpenBuildStat[]> {
    // The status index keeps this to the open builds however many have ended.
    const r = await this.db.query<{
      project: string;
      bucket: string;
      builder: string;
      status: OpenBuildStat['status'];
      count: number;
      oldest: string;
    }>(
      `SELECT project, bucket, builder, status, count(*)::int AS count, min(create_time) AS oldest
       FROM builds WHERE status IN ('SCHEDULED', 'STARTED') GROUP BY project, bucket, builder, status`,
    );
    return r.rows.map((row) => ({
      builder: { project: row.project, bucket: row.bucket, builder: row.builder },
      status: row.status,
      count: row.count,
      oldestCreateTime: new Date(row.oldest).toISOString(),
    }));
  }

  // ---- chromium2: steps and output properties the lease holder reports ----

  async recordBuildProgress(w: BuildProgressWrite): Promise<boolean> {
    // One statement: steps and properties land together or not at all; an earlier attempt never overwrites.
    const r = await this.db.query<{ build_id: string }>(
      `INSERT INTO build_steps AS s (build_id, attempt, steps, output_properties, update_time)
       VALUES ($1::bigint, $2, $3::jsonb, $4::jsonb, now())
       ON CONFLICT (build_id) DO UPDATE SET
         attempt = EXCLUDED.attempt,
         steps = CASE WHEN $5 THEN EXCLUDED.steps WHEN s.attempt = EXCLUDED.attempt THEN s.steps END,
         output_properties = CASE WHEN $6 THEN EXCLUDED.output_properties
                                  WHEN s.attempt = EXCLUDED.attempt THEN s.output_properties END,
         update_time = now()
       WHERE s.attempt <= EXCLUDED.attempt
       RETURNING build_id::text`,
      [
        w.buildId,
        w.attempt,
        w.steps === undefined ? null : JSON.stringify(w.steps),
        w.outputProperties === undefined ? null : JSON.stringify(w.outputProperties),
        w.steps !== undefined,
        w.outputProperties !== undefined,
      ],
    );
    return r.rows.length > 0;
  }

  async getBuildProgress(buildId: string): Promise<StoredBuildProgress | undefined> {
    const r = await this.db.query<{
      attempt: number;
      steps: BuildStep[] | null;
      output_properties: Record<string, unknown> | null;
      update_time: Date | string;
    }>('SELECT attempt, steps, output_properties, update_time FROM build_steps WHERE build_id = $1::bigint', [buildId]);
    const row = r.rows[0];
    if (!row) return undefined;
    return {
      attempt: row.attempt,
      ...(row.steps !== null ? { steps: row.steps } : {}),
      ...(row.output_properties !== null ? { outputProperties: row.output_properties } : {}),
      updateTime: new Date(row.update_time).toISOString(),
    };
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

/**
 * The peek as one statement (exported so a test can EXPLAIN it). Per bucket, `project = … AND
 * bucket = …` walks the partial index of SCHEDULED builds (`builds_scheduled`) in (priority, id DESC)
 * order and stops after `limit` matches however many builds are pending; the outer sort merges at
 * most `limit` rows per bucket. A join of the bucket pairs against the table instead reads and sorts
 * every pending row of those buckets, and after ANALYZE the planner turns that into a full scan.
 * A stored lease past its expiry may be one the workflow never granted (a lost workflow task): the
 * build is offered, and its workflow decides at lease time.
 */
export function peekStatement(q: PeekQuery, select: 'data' | 'ids' = 'data'): { text: string; params: unknown[] } {
  const pairs = [...new Set(q.buckets)].map((b) => b.split('/'));
  const params: unknown[] = [pairs.map((p) => p[0] ?? ''), pairs.map((p) => p[1] ?? '')];
  const where = [
    'x.project = p.project',
    'x.bucket = p.bucket',
    `x.status = 'SCHEDULED'`,
    '(NOT x.leased OR x.lease_expires <= now())',
  ];
  if (q.dimensions !== undefined) {
    params.push(q.dimensions);
    where.push(`x.dimensions <@ $${params.length}::text[]`);
  }
  if (q.builders !== undefined) {
    params.push(q.builders);
    where.push(`x.builder = ANY($${params.length}::text[])`);
  }
  params.push(Math.min(Math.max(q.limit ?? 10, 1), MAX_PAGE));
  const limit = `$${params.length}`;
  return {
    text: `SELECT ${select === 'data' ? 'm.data' : 'm.id::text AS id, p.project, p.bucket'}
       FROM unnest($1::text[], $2::text[]) AS p(project, bucket)
       CROSS JOIN LATERAL (
         SELECT ${select === 'data' ? 'x.data, ' : ''}x.priority, x.id FROM builds x WHERE ${where.join(' AND ')}
         ORDER BY x.priority ASC, x.id DESC LIMIT ${limit}) m
       ORDER BY m.priority ASC, m.id DESC LIMIT ${limit}`,
    params,
  };
}

/**
 * The stored build before the upsert that follows (the statement's snapshot), cut to `ReplacedBuild`:
 * of its events only the stale-report ones, the only kind the metrics count.
 */
const PREVIOUS_BUILD_CTE = `WITH previous AS (
  SELECT jsonb_build_object(
    'version', (data->'version'), 'status', (data->'status'), 'leaseResets', (data->'leaseResets'),
    'events', COALESCE((SELECT jsonb_agg(e) FROM jsonb_array_elements(data->'events') e
                        WHERE e->>'kind' = 'STALE_REPORT_REFUSED'), '[]'::jsonb)) AS data
  FROM builds WHERE id = $1::bigint)
`;

/** What storage keeps of a lease key: its SHA-256, never the key itself. */
function keyHash(leaseKey: string): string {
  return createHash('sha256').update(leaseKey).digest('hex');
}

/** Internal: a concurrent schedule with the same request key committed first. */
class LostRace extends Error {}

// --- web UI read model helpers (issue 14) ---

/** A build row `x` as a `BuildSummary` (JSON without the bulky parts). */
const SUMMARY = `(x.data - 'input' - 'output' - 'events')`;
/** Row `x` belongs to the builder `b` of an unnest over builder arrays. */
const SAME_BUILDER = 'x.project = b.project AND x.bucket = b.bucket AND x.builder = b.builder';

function builderArrays(builders: BuilderId[]): [string[], string[], string[]] {
  return [builders.map((b) => b.project), builders.map((b) => b.bucket), builders.map((b) => b.builder)];
}

interface StatsRow extends Record<string, unknown> {
  total: number;
  success: number;
  failure: number;
  infra_failure: number;
  canceled: number;
  open: number;
  queue_p50: number | null;
  queue_p95: number | null;
  duration_p50: number | null;
  duration_p95: number | null;
}

const STATS_COLUMNS = `
  count(*)::int AS total,
  (count(*) FILTER (WHERE status = 'SUCCESS'))::int AS success,
  (count(*) FILTER (WHERE status = 'FAILURE'))::int AS failure,
  (count(*) FILTER (WHERE status = 'INFRA_FAILURE'))::int AS infra_failure,
  (count(*) FILTER (WHERE status = 'CANCELED'))::int AS canceled,
  (count(*) FILTER (WHERE status IN ('SCHEDULED', 'STARTED')))::int AS open,
  (percentile_cont(0.5) WITHIN GROUP (ORDER BY queue_ms))::float8 AS queue_p50,
  (percentile_cont(0.95) WITHIN GROUP (ORDER BY queue_ms))::float8 AS queue_p95,
  (percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms))::float8 AS duration_p50,
  (percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms))::float8 AS duration_p95`;

const EMPTY_FIGURES: BuildStatsFigures = { total: 0, success: 0, failure: 0, infraFailure: 0, canceled: 0, open: 0 };

function statsFigures(row: StatsRow): BuildStatsFigures {
  const ms = (v: number | null) => (v === null ? undefined : Math.round(v));
  const f: BuildStatsFigures = {
    total: row.total,
    success: row.success,
    failure: row.failure,
    infraFailure: row.infra_failure,
    canceled: row.canceled,
    open: row.open,
  };
  const opt = { queueP50Ms: ms(row.queue_p50), queueP95Ms: ms(row.queue_p95) };
  const dur = { durationP50Ms: ms(row.duration_p50), durationP95Ms: ms(row.duration_p95) };
  for (const [k, v] of Object.entries({ ...opt, ...dur })) if (v !== undefined) f[k as keyof typeof opt] = v;
  return f;
}
