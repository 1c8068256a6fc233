import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { currentPatchset, labelVotes } from '../../src/domain/gerrit/change.ts';
import { norbertsRule } from '../../src/domain/gerrit/trigger.ts';
import { GerritClient, GerritError, KILN_REVIEW_TAG, reviewMarker } from '../../src/gerrit/client.ts';
import { FakeGerritServer } from '../fakes/gerritServer.ts';

const KILN = 1000000;
const NORBERT = 1000001;
const NEWBIE = 1000002;
const OWNER = 1000003;
const NESTED = 1000004;

let gerrit: FakeGerritServer;
let client: GerritClient;

void before(async () => {
  gerrit = await FakeGerritServer.start();
  gerrit.addAccount({
    _account_id: KILN,
    username: 'kiln',
    email: 'kiln@example.org',
    password: 's3cret',
    token: 'tok-1',
  });
  gerrit.addAccount({ _account_id: NORBERT, username: 'norbert', name: 'Norbert', email: 'norbert@example.org' });
  gerrit.addAccount({ _account_id: NEWBIE, username: 'newbie', email: 'newbie@example.org' });
  gerrit.addAccount({ _account_id: OWNER, username: 'owner', name: 'Owner', email: 'owner@example.org' });
  gerrit.addAccount({ _account_id: NESTED, username: 'nested' });
  gerrit.addGroup({
    name: 'core-reviewers',
    id: 'd1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0',
    members: [NORBERT],
    includes: ['release-team'],
    visibleToAll: true,
  });
  gerrit.addGroup({ name: 'release-team', members: [NESTED], visibleToAll: true });
  gerrit.addGroup({ name: 'hidden-reviewers', members: [NORBERT] });
  client = new GerritClient({
    baseUrl: gerrit.url,
    auth: { kind: 'basic', username: 'kiln', password: 's3cret' },
    timeoutMs: 2000,
  });
});

void after(async () => {
  await gerrit.close();
});

function isGerritError(fields: Partial<Pick<GerritError, 'code' | 'status' | 'transient'>>, message?: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof GerritError, `expected GerritError, got ${String(e)}`);
    for (const [k, v] of Object.entries(fields)) assert.equal(e[k as keyof GerritError], v, `${k} of ${e.message}`);
    if (message) assert.match(e.message, message);
    return true;
  };
}

void describe('GerritClient.getChangeDetail', () => {
  void it('reads status, current patchset, owner and every vote with account ids', async () => {
    const c = gerrit.createChange({ project: 'platform/core', owner: OWNER });
    gerrit.vote(c.number, NORBERT, 'Code-Review', 2);
    gerrit.vote(c.number, NEWBIE, 'Code-Review', -1);
    gerrit.vote(c.number, NEWBIE, 'Verified', 1);

    const detail = await client.getChangeDetail({ project: 'platform/core', change: c.number });
    assert.equal(detail._number, c.number);
    assert.equal(detail.id, `platform%2Fcore~${c.number}`);
    assert.equal(detail.status, 'NEW');
    assert.equal(detail.owner.email, 'owner@example.org');
    assert.deepEqual(currentPatchset(detail), c.patchset);
    assert.deepEqual(
      labelVotes(detail, 'Code-Review').map((v) => [v.account._account_id, v.account.username, v.value]),
      [
        [NORBERT, 'norbert', 2],
        [NEWBIE, 'newbie', -1],
      ],
    );
    assert.deepEqual(
      labelVotes(detail, 'Verified').map((v) => [v.account._account_id, v.value]),
      [[NEWBIE, 1]],
    );
    assert.ok(detail.messages?.some((m) => m.message === 'Patch Set 1: Code-Review+2'));

    const req = gerrit.requests.at(-1)!;
    assert.equal(req.url, `/a/changes/platform%2Fcore~${c.number}/detail?o=CURRENT_REVISION&o=CURRENT_COMMIT`);
    assert.equal(req.auth, 'basic:kiln');
    // ChangeInfo.id is already URL-encoded: using it again must not double-encode.
    assert.equal((await client.getChangeDetail(detail.id))._number, c.number);
    assert.equal(gerrit.requests.at(-1)!.url, req.url);
  });

  void it('sees a new patchset, reset votes and a merged status', async () => {
    const c = gerrit.createChange({ project: 'core', owner: OWNER });
    gerrit.vote(c.number, NORBERT, 'Code-Review', 2);
    const ps2 = gerrit.newPatchset(c.number);
    let detail = await client.getChangeDetail(c.number);
    assert.deepEqual(currentPatchset(detail), ps2);
    assert.equal(ps2.number, 2);
    assert.deepEqual(labelVotes(detail, 'Code-Review'), []);
    gerrit.setStatus(c.number, 'MERGED');
    detail = await client.getChangeDetail(detail.id);
    assert.equal(detail.status, 'MERGED');
  });

  void it('feeds norbertsRule from the fresh state together with the group members', async () => {
    const c = gerrit.createChange({ project: 'core', owner: OWNER });
    gerrit.vote(c.number, NEWBIE, 'Code-Review', 2);
    const reviewers = await client.getGroupMemberIds('core-reviewers');
    assert.equal(norbertsRule(await client.getChangeDetail(c.number), reviewers).build, false);
    gerrit.vote(c.number, NESTED, 'Code-Review', 1);
    const d = norbertsRule(await client.getChangeDetail(c.number), reviewers);
    assert.deepEqual(d, { build: true, reason: 'Code-Review +1 by nested' });
  });

  void it('reports an unknown change as NOT_FOUND, not transient', async () => {
    await assert.rejects(
      client.getChangeDetail(999999),
      isGerritError({ code: 'NOT_FOUND', status: 404, transient: false }, /Not found: 999999/),
    );
  });
});

