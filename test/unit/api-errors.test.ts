/** One error family, and 5xx answers that never carry internals (src/api/errors.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { toErrorResponse } from '../../src/api/errors.ts';
import { FAILURE_TYPES, isFailureType, KilnError, UpstreamError } from '../../src/domain/errors.ts';
import { UNSTORABLE_BUILD_FAILURE } from '../../src/domain/build.ts';
import { GerritError } from '../../src/gerrit/client.ts';
import { SwarmingRpcError } from '../../src/swarming/client.ts';
import { SWARMING_NOT_CONFIGURED, SWARMING_REJECTED } from '../../activities/swarming.ts';

const SECRET = 'password=hunter2 at /srv/kiln/db';

test('a 5xx answer says nothing of what failed underneath', () => {
  for (const e of [
    new KilnError('INTERNAL', SECRET),
    new Error(SECRET),
    new SwarmingRpcError(SECRET, 'NewTask', 400, 'INVALID_ARGUMENT', false),
    new SwarmingRpcError(SECRET, 'NewTask', 503, 'UNAVAILABLE', true),
    new GerritError('UNAVAILABLE', SECRET, 502, true, 'GET', '/changes/1'),
    new GerritError('PERMISSION_DENIED', SECRET, 403, false, 'POST', '/changes/1/review'),
  ]) {
    const r = toErrorResponse(e);
    assert.ok(r.status >= 500, `${e.name}: ${r.status}`);
    assert.ok(!JSON.stringify(r.body).includes('hunter2'), JSON.stringify(r.body));
    assert.ok(r.internal, 'logged with its details');
  }
  const swarming = toErrorResponse(new SwarmingRpcError(SECRET, 'NewTask', 403, 'PERMISSION_DENIED', false));
  assert.deepEqual(
    [swarming.status, swarming.body.code],
    [500, 'INTERNAL'],
    "Swarming refusing Kiln is not the caller's 403",
  );
  assert.match(swarming.body.message, /^Swarming refused/);
  const gerrit = toErrorResponse(new GerritError('UNAVAILABLE', SECRET, 502, true, 'GET', '/x'));
  assert.deepEqual([gerrit.status, gerrit.body.code], [503, 'UNAVAILABLE']);
  assert.match(gerrit.body.message, /^Gerrit .*retry$/);
  // A refusal keeps the message written for the caller.
  const refused = toErrorResponse(new KilnError('LEASE_EXPIRED', 'lease 3.x expired'));
  assert.deepEqual([refused.status, refused.body.message, refused.internal], [409, 'lease 3.x expired', false]);
  const outage = toErrorResponse(new KilnError('UNAVAILABLE', 'storage is busy; retry', { cause: new Error(SECRET) }));
  assert.deepEqual([outage.status, outage.body.message, outage.internal], [503, 'storage is busy; retry', true]);
});

test('Swarming and Gerrit failures are one family with Kiln codes', () => {
  const s = new SwarmingRpcError('x', 'GetResult', 404, 'NOT_FOUND', false);
  const g = new GerritError('CONFLICT', 'y', 409, false, 'POST', '/z');
  for (const e of [s, g]) {
    assert.ok(e instanceof UpstreamError && e instanceof KilnError);
    assert.equal(e.transient, false);
  }
  assert.deepEqual([s.upstream, s.code, s.name], ['swarming', 'NOT_FOUND', 'SwarmingRpcError']);
  assert.deepEqual([g.upstream, g.code, g.name], ['gerrit', 'CONFLICT', 'GerritError']);
  assert.equal(new SwarmingRpcError('x', 'NewTask', 0, undefined, true).code, 'UNAVAILABLE');
});

test('activity failure types are one enumerated set', () => {
  for (const t of [
    UNSTORABLE_BUILD_FAILURE,
    SWARMING_REJECTED,
    SWARMING_NOT_CONFIGURED,
    'GERRIT_UNAVAILABLE',
    'LEASE_EXPIRED',
  ])
    assert.ok(isFailureType(t), t);
  assert.ok(!isFailureType('GERRIT_TEAPOT'));
  assert.equal(new Set(FAILURE_TYPES).size, FAILURE_TYPES.length);
});
