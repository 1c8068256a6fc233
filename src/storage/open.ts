/**
 * Opens the storage backend named by config: PostgreSQL when a database URL is given, else the
 * embedded PGlite database in Kiln's data dir. Applies migrations before returning.
 */
import { join } from 'node:path';
import { migrate } from './migrations.ts';
import { openPglite } from './pglite.ts';
import { openPostgres } from './postgres.ts';
import { SqlStorage } from './sqlStorage.ts';
import { type Storage } from './storage.ts';

/** Where storage lives. */
export type StorageOptions =
  | { kind: 'embedded'; /** undefined → in memory */ dataDir?: string }
  | { kind: 'postgres'; url: string; maxConnections?: number };

/** Opens and migrates storage. */
export async function openStorage(opts: StorageOptions): Promise<Storage> {
  const db =
    opts.kind === 'postgres'
      ? await openPostgres(opts.url, { maxConnections: opts.maxConnections })
      : await openPglite(opts.dataDir === undefined ? undefined : join(opts.dataDir, 'storage'));
  try {
    await migrate(db);
  } catch (e) {
    await db.close();
    throw e;
  }
  return new SqlStorage(db, opts.kind);
}