void describe('GerritClient.getGroupMembers', () => {
  void it('lists members of a group by name, including included groups', async () => {
    const members = await client.getGroupMembers('core-reviewers');
    assert.deepEqual(
      members.map((a) => [a._account_id, a.username]),
      [
        [NORBERT, 'norbert'],
        [NESTED, 'nested'],
      ],
    );
    assert.equal(gerrit.requests.at(-1)!.url, '/a/groups/core-reviewers/members/?recursive');
  });

  void it('finds a group by UUID and refuses an unknown group', async () => {
    const ids = await client.getGroupMemberIds('d1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0');
    assert.deepEqual([...ids].sort(), [NORBERT, NESTED]);
    await assert.rejects(client.getGroupMembers('nobody'), isGerritError({ code: 'NOT_FOUND', status: 404 }));
    // Gerrit's default: a group is visible to its members only, so Kiln's account reads 404 as for a missing one.
    await assert.rejects(client.getGroupMembers('hidden-reviewers'), isGerritError({ code: 'NOT_FOUND', status: 404 }));
  });
});

void describe('GerritClient.setReview', () => {
  void it('posts message, votes and tag on the revision, visible in the change afterwards', async () => {
    const c = gerrit.createChange({ project: 'core', owner: OWNER });
    const result = await client.setReview(c.id, c.patchset.revision, {
      message: 'Build Successful',
      labels: { Verified: 1 },
      tag: KILN_REVIEW_TAG,
    });
    assert.deepEqual(result.labels, { Verified: 1 });
    assert.deepEqual(gerrit.reviews.at(-1), {
      change: c.number,
      patchset: 1,
      revision: c.patchset.revision,
      accountId: KILN,
      message: 'Build Successful',
      labels: { Verified: 1 },
      tag: KILN_REVIEW_TAG,
    });
    const detail = await client.getChangeDetail(c.number);
    assert.deepEqual(
      labelVotes(detail, 'Verified').map((v) => [v.account.username, v.value]),
      [['kiln', 1]],
    );
    const msg = detail.messages?.at(-1);
    assert.equal(msg?.message, 'Patch Set 1: Verified+1\n\nBuild Successful');
    assert.equal(msg?.tag, KILN_REVIEW_TAG);
    assert.equal(msg?._revision_number, 1);
    assert.equal(gerrit.requests.at(-2)!.method, 'POST');
    assert.equal(gerrit.requests.at(-2)!.url, `/a/changes/core~${c.number}/revisions/${c.patchset.revision}/review`);
  });

  void it('an unknown label or a value out of range is dropped as Gerrit does: 200, the message posted, labels {}', async () => {
    const c = gerrit.createChange({ project: 'core', owner: OWNER });
    assert.deepEqual(await client.setReview(c.number, c.patchset.revision, { message: 'x', labels: { Verified: 2 } }), {
      labels: {},
    });
    assert.deepEqual(await client.setReview(c.number, c.patchset.revision, { labels: { Verifed: 1 } }), { labels: {} });
    assert.deepEqual(await client.setReview(c.number, c.patchset.revision, { labels: { Verified: 1 } }), {
      labels: { Verified: 1 },
    });
    assert.equal(gerrit.messages(c.number).length, 4, 'the upload message and three replies');
  });
});

