/**
 * The LogStore contract on every backend: files (embedded deployments), PGlite and PostgreSQL (the
 * database store several API processes share). Appends go by byte offset, so a retried upload is
 * harmless; a gap is refused naming the size; a complete log takes nothing new.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { newBuildId } from '../../src/domain/buildId.ts';
import { KilnError } from '../../src/domain/errors.ts';
import { FileLogStore, type LogStore } from '../../src/logs/logStore.ts';
import { openStorage } from '../../src/storage/open.ts';
import { type Storage } from '../../src/storage/storage.ts';
import { type RunningPostgres, startPostgres } from '../support/postgres.ts';

interface Backend {
  open(): Promise<LogStore>;
  stop(): Promise<void>;
}

const BACKENDS: Record<string, () => Promise<Backend>> = {
  files: async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-logs-'));
    return { open: async () => new FileLogStore(dir), stop: async () => rmSync(dir, { recursive: true, force: true }) };
  },
  embedded: async () => {
    let s: Storage | undefined;
    return {
      open: async () => (s = await openStorage({ kind: 'embedded' })).logs,
      stop: async () => s?.close(),
    };
  },
  postgres: async () => {
    const pg: RunningPostgres = await startPostgres();
    const opened: Storage[] = [];
    return {
      open: async () => {
        const s = await openStorage({ kind: 'postgres', url: pg.url, maxConnections: 4 });
        opened.push(s);
        return s.logs;
      },
      stop: async () => {
        for (const s of opened) await s.close();
        await pg.stop();
      },
    };
  },
};

let unique = 0;
const buildId = () => newBuildId(Date.now(), ++unique & 0xffff);
const text = (b: Buffer | undefined) => b?.toString('utf8');

async function rejectsWithCode(p: Promise<unknown>, code: string): Promise<KilnError> {
  const e = await p.then(
    () => assert.fail(`expected ${code}`),
    (x: unknown) => x,
  );
  assert.ok(e instanceof KilnError, String(e));
  assert.equal(e.code, code);
  return e;
}

for (const [name, make] of Object.entries(BACKENDS)) {
  void describe(`log store (${name})`, () => {
    let backend: Backend;
    let logs: LogStore;
    before(async () => {
      backend = await make();
      logs = await backend.open();
    });
    after(async () => backend?.stop());

    it('appends by offset: a retried or overlapping chunk adds only what is new', async () => {
      const key = { buildId: buildId(), attempt: 1 };
      assert.deepEqual(await logs.append(key, 0, Buffer.from('hello '), false), { size: 6, complete: false });
      assert.deepEqual(await logs.append(key, 0, Buffer.from('hello '), false), { size: 6, complete: false });
      assert.deepEqual(await logs.append(key, 3, Buffer.from('lo world'), false), { size: 11, complete: false });
      const r = await logs.read(key.buildId);
      assert.equal(text(r?.data), 'hello world');
      assert.equal(r?.size, 11);
      assert.equal(r?.attempt, 1);
    });

    it('refuses a gap with CONFLICT naming the size, and a complete log takes nothing new', async () => {
      const key = { buildId: buildId(), attempt: 0 };
      await logs.append(key, 0, Buffer.from('abc'), false);
      const gap = await rejectsWithCode(logs.append(key, 5, Buffer.from('x'), false), 'CONFLICT');
      assert.match(gap.message, /3 bytes; send from offset 3/);
      assert.deepEqual(await logs.append(key, 3, Buffer.from('def'), true), { size: 6, complete: true });
      // Repeating what is there is fine (a retried final upload); anything new is refused.
      assert.deepEqual(await logs.append(key, 0, Buffer.from('abcdef'), true), { size: 6, complete: true });
      await rejectsWithCode(logs.append(key, 6, Buffer.from('g'), false), 'INVALID_BUILD_STATE');
      assert.equal((await logs.read(key.buildId))?.complete, true);
    });

    it('refuses different bytes at an offset already written: two writers never splice their data', async () => {
      const key = { buildId: buildId(), attempt: 1 };
      await logs.append(key, 0, Buffer.from('runner A line\n'), false);
      const e = await rejectsWithCode(logs.append(key, 0, Buffer.from('runner B line\n'), false), 'CONFLICT');
      assert.match(e.message, /different bytes at offset 0/);
      // Overlapping the end with other bytes is refused too; the same bytes plus more are fine.
      await rejectsWithCode(logs.append(key, 7, Buffer.from('X line\nmore'), false), 'CONFLICT');
      assert.deepEqual(await logs.append(key, 7, Buffer.from('A line\nmore'), false), { size: 18, complete: false });
      const concurrent = await Promise.allSettled([
        logs.append(key, 18, Buffer.from(' from A'), false),
        logs.append(key, 18, Buffer.from(' from B'), false),
      ]);
      assert.equal(concurrent.filter((r) => r.status === 'fulfilled').length, 1, 'one writer wins the offset');
      const data = text((await logs.read(key.buildId))?.data);
      assert.ok(data === 'runner A line\nmore from A' || data === 'runner A line\nmore from B', data);
    });

    it('caps the bytes of one attempt with PAYLOAD_TOO_LARGE, counting what is already there', async () => {
      const key = { buildId: buildId(), attempt: 1 };
      const limits = { maxBytes: 10 };
      await logs.append(key, 0, Buffer.from('12345678'), false, limits);
      const e = await rejectsWithCode(logs.append(key, 8, Buffer.from('9ab'), false, limits), 'PAYLOAD_TOO_LARGE');
      assert.match(e.message, /at most 10 bytes/);
      assert.deepEqual(await logs.append(key, 8, Buffer.from('9a'), true, limits), { size: 10, complete: true });
      // A retry of what is there is not growth.
      assert.deepEqual(await logs.append(key, 0, Buffer.from('123456789a'), true, limits), {
        size: 10,
        complete: true,
      });
    });

    it('reads a window by offset and limit across many chunks, byte-exact with multi-byte text', async () => {
      const key = { buildId: buildId(), attempt: 2 };
      const whole = Buffer.from(Array.from({ length: 50 }, (_, i) => `línea ${i} ✓\n`).join(''));
      for (let at = 0; at < whole.length; at += 37) await logs.append(key, at, whole.subarray(at, at + 37), false);
      for (const [offset, limit] of [
        [0, 10],
        [36, 2],
        [37, 37],
        [100, 500],
        [whole.length - 5, 100],
        [whole.length, 10],
      ] as const) {
        const r = await logs.read(key.buildId, { offset, limit });
        assert.deepEqual(r?.data, whole.subarray(offset, offset + limit), `offset ${offset} limit ${limit}`);
        assert.equal(r?.size, whole.length);
      }
      assert.deepEqual((await logs.read(key.buildId))?.data, whole);
    });

    it('keeps attempts apart and reads the latest by default', async () => {
      const id = buildId();
      await logs.append({ buildId: id, attempt: 1 }, 0, Buffer.from('first'), true);
      await logs.append({ buildId: id, attempt: 2 }, 0, Buffer.from('second'), false);
      assert.deepEqual(await logs.attempts(id), [1, 2]);
      assert.equal(text((await logs.read(id))?.data), 'second');
      assert.equal(text((await logs.read(id, { attempt: 1 }))?.data), 'first');
      assert.equal(await logs.read(buildId()), undefined);
      assert.deepEqual(await logs.attempts(buildId()), []);
    });

    it('refuses keys that are not a build ID and an attempt', async () => {
      await rejectsWithCode(
        logs.append({ buildId: '../etc', attempt: 1 }, 0, Buffer.from('x'), false),
        'INVALID_ARGUMENT',
      );
      await rejectsWithCode(
        logs.append({ buildId: buildId(), attempt: -1 }, 0, Buffer.from('x'), false),
        'INVALID_ARGUMENT',
      );
      await rejectsWithCode(
        logs.append({ buildId: buildId(), attempt: 1 }, -1, Buffer.from('x'), false),
        'INVALID_ARGUMENT',
      );
    });

    it('takes concurrent appends of one log in turn, losing and doubling nothing', async () => {
      const key = { buildId: buildId(), attempt: 1 };
      const whole = Buffer.from('0123456789'.repeat(20));
      // Several writers race with overlapping retries of the same chunks.
      const other = name === 'postgres' ? await backend.open() : logs;
      await Promise.all(
        Array.from({ length: 8 }, async (_, w) => {
          const store = w % 2 ? other : logs;
          for (let at = 0; at < whole.length; at += 25) {
            for (;;) {
              const e = await store.append(key, at, whole.subarray(at, at + 25), false).then(
                () => undefined,
                (x: unknown) => x,
              );
              if (!(e instanceof KilnError && e.code === 'CONFLICT')) {
                if (e) throw e;
                break;
              }
              await new Promise((r) => setTimeout(r, 1));
            }
          }
        }),
      );
      assert.deepEqual((await logs.read(key.buildId))?.data, whole);
    });
  });
}
