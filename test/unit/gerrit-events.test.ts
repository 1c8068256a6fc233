import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KilnError } from '../../src/domain/errors.ts';
import { parseGerritEvent, parseGerritEventLine } from '../../src/gerrit/events.ts';

// Shaped like real `gerrit stream-events` output (Documentation/cmd-stream-events.txt, json.txt):
// numbers in `change`/`patchSet` are JSON numbers on current servers; approval values are strings.
const owner = { name: 'Owner Person', email: 'owner@example.org', username: 'owner' };
const change = {
  project: 'core',
  branch: 'master',
  id: 'I21234123412341234123412341234123412341234',
  number: 4321,
  subject: 'tdf#1234 fix the thing',
  owner,
  url: 'https://gerrit.example.org/c/core/+/4321',
  commitMessage: 'tdf#1234 fix the thing\n\nChange-Id: I21234123412341234123412341234123412341234\n',
  createdOn: 1627214047,
  status: 'NEW',
};
const patchSet = {
  number: 3,
  revision: '49a65998c02eda928559f2d0b586c20bc8e37b10',
  parents: ['fb1909b4eda306985d2bbce769310e5a50a98cf5'],
  ref: 'refs/changes/21/4321/3',
  uploader: owner,
  createdOn: 1627214047,
  author: owner,
  kind: 'REWORK',
  sizeInsertions: 10,
  sizeDeletions: -2,
};
const common = {
  change,
  patchSet,
  project: 'core',
  refName: 'refs/heads/master',
  changeKey: { id: change.id },
  eventCreatedOn: 1627214100,
};

function expectInvalid(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof KilnError, `expected KilnError, got ${String(e)}`);
    assert.equal(e.code, 'INVALID_ARGUMENT');
    for (const f of fragments) assert.ok(e.message.includes(f), `message ${JSON.stringify(e.message)} lacks ${f}`);
    return true;
  });
}