void describe('GerritClient auth and wire format', () => {
  void it('authenticates with a bearer token under /a/', async () => {
    const c = gerrit.createChange({ project: 'core', owner: OWNER });
    const bearer = new GerritClient({ baseUrl: gerrit.url, auth: { kind: 'bearer', token: 'tok-1' } });
    await bearer.setReview(c.number, 'current', { message: 'hello' });
    assert.equal(gerrit.reviews.at(-1)?.accountId, KILN);
    assert.equal(gerrit.requests.at(-1)!.auth, 'bearer:kiln');
    assert.ok(gerrit.requests.at(-1)!.url.startsWith('/a/changes/'));
  });

  void it('fails with UNAUTHENTICATED on a wrong password and posts nothing', async () => {
    const c = gerrit.createChange({ project: 'core', owner: OWNER });
    const before = gerrit.reviews.length;
    const wrong = new GerritClient({
      baseUrl: gerrit.url,
      auth: { kind: 'basic', username: 'kiln', password: 'nope' },
    });
    await assert.rejects(
      wrong.setReview(c.number, 'current', { labels: { Verified: 1 } }),
      isGerritError({ code: 'UNAUTHENTICATED', status: 401, transient: false }),
    );
    assert.equal(gerrit.reviews.length, before);
  });

  void it('an anonymous client reads without /a/ but may not post', async () => {
    const c = gerrit.createChange({ project: 'core', owner: OWNER });
    const anonymous = new GerritClient({ baseUrl: `${gerrit.url}/` });
    const detail = await anonymous.getChangeDetail(c.number);
    assert.equal(detail._number, c.number);
    assert.equal(gerrit.requests.at(-1)!.url, `/changes/${c.number}/detail?o=CURRENT_REVISION&o=CURRENT_COMMIT`);
    assert.equal(gerrit.requests.at(-1)!.auth, 'anonymous');
    await assert.rejects(anonymous.setReview(c.number, 'current', { message: 'x' }), isGerritError({ status: 403 }));
  });

  void it('strips the XSSI prefix the server sends', async () => {
    const c = gerrit.createChange({ project: 'core', owner: OWNER });
    const raw = await fetch(`${gerrit.url}/changes/${c.number}/detail`);
    const body = await raw.text();
    assert.ok(body.startsWith(")]}'\n"), 'the fake sends the prefix like Gerrit');
    assert.throws(() => JSON.parse(body));
    assert.equal((await client.getChangeDetail(c.number))._number, c.number);
  });
});

void describe('GerritClient failures', () => {
  void it('a 503 and a 429 are transient UNAVAILABLE; the next call succeeds', async () => {
    const c = gerrit.createChange({ project: 'core', owner: OWNER });
    gerrit.failNext({ status: 503, path: '/detail' });
    await assert.rejects(
      client.getChangeDetail(c.number),
      isGerritError({ code: 'UNAVAILABLE', status: 503, transient: true }),
    );
    gerrit.failNext({ status: 429, body: 'Too Many Requests' });
    await assert.rejects(client.getGroupMembers('core-reviewers'), isGerritError({ status: 429, transient: true }));
    assert.equal((await client.getChangeDetail(c.number))._number, c.number);
  });

  void it('times out a slow answer as a transient error', async () => {
    const c = gerrit.createChange({ project: 'core', owner: OWNER });
    const impatient = new GerritClient({
      baseUrl: gerrit.url,
      auth: { kind: 'basic', username: 'kiln', password: 's3cret' },
      timeoutMs: 100,
    });
    gerrit.delayNext(500);
    await assert.rejects(
      impatient.getChangeDetail(c.number),
      isGerritError({ code: 'UNAVAILABLE', status: undefined, transient: true }, /timed out after 100 ms/),
    );
  });

  void it('a network failure is transient', async () => {
    const down = new GerritClient({ baseUrl: 'http://127.0.0.1:1', timeoutMs: 1000 });
    await assert.rejects(down.getChangeDetail(1), isGerritError({ code: 'UNAVAILABLE', transient: true }, /network/));
  });

  void it('a malformed response is a permanent error naming the field', async () => {
    const c = gerrit.createChange({ project: 'core', owner: OWNER });
    const good = await (await fetch(`${gerrit.url}/changes/${c.number}/detail?o=CURRENT_REVISION`)).text();
    const info = JSON.parse(good.slice(")]}'".length)) as { labels: Record<string, { all: unknown[] }> };
    info.labels['Code-Review']!.all = [{ _account_id: NORBERT, value: '+2' }];
    gerrit.respondRawNext(`)]}'\n${JSON.stringify(info)}`, { path: '/detail' });
    await assert.rejects(
      client.getChangeDetail(c.number),
      isGerritError({ code: 'INTERNAL', transient: false }, /labels\.Code-Review\.all\[0\]\.value/),
    );
    gerrit.respondRawNext('<html>proxy error</html>', { path: '/detail' });
    await assert.rejects(client.getChangeDetail(c.number), isGerritError({ code: 'INTERNAL' }, /not JSON/));
  });
});

