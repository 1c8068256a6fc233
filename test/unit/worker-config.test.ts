/**
 * The `worker` block: the workflow cache's size and the sticky-queue timeout, their defaults, and
 * bad values failing at start with a message that names the file and the key.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, loadConfigFile } from '../../src/config/load.ts';

const PROJECTS = `
projects:
  - name: p
    buckets:
      - name: b
        builders:
          - name: x
`;

void describe('worker config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-worker-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const load = (yaml: string) => {
    writeFileSync(join(dir, 'kiln.yaml'), yaml + PROJECTS);
    return loadConfigFile(join(dir, 'kiln.yaml'), { LOG_LEVEL: 'silent' });
  };

  void it('defaults: a 2,000-build cache and a 3 s sticky-queue timeout', () => {
    assert.deepEqual(load('').worker, { maxCachedWorkflows: 2000, stickyQueueTimeoutSecs: 3 });
    // Giving one key keeps the other's default.
    assert.deepEqual(load('worker: { maxCachedWorkflows: 500 }').worker, {
      maxCachedWorkflows: 500,
      stickyQueueTimeoutSecs: 3,
    });
    assert.equal(load('worker: { stickyQueueTimeoutSecs: 10 }').worker.stickyQueueTimeoutSecs, 10);
  });

  for (const [value, why] of [
    ['0', /too small|>=1/],
    ['61', /too big|<=60/],
    ['1.5', /int/],
    ['"3s"', /number/],
  ] as const) {
    void it(`refuses stickyQueueTimeoutSecs: ${value}, naming the file and the key`, () => {
      assert.throws(
        () => load(`worker: { stickyQueueTimeoutSecs: ${value} }`),
        (e: unknown) => {
          assert.ok(e instanceof ConfigError, String(e));
          assert.match(e.message, /kiln\.yaml/);
          assert.match(e.message, /worker\.stickyQueueTimeoutSecs/);
          assert.match(e.message, why);
          return true;
        },
      );
    });
  }
});
