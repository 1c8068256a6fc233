/**
 * The dev server's stderr is kept whole in `temporal-server.log` in the data dir (not in a small
 * buffer that drops its warnings): a server that fails at start leaves its reason there and in the
 * error; a server that runs appends to the same file, one header line per start.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { DevServerError, startDevServer } from '../../src/temporal/devServer.ts';
import { freePort } from '../support/processes.ts';

const logger = pino({ level: 'silent' });

describe('the dev server log', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-devserver-log-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps the reason a server could not start, and says where', async () => {
    const data = join(dir, 'broken');
    const opts = { dataDir: data, namespace: 'default', logger, startTimeoutMs: 120_000 };
    // A database file that is not SQLite: the server logs why and exits.
    const first = await startDevServer({ ...opts, port: await freePort(), uiPort: await freePort() });
    await first.stop();
    writeFileSync(first.dbFile, 'not a database '.repeat(1000));
    await assert.rejects(
      startDevServer({ ...opts, port: await freePort(), uiPort: await freePort() }),
      (e: unknown) =>
        e instanceof DevServerError &&
        /not a database/.test(e.message) &&
        e.message.includes(join(data, 'temporal-server.log')),
    );
    const log = readFileSync(join(data, 'temporal-server.log'), 'utf8');
    assert.equal(log.match(/kiln \(pid \d+\) starts the Temporal dev server/g)?.length, 2, log);
    assert.match(log, /file is not a database/);
  });
});
