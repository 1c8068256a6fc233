/**
 * The Launchpad features' own tables in Kiln's storage database (embedded or PostgreSQL): promotion
 * attempts, notification deliveries (the idempotency record that keeps a message from going out
 * twice), and each git poller's last success and last error. They have their own migration track,
 * applied at start next to storage's, so these tables never collide with storage's numbering.
 */
import { type PromotionAttempt } from '../domain/launchpad/promotion.ts';
import { type SqlClient } from '../storage/sqlClient.ts';
import { type Storage } from '../storage/storage.ts';

const MIGRATIONS: readonly { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'promotions, deliveries, pollers',
    sql: `
      CREATE TABLE promotion_attempts (
        id text PRIMARY KEY,
        name text NOT NULL,
        repo text NOT NULL,
        state text NOT NULL,
        builds text[] NOT NULL,
        create_time timestamptz NOT NULL,
        version bigint NOT NULL,
        data jsonb NOT NULL
      );
      CREATE INDEX promotion_attempts_repo ON promotion_attempts (repo, create_time DESC);
      CREATE INDEX promotion_attempts_builds ON promotion_attempts USING gin (builds);
      CREATE TABLE notification_deliveries (
        key text PRIMARY KEY,
        target text NOT NULL,
        state text NOT NULL,
        attempts integer NOT NULL,
        last_error text,
        create_time timestamptz NOT NULL DEFAULT now(),
        update_time timestamptz NOT NULL DEFAULT now(),
        data jsonb NOT NULL
      );
      CREATE INDEX notification_deliveries_time ON notification_deliveries (create_time DESC);
      CREATE TABLE poller_status (
        id text PRIMARY KEY,
        update_time timestamptz NOT NULL,
        data jsonb NOT NULL
      );
    `,
  },
];

/** Where a delivery stands. */
export type DeliveryState =
  /** Being sent: a crash now leaves it here, and the retry sends again (the request never got out). */
  | 'SENDING'
  /** The whole request went out but the receiver's answer was not seen: the retry does not send again. */
  | 'UNCONFIRMED'
  | 'SENT'
  /** The last try failed; Temporal retries it. */
  | 'RETRYING'
  /** Still failing after `notifications.giveUpAfter`. */
  | 'GIVEN_UP';

/** One delivery of one event to one target. */
export interface Delivery {
  key: string;
  target: string;
  state: DeliveryState;
  attempts: number;
  lastError?: string;
  createTime: string;
  updateTime: string;
  /** What was sent (title), for operators. */
  title?: string;
}

/** A git poller's health, as `kiln schedules list` shows it. */
export interface PollerStatus {
  id: string;
  scheduler: string;
  repo: string;
  branch: string;
  /** The last commit the poller has handled (built, or recorded as the starting point). */
  lastCommit?: string;
  lastSuccessTime?: string;
  lastError?: string;
  lastErrorTime?: string;
  /** Paused with `kiln schedules pause`. */
  paused?: boolean;
  updateTime: string;
}

/** See the module comment. */
export class LaunchpadStore {
  private constructor(private readonly db: SqlClient) {}

  /** Opens the store on `storage`'s database, applying its migrations. */
  static async open(storage: Storage): Promise<LaunchpadStore> {
    const db = storage.sql;
    await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(7263015)');
      await tx.query(
        'CREATE TABLE IF NOT EXISTS launchpad_schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
      );
      const done = new Set(
        (await tx.query<{ version: number }>('SELECT version FROM launchpad_schema_migrations')).rows.map(
          (r) => r.version,
        ),
      );
      for (const m of MIGRATIONS) {
        if (done.has(m.version)) continue;
        await tx.exec(m.sql);
        await tx.query('INSERT INTO launchpad_schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      }
    });
    return new LaunchpadStore(db);
  }

  /** Inserts or updates an attempt; a write whose version is not newer is ignored. */
  async recordAttempt(a: PromotionAttempt): Promise<void> {
    await this.db.query(
      `INSERT INTO promotion_attempts (id, name, repo, state, builds, create_time, version, data)
       VALUES ($1, $2, $3, $4, $5::text[], $6, $7, $8::jsonb)
       ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, builds = EXCLUDED.builds,
         version = EXCLUDED.version, data = EXCLUDED.data
       WHERE promotion_attempts.version < EXCLUDED.version`,
      [a.id, a.name, a.repo, a.state, [...a.builds, ...a.supersededBuilds], a.createTime, a.version, JSON.stringify(a)],
    );
  }

  /** Attempts, newest first; filtered by repository, promotion name, or a build that fed them. */
  async listAttempts(
    q: { repo?: string; name?: string; build?: string; limit?: number } = {},
  ): Promise<PromotionAttempt[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (q.repo !== undefined) where.push(`repo = $${params.push(q.repo)}`);
    if (q.name !== undefined) where.push(`name = $${params.push(q.name)}`);
    if (q.build !== undefined) where.push(`builds @> ARRAY[$${params.push(q.build)}]::text[]`);
    params.push(Math.min(Math.max(q.limit ?? 50, 1), 1000));
    const r = await this.db.query<{ data: PromotionAttempt }>(
      `SELECT data FROM promotion_attempts ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY create_time DESC, id DESC LIMIT $${params.length}`,
      params,
    );
    return r.rows.map((row) => row.data);
  }

  async getDelivery(key: string): Promise<Delivery | undefined> {
    const r = await this.db.query<{ data: Delivery }>('SELECT data FROM notification_deliveries WHERE key = $1', [key]);
    return r.rows[0]?.data;
  }

  /** Writes a delivery's state (creating it on the first try). */
  async recordDelivery(d: Delivery): Promise<void> {
    await this.db.query(
      `INSERT INTO notification_deliveries (key, target, state, attempts, last_error, create_time, update_time, data)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
       ON CONFLICT (key) DO UPDATE SET state = EXCLUDED.state, attempts = EXCLUDED.attempts,
         last_error = EXCLUDED.last_error, update_time = EXCLUDED.update_time, data = EXCLUDED.data`,
      [d.key, d.target, d.state, d.attempts, d.lastError ?? null, d.createTime, d.updateTime, JSON.stringify(d)],
    );
  }

  /** Deliveries, newest first. */
  async listDeliveries(q: { state?: DeliveryState; limit?: number } = {}): Promise<Delivery[]> {
    const params: unknown[] = [];
    const where = q.state !== undefined ? `WHERE state = $${params.push(q.state)}` : '';
    params.push(Math.min(Math.max(q.limit ?? 50, 1), 1000));
    const r = await this.db.query<{ data: Delivery }>(
      `SELECT data FROM notification_deliveries ${where} ORDER BY create_time DESC LIMIT $${params.length}`,
      params,
    );
    return r.rows.map((row) => row.data);
  }

  async recordPollerStatus(s: PollerStatus): Promise<void> {
    await this.db.query(
      `INSERT INTO poller_status (id, update_time, data) VALUES ($1, $2, $3::jsonb)
       ON CONFLICT (id) DO UPDATE SET update_time = EXCLUDED.update_time, data = EXCLUDED.data`,
      [s.id, s.updateTime, JSON.stringify(s)],
    );
  }

  async getPollerStatus(id: string): Promise<PollerStatus | undefined> {
    const r = await this.db.query<{ data: PollerStatus }>('SELECT data FROM poller_status WHERE id = $1', [id]);
    return r.rows[0]?.data;
  }

  async listPollerStatus(): Promise<PollerStatus[]> {
    const r = await this.db.query<{ data: PollerStatus }>('SELECT data FROM poller_status ORDER BY id');
    return r.rows.map((row) => row.data);
  }
}
