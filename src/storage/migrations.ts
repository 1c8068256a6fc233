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
  // --- web UI read model (issue 14): a change feed for live pages, and indexes for its read endpoints ---
  {
    version: 4,
    name: 'ui_read_model',
    sql: `
      -- Every write to a build or verification row takes the next value of one sequence, so live pages
      -- can ask storage "what changed since N" (src/api/live.ts) whichever process wrote the row.
      CREATE SEQUENCE kiln_change_seq;
      ALTER TABLE builds ADD COLUMN change_seq bigint;
      ALTER TABLE verifications ADD COLUMN change_seq bigint;
      CREATE FUNCTION kiln_bump_change_seq() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        NEW.change_seq := nextval('kiln_change_seq');
        RETURN NEW;
      END
      $$;
      UPDATE builds SET change_seq = nextval('kiln_change_seq');
      UPDATE verifications SET change_seq = nextval('kiln_change_seq');
      CREATE TRIGGER builds_change_seq BEFORE INSERT OR UPDATE ON builds
        FOR EACH ROW EXECUTE FUNCTION kiln_bump_change_seq();
      CREATE TRIGGER verifications_change_seq BEFORE INSERT OR UPDATE ON verifications
        FOR EACH ROW EXECUTE FUNCTION kiln_bump_change_seq();
      CREATE INDEX builds_change_seq ON builds (change_seq);
      CREATE INDEX verifications_change_seq ON verifications (change_seq);
      -- A builder's builds by status (queue, running, last green) and by creation time (statistics).
      CREATE INDEX builds_builder_status ON builds (project, bucket, builder, status, id);
      CREATE INDEX builds_builder_created ON builds (project, bucket, builder, create_time);
      -- What is pending or running now, across builders (pipeline).
      CREATE INDEX builds_live ON builds (project, bucket, builder, priority, id DESC) WHERE status IN ('SCHEDULED', 'STARTED');
      -- Verifications in flight and the newest ones (pipeline, changes list).
      CREATE INDEX verifications_active ON verifications (create_time) WHERE phase IN ('EVALUATING', 'BUILDING');
      CREATE INDEX verifications_created ON verifications (create_time);
    `,
  },
  {
    version: 5,
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
  {
    version: 6,
    name: 'build_lookups',
    sql: `
      -- GetBuild by builder and number (Buildbucket v2), and search by who scheduled.
      CREATE INDEX builds_number ON builds (project, bucket, builder, number);
      CREATE INDEX builds_created_by ON builds ((data->>'createdBy'), id);
    `,
  },
  // ---- chromium2: steps and output properties a lease holder reports mid-build (Buildbucket v2 UpdateBuild) ----
  {
    version: 7,
    name: 'build_steps',
    sql: `
      -- Beside the build, not in its row: the workflow writes builds, the lease holder writes this.
      CREATE TABLE build_steps (
        build_id bigint PRIMARY KEY,
        attempt integer NOT NULL,
        steps jsonb,
        output_properties jsonb,
        update_time timestamptz NOT NULL
      );
    `,
  },
  {
    version: 8,
    name: 'build_lease_overdue',
    sql: `
      -- Open builds by lease expiry: the API's repair looks for leases long past it.
      CREATE INDEX builds_lease_overdue ON builds (lease_expires) WHERE leased AND status IN ('SCHEDULED', 'STARTED');
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
