/**
 * The PostgreSQL storage backend, for several Kiln processes and hosts sharing one read model.
 */
import pg from 'pg';
import { type SqlClient, type SqlExecutor } from './sqlClient.ts';

// Return int8 as strings (build IDs) and timestamps as ISO strings, as PGlite does.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => v);
pg.types.setTypeParser(pg.types.builtins.TIMESTAMPTZ, (v) => v);

function executor(c: pg.Pool | pg.PoolClient): SqlExecutor {
  return {
    query: async <R extends Record<string, unknown>>(text: string, params?: unknown[]) => {
      const r = await c.query<R>(text, params);
      return { rows: r.rows };
    },
    exec: async (text: string) => {
      await c.query(text);
    },
  };
}

/** Connects a pool to `url` (`postgres://…`). */
export async function openPostgres(url: string, opts: { maxConnections?: number } = {}): Promise<SqlClient> {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.maxConnections ?? 10,
    // A request waits at most this long for a connection, instead of hanging when the pool is exhausted.
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    application_name: 'kiln',
  });
  // An idle connection that dies (server restart, failover, pool.end racing the server's shutdown) is
  // dropped by the pool and the next query reconnects; without a listener Node would crash the process.
  pool.on('error', () => undefined);
  // Fail at start, not on the first request, when the server is unreachable.
  await pool.query('SELECT 1');
  return {
    ...executor(pool),
    transaction: async (fn) => {
      const client = await pool.connect();
      // A connection whose ROLLBACK failed is in an unknown state: destroy it rather than reuse it.
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const out = await fn(executor(client));
        await client.query('COMMIT');
        return out;
      } catch (e) {
        await client.query('ROLLBACK').catch((rollbackError: unknown) => {
          broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
        });
        throw e;
      } finally {
        client.release(broken);
      }
    },
    close: () => pool.end(),
  };
}
