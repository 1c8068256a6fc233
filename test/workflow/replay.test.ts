/**
 * Builds that were running when a new Kiln was deployed must replay on the new workflow code.
 * test/fixtures/histories holds histories recorded with earlier releases' code
 * (test/fixtures/record-histories.ts); each must replay without a nondeterminism error.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import proto from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { workflowBundle } from '../../workers/worker.ts';

const dir = new URL('../fixtures/histories/', import.meta.url);
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.binpb'))
  .sort();

describe('replay of recorded build histories', () => {
  it('has recorded histories to replay', () => {
    assert.ok(files.length >= 4, `expected recorded histories in ${dir.pathname}`);
  });
  for (const f of files) {
    it(`replays ${f}`, async () => {
      const history = proto.temporal.api.history.v1.History.decode(readFileSync(new URL(f, dir)));
      await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history, `replay-${f}`);
    });
  }
});