void describe('parseGerritEvent: known events', () => {
  void it('patchset-created keeps change, patchset, uploader and time', () => {
    const r = parseGerritEvent({ type: 'patchset-created', uploader: owner, ...common });
    assert.equal(r.kind, 'event');
    if (r.kind !== 'event' || r.event.type !== 'patchset-created') throw new Error('wrong kind');
    assert.equal(r.event.change.number, 4321);
    assert.equal(r.event.change.project, 'core');
    assert.equal(r.event.change.branch, 'master');
    assert.equal(r.event.change.url, 'https://gerrit.example.org/c/core/+/4321');
    assert.equal(r.event.change.owner?.email, 'owner@example.org');
    assert.equal(r.event.change.status, 'NEW');
    assert.deepEqual(
      { n: r.event.patchSet.number, rev: r.event.patchSet.revision, ref: r.event.patchSet.ref },
      { n: 3, rev: '49a65998c02eda928559f2d0b586c20bc8e37b10', ref: 'refs/changes/21/4321/3' },
    );
    assert.equal(r.event.uploader?.username, 'owner');
    assert.equal(r.event.eventCreatedOn, 1627214100);
  });

  void it('comment-added turns string approval values into numbers and keeps oldValue', () => {
    const r = parseGerritEvent({
      type: 'comment-added',
      author: { name: 'Norbert', email: 'norbert@example.org', username: 'norbert' },
      approvals: [
        { type: 'Code-Review', description: 'Code-Review', value: '2', oldValue: '-1' },
        { type: 'Verified', description: 'Verified', value: '-1' },
      ],
      comment: 'Patch Set 3: Code-Review+2\n\nLooks good',
      ...common,
    });
    if (r.kind !== 'event' || r.event.type !== 'comment-added') throw new Error('wrong kind');
    assert.deepEqual(
      r.event.approvals.map((a) => [a.type, a.value, a.oldValue]),
      [
        ['Code-Review', 2, -1],
        ['Verified', -1, undefined],
      ],
    );
    assert.equal(r.event.author?.username, 'norbert');
    assert.equal(r.event.comment, 'Patch Set 3: Code-Review+2\n\nLooks good');
  });

  void it('comment-added without approvals has an empty list; a vote without value reads as 0', () => {
    const plain = parseGerritEvent({ type: 'comment-added', author: owner, comment: 'ping', ...common });
    if (plain.kind !== 'event' || plain.event.type !== 'comment-added') throw new Error('wrong kind');
    assert.deepEqual(plain.event.approvals, []);
    const removed = parseGerritEvent({
      type: 'comment-added',
      approvals: [{ type: 'Commit-Queue', oldValue: '2' }],
      ...common,
    });
    if (removed.kind !== 'event' || removed.event.type !== 'comment-added') throw new Error('wrong kind');
    assert.equal(removed.event.approvals[0]?.value, 0);
    assert.equal(removed.event.approvals[0]?.oldValue, 2);
  });

  void it('change-merged, change-abandoned and change-restored carry their actor and reason', () => {
    const merged = parseGerritEvent({
      type: 'change-merged',
      submitter: owner,
      newRev: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
      ...common,
      change: { ...change, status: 'MERGED' },
    });
    if (merged.kind !== 'event' || merged.event.type !== 'change-merged') throw new Error('wrong kind');
    assert.equal(merged.event.change.status, 'MERGED');
    assert.equal(merged.event.newRev, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa');
    assert.equal(merged.event.submitter?.username, 'owner');

    const abandoned = parseGerritEvent({ type: 'change-abandoned', abandoner: owner, reason: 'obsolete', ...common });
    if (abandoned.kind !== 'event' || abandoned.event.type !== 'change-abandoned') throw new Error('wrong kind');
    assert.equal(abandoned.event.reason, 'obsolete');
    assert.equal(abandoned.event.abandoner?.email, 'owner@example.org');

    const restored = parseGerritEvent({ type: 'change-restored', restorer: owner, reason: 'still needed', ...common });
    if (restored.kind !== 'event' || restored.event.type !== 'change-restored') throw new Error('wrong kind');
    assert.equal(restored.event.reason, 'still needed');
    assert.equal(restored.event.patchSet.number, 3);
  });

  void it('accepts the string change and patchset numbers older servers send', () => {
    const r = parseGerritEvent({
      type: 'patchset-created',
      change: { ...change, number: '4321' },
      patchSet: { ...patchSet, number: '3' },
    });
    if (r.kind !== 'event') throw new Error('wrong kind');
    assert.equal(r.event.change.number, 4321);
    assert.equal(r.event.patchSet.number, 3);
    assert.equal(r.event.eventCreatedOn, undefined);
  });

  void it('parses a stream line', () => {
    const r = parseGerritEventLine(JSON.stringify({ type: 'change-abandoned', ...common }));
    assert.equal(r.kind, 'event');
    if (r.kind === 'event') assert.equal(r.event.type, 'change-abandoned');
  });
});

void describe('parseGerritEvent: other event types', () => {
  void it('returns unknown for types Kiln does not act on, without validating them', () => {
    assert.deepEqual(
      parseGerritEvent({
        type: 'ref-updated',
        submitter: owner,
        refUpdate: { oldRev: 'a', newRev: 'b', refName: 'refs/heads/master', project: 'core' },
      }),
      { kind: 'unknown', type: 'ref-updated' },
    );
    assert.deepEqual(parseGerritEvent({ type: 'dropped-output' }), { kind: 'unknown', type: 'dropped-output' });
    assert.deepEqual(parseGerritEvent({ type: 'reviewer-added', change: 'not even an object' }), {
      kind: 'unknown',
      type: 'reviewer-added',
    });
  });
});

void describe('parseGerritEvent: malformed events', () => {
  void it('names the missing change number', () => {
    const { number: _n, ...noNumber } = change;
    expectInvalid(
      () => parseGerritEvent({ type: 'comment-added', ...common, change: noNumber }),
      'comment-added',
      'change.number',
    );
  });

  void it('names a bad approval value by index', () => {
    expectInvalid(
      () =>
        parseGerritEvent({
          type: 'comment-added',
          ...common,
          approvals: [
            { type: 'Code-Review', value: '1' },
            { type: 'Verified', value: 'plus one' },
          ],
        }),
      'approvals[1].value',
    );
  });

  void it('names a missing patchSet, a bad revision and a bad ref', () => {
    const { patchSet: _p, ...noPatchSet } = common;
    expectInvalid(() => parseGerritEvent({ type: 'patchset-created', ...noPatchSet }), 'patchset-created', 'patchSet');
    expectInvalid(
      () => parseGerritEvent({ type: 'change-merged', ...common, patchSet: { ...patchSet, revision: 'HEAD' } }),
      'patchSet.revision',
    );
    expectInvalid(
      () => parseGerritEvent({ type: 'change-restored', ...common, patchSet: { ...patchSet, ref: 'changes/1' } }),
      'patchSet.ref',
    );
  });

  void it('names an unknown change status', () => {
    expectInvalid(
      () => parseGerritEvent({ type: 'change-abandoned', ...common, change: { ...change, status: 'LOST' } }),
      'change.status',
    );
  });

  void it('refuses input without a type, non-objects and lines that are not JSON', () => {
    expectInvalid(() => parseGerritEvent({ change }), 'type');
    expectInvalid(() => parseGerritEvent([1, 2]), 'object');
    expectInvalid(() => parseGerritEvent(null), 'object');
    expectInvalid(() => parseGerritEventLine('{"type":"comment-added",'), 'not JSON');
  });
});
