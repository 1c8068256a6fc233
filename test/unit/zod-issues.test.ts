/** The one zod-error formatter: every edge names the field the same way. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { z } from 'zod';
import { parseConfig } from '../../src/config/load.ts';
import { formatZodError } from '../../src/domain/zodIssues.ts';
import { parseSwarmingNotification } from '../../src/swarming/notification.ts';
import { parseGerritEvent } from '../../src/gerrit/events.ts';

const schema = z.object({
  tags: z.array(z.string().regex(/:/, 'tags are "key:value"')),
  priority: z.number().max(255),
  props: z.record(z.string(), z.number()),
});

test('names the first field, counts the rest, and lists every one on request', () => {
  const r = schema.safeParse({ tags: ['ok:1', 'bad'], priority: 300, props: { 'odd key': 'x' } });
  assert.ok(!r.success);
  assert.equal(formatZodError(r.error, { at: 'body' }), 'body.tags[1]: tags are "key:value" (and 2 more)');
  const all = formatZodError(r.error, { source: 'kiln.yaml', all: true }).split('\n');
  assert.equal(all.length, 3);
  assert.equal(all[0], 'kiln.yaml: tags[1]: tags are "key:value"');
  assert.match(all[1] ?? '', /^kiln\.yaml: priority: /);
  assert.match(all[2] ?? '', /^kiln\.yaml: props\["odd key"\]: /);
  assert.match(formatZodError(z.number().safeParse('x').error!), /^\(root\): /);
});

test('config, Swarming notifications and Gerrit events word their errors the same way', () => {
  assert.throws(
    () =>
      parseConfig(
        'projects: [{name: p, buckets: [{name: b, builders: [{name: x, leaseDurationSecs: -1}]}]}]',
        'k.yaml',
      ),
    /k\.yaml: projects\[0\]\.buckets\[0\]\.builders\[0\]\.leaseDurationSecs: /,
  );
  const data = Buffer.from(JSON.stringify({ task_id: 7, userdata: 'u' })).toString('base64');
  assert.throws(() => parseSwarmingNotification({ message: { data } }), /^KilnError: message\.data\.task_id: /);
  assert.throws(
    () => parseGerritEvent({ type: 'comment-added', change: { number: 'x' } }),
    /Gerrit comment-added event: [a-zA-Z.[\]0-9]+: .*\(and \d+ more\)/,
  );
});
