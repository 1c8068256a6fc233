/**
 * The embedded storage backend: PostgreSQL compiled to WebAssembly (PGlite), persisted in a folder
 * under Kiln's data dir. No server to run; one process at a time, enforced by a pid lock file,
 * because two processes opening one PGlite folder corrupt it.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PGlite, types } from '@electric-sql/pglite';
import { KilnError } from '../domain/errors.ts';
import { type SqlClient, type SqlExecutor } from './sqlClient.ts';

const LOCK_FILE = 'kiln.pid';

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Dirs this process has open: the pid file cannot tell a second open in the same process. */
const openHere = new Set<string>();

function takeLock(dir: string): () => void {
  const lock = join(dir, LOCK_FILE);
  if (openHere.has(resolve(dir))) {
    throw new KilnError('UNAVAILABLE', `embedded storage ${dir} is already open in this process; close it first`);
  }
  let holder: number | undefined;
  try {
    holder = Number.parseInt(readFileSync(lock, 'utf8'), 10);
  } catch {
    holder = undefined;
  }
  if (holder !== undefined && holder !== process.pid && Number.isFinite(holder) && processAlive(holder)) {
    throw new KilnError(
      'UNAVAILABLE',
      `embedded storage ${dir} is in use by process ${holder}; run one Kiln process per data dir, or use PostgreSQL (DATABASE_URL) for several`,
    );
  }
  writeFileSync(lock, String(process.pid));
  openHere.add(resolve(dir));
  return () => {
    openHere.delete(resolve(dir));
    rmSync(lock, { force: true });
  };
}

// Return bigint/int8 and timestamps as strings: Kiln keeps IDs as decimal strings.
const parsers = { [types.INT8]: (v: string) => v, [types.TIMESTAMPTZ]: (v: string) => v };

function executor(db: Pick<PGlite, 'query' | 'exec'>): SqlExecutor {
  return {
    query: async <R extends Record<string, unknown>>(text: string, params?: unknown[]) => {
      const r = await db.query<R>(text, params);
      return { rows: r.rows };
    },
    exec: async (text: string) => {
      await db.exec(text);
    },
  };
}

/** Opens (creating if needed) the embedded database in `dir`; `dir` undefined → in memory (tests). */
export async function openPglite(dir: string | undefined): Promise<SqlClient> {
  let release = (): void => {};
  if (dir !== undefined) {
    mkdirSync(dir, { recursive: true });
    release = takeLock(dir);
  }
  let db: PGlite;
  try {
    // The parsers are given once here: passed with each query, PGlite copies its whole table every time.
    db = await PGlite.create(dir === undefined ? undefined : join(dir, 'pgdata'), { parsers });
  } catch (e) {
    release();
    throw e;
  }
  const ex = executor(db);
  return {
    ...ex,
    transaction: (fn) => db.transaction((tx) => fn(executor(tx))),
    close: async () => {
      await db.close();
      release();
    },
  };
}
