/**
 * Versioned schema migrations, applied in order at start (and by `kiln migrate`). Append only:
 * never edit a migration that has shipped.
 */
import { type SqlClient } from './sqlClient.ts';

interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'builds',
    sql: `
      CREATE TABLE builds (
        id bigint PRIMARY KEY,
        project text NOT NULL,
        bucket text NOT NULL,
        builder text NOT NULL,
        number integer NOT NULL,
        status text NOT NULL,
        priority integer NOT NULL,
        leased boolean NOT NULL,
        tags text[] NOT NULL,
        dimensions text[] NOT NULL,
        create_time timestamptz NOT NULL,
        update_time timestamptz NOT NULL,
        version bigint NOT NULL,
        data jsonb NOT NULL
      );
      CREATE INDEX builds_peek ON builds (project, bucket, priority, id DESC) WHERE status = 'SCHEDULED' AND NOT leased;
      CREATE INDEX builds_builder ON builds (project, bucket, builder, id);
      CREATE INDEX builds_status ON builds (status, id);
      CREATE INDEX builds_tags ON builds USING gin (tags);
      CREATE TABLE build_numbers (
        project text NOT NULL,
        bucket text NOT NULL,
        builder text NOT NULL,
        last_number integer NOT NULL,
        PRIMARY KEY (project, bucket, builder)
      );
      CREATE TABLE schedule_requests (
        request_key text PRIMARY KEY,
        build_id bigint NOT NULL,
        number integer NOT NULL,
        create_time timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
  {
    version: 2,
    name: 'build_logs',
    sql: `
      CREATE TABLE build_logs (
        build_id bigint NOT NULL,
        attempt integer NOT NULL,
        size bigint NOT NULL,
        complete boolean NOT NULL,
        PRIMARY KEY (build_id, attempt)
      );
      CREATE TABLE build_log_chunks (
        build_id bigint NOT NULL,
        attempt integer NOT NULL,
        start_offset bigint NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (build_id, attempt, start_offset)
      );
    `,
  },
  {
    version: 3,
    name: 'verifications',
    sql: `
      CREATE TABLE verifications (
        id text PRIMARY KEY,
        host text NOT NULL,
        change integer NOT NULL,
        patchset integer NOT NULL,
        phase text NOT NULL,
        create_time timestamptz NOT NULL,
        update_time timestamptz NOT NULL,
        version bigint NOT NULL,
        data jsonb NOT NULL
      );
      CREATE INDEX verifications_change ON verifications (host, change, patchset);
    `,
  },
  {
    version: 4,
    name: 'build_lease_keys',
    sql: `
      ALTER TABLE builds ADD COLUMN lease_expires timestamptz;
      ALTER TABLE builds ADD COLUMN lease_key_hashes text[];
      ALTER TABLE builds ADD COLUMN ended_by_key_hash text;
      UPDATE builds SET lease_expires = (data->>'leaseExpiration')::timestamptz WHERE leased;
      CREATE INDEX builds_scheduled ON builds (project, bucket, priority, id DESC) WHERE status = 'SCHEDULED';
      DROP INDEX builds_peek;
    `,
  },
];

/** Applies every migration not yet applied; safe to run from many processes at once. */
export async function migrate(db: SqlClient): Promise<number[]> {
  return db.transaction(async (tx) => {
    // One migrator at a time across processes; the lock ends with the transaction.
    await tx.query('SELECT pg_advisory_xact_lock(7263001)');
    await tx.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
    );
    const done = new Set(
      (await tx.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version),
    );
    const applied: number[] = [];
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await tx.exec(m.sql);
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.version);
    }
    return applied;
  });
}
