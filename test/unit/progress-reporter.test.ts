/**
 * `kiln runner`'s reporter of the files a build command writes ($KILN_STEPS_FILE, $KILN_OUTPUT_PROPERTIES_FILE):
 * what changed is sent once, a file that is not JSON (or not the right kind) is skipped and named in the log at
 * the end, a refusal is said in the log and not retried, a lost answer is retried.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { KilnApiError } from '../../src/client/kilnClient.ts';
import { ProgressReporter } from '../../src/runner/progressReporter.ts';
import { testLogger } from '../support/temporal.ts';

const dir = mkdtempSync(join(tmpdir(), 'kiln-progress-'));

function reporter(name: string, answer: (n: number) => Error | undefined = () => undefined) {
  const sent: unknown[] = [];
  const notes: string[] = [];
  const stepsFile = join(dir, `${name}-steps.json`);
  const outputPropertiesFile = join(dir, `${name}-output.json`);
  const r = new ProgressReporter({
    client: {
      updateBuild: async (_id, req) => {
        const e = answer(sent.length);
        sent.push(req);
        if (e) throw e;
        return {} as never;
      },
    },
    buildId: '1',
    leaseKey: 'k',
    stepsFile,
    outputPropertiesFile,
    intervalMs: 60_000,
    logger: testLogger,
    note: (l) => notes.push(l),
  });
  return { r, sent, notes, stepsFile, outputPropertiesFile };
}

void describe('ProgressReporter', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  void it('sends nothing when the command wrote nothing', async () => {
    const t = reporter('none');
    await t.r.finish();
    assert.deepEqual([t.sent, t.notes], [[], []]);
  });

  void it('sends what the files hold; skips and names a file that is not JSON or not the right kind', async () => {
    const t = reporter('bad');
    writeFileSync(t.stepsFile, '[{"name":"compile","status":"SUCC');
    writeFileSync(t.outputPropertiesFile, '{"got_revision":"abc"}');
    await t.r.finish();
    assert.deepEqual(t.sent, [{ leaseKey: 'k', output: { properties: { got_revision: 'abc' } } }]);
    assert.equal(t.notes.length, 1);
    assert.match(t.notes[0]!, /^kiln runner: \$KILN_STEPS_FILE \(.*-steps\.json\) ignored: not valid JSON/);
    const kind = reporter('kind');
    writeFileSync(kind.stepsFile, '{"name":"compile"}');
    await kind.r.finish();
    assert.deepEqual(kind.sent, []);
    assert.match(kind.notes[0] ?? '', /ignored: not a JSON array/);
  });

  void it('says a refusal in the log and does not send the same content again; retries a lost answer', async () => {
    const refused = reporter('refused', () => new KilnApiError('PAYLOAD_TOO_LARGE', 'body.steps: too big', 413));
    writeFileSync(refused.stepsFile, '[]');
    await refused.r.finish();
    await refused.r.finish();
    assert.equal(refused.sent.length, 1);
    assert.deepEqual(refused.notes, [
      "kiln runner: Kiln refused the build's steps/output properties: body.steps: too big\n",
    ]);
    const lost = reporter('lost', (n) => (n === 0 ? new KilnApiError('UNAVAILABLE', 'down', 503) : undefined));
    writeFileSync(lost.stepsFile, '[{"name":"a","status":"SUCCESS"}]');
    await lost.r.finish();
    assert.deepEqual(lost.sent, [
      { leaseKey: 'k', steps: [{ name: 'a', status: 'SUCCESS' }] },
      { leaseKey: 'k', steps: [{ name: 'a', status: 'SUCCESS' }] },
    ]);
    assert.deepEqual(lost.notes, []);
  });
});
