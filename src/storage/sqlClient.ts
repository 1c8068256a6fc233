/**
 * The little SQL surface Kiln's storage needs, so the same SQL runs on PGlite and on PostgreSQL.
 */

/** Runs parameterized SQL (`$1`, `$2` …). */
export interface SqlExecutor {
  query<R extends Record<string, unknown>>(text: string, params?: unknown[]): Promise<{ rows: R[] }>;
  /** Runs one or more statements without parameters (migrations). */
  exec(text: string): Promise<void>;
}

/** A connection pool or an embedded database. */
export interface SqlClient extends SqlExecutor {
  /** Runs `fn` in one transaction; commits when it returns, rolls back when it throws. */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}
