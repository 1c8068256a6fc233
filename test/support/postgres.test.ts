import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import pg from 'pg';
import { startPostgres } from './postgres.ts';

/** Resolves true when something accepts TCP connections on host:port. */
function isListening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

void test('startPostgres serves a usable kiln database and stop() shuts it down', async () => {
  const server = await startPostgres();
  const url = new URL(server.url);
  assert.equal(url.hostname, '127.0.0.1');
  assert.equal(url.pathname, '/kiln');
  const port = Number(url.port);

  const client = new pg.Client({ connectionString: server.url });
  try {
    await client.connect();
    const { rows } = await client.query<{ one: number; db: string }>('SELECT 1 AS one, current_database() AS db');
    assert.deepEqual(rows, [{ one: 1, db: 'kiln' }]);
  } finally {
    await client.end();
  }
  assert.equal(await isListening('127.0.0.1', port), true);

  await server.stop();
  assert.equal(await isListening('127.0.0.1', port), false);
  await server.stop(); // idempotent
});

void test('two servers run side by side without sharing data', async () => {
  const [a, b] = await Promise.all([startPostgres(), startPostgres()]);
  try {
    assert.notEqual(a.url, b.url);
    const clientA = new pg.Client({ connectionString: a.url });
    const clientB = new pg.Client({ connectionString: b.url });
    await clientA.connect();
    await clientB.connect();
    try {
      await clientA.query('CREATE TABLE only_in_a (id int)');
      const { rows } = await clientB.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'only_in_a'",
      );
      assert.deepEqual(rows, [{ n: 0 }]);
    } finally {
      await clientA.end();
      await clientB.end();
    }
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});