void describe('GerritClient.postReviewOnce', () => {
  void it('a retried vote posts exactly once when the first response was lost', async () => {
    const c = gerrit.createChange({ project: 'core', owner: OWNER });
    const vote = {
      change: c.number,
      revision: c.patchset.revision,
      review: { message: 'Build Failed on linux', labels: { Verified: -1 } },
      idempotencyKey: `verify/gerrit.example.org/${c.number}/1/vote`,
    };
    const reviewsBefore = gerrit.reviews.length;

    // Attempt 1: Gerrit applies the review, then the answer is lost (a 503 from a proxy).
    gerrit.failNextAfterApplying({ method: 'POST', path: '/review' });
    await assert.rejects(client.postReviewOnce(vote), isGerritError({ transient: true, status: 503 }));
    assert.equal(gerrit.reviews.length, reviewsBefore + 1, 'the first attempt did reach Gerrit');

    // Attempt 2 (the activity retry) sees the marker and does not post again.
    const retry = await client.postReviewOnce(vote);
    assert.equal(retry.posted, false);
    // Attempt 3, for good measure.
    assert.equal((await client.postReviewOnce(vote)).posted, false);

    const posted = gerrit.reviews.slice(reviewsBefore);
    assert.equal(posted.length, 1);
    assert.deepEqual(posted[0]!.labels, { Verified: -1 });
    assert.equal(posted[0]!.tag, KILN_REVIEW_TAG);
    assert.equal(posted[0]!.message, `Build Failed on linux\n\n${reviewMarker(vote.idempotencyKey)}`);
    const kilnMessages = gerrit.messages(c.number).filter((m) => m.tag === KILN_REVIEW_TAG);
    assert.equal(kilnMessages.length, 1);
  });

  void it('a plain setReview retried the same way would post twice (why the marker is needed)', async () => {
    const c = gerrit.createChange({ project: 'core', owner: OWNER });
    gerrit.failNextAfterApplying({ method: 'POST', path: '/review' });
    await assert.rejects(client.setReview(c.number, 'current', { message: 'Build Failed' }));
    await client.setReview(c.number, 'current', { message: 'Build Failed' });
    assert.equal(gerrit.reviews.filter((r) => r.change === c.number).length, 2);
  });

  void it('different keys post separately; a transient failure before posting lets the retry post', async () => {
    const c = gerrit.createChange({ project: 'core', owner: OWNER });
    const progress = (platform: string) => ({
      change: { project: 'core', change: c.number },
      revision: c.patchset.revision,
      review: { message: `${platform} build started` },
      idempotencyKey: `verify/gerrit.example.org/${c.number}/1/taken/${platform}`,
    });
    assert.equal((await client.postReviewOnce(progress('LINUX'))).posted, true);
    gerrit.failNext({ path: '/detail' });
    await assert.rejects(client.postReviewOnce(progress('WINDOWS')), isGerritError({ transient: true }));
    assert.equal((await client.postReviewOnce(progress('WINDOWS'))).posted, true);
    assert.equal((await client.postReviewOnce(progress('LINUX'))).posted, false);
    const mine = gerrit.reviews.filter((r) => r.change === c.number);
    assert.deepEqual(
      mine.map((r) => r.message?.split('\n')[0]),
      ['LINUX build started', 'WINDOWS build started'],
    );
    assert.ok(
      mine.every((r) => r.labels === undefined),
      'progress messages do not touch the vote',
    );
  });

  void it('refuses a multi-line idempotency key', async () => {
    await assert.rejects(
      client.postReviewOnce({ change: 1, revision: 'current', review: {}, idempotencyKey: 'a\nb' }),
      /single line/,
    );
  });
});
