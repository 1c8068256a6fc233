/**
 * Notification delivery through the real code: Mattermost and Slack incoming webhooks and a signed
 * JSON webhook faked at the HTTP level with their payload formats, and email through nodemailer to
 * a real SMTP server on loopback. One message per (event, target), whatever the retries.
 */
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { type NotificationTargetConfig } from '../../src/config/launchpad.ts';
import {
  type BuildEndEvent,
  buildEventNames,
  type KilnNotificationEvent,
  targetsFor,
} from '../../src/domain/launchpad/notification.ts';
import { type PromotionAttempt } from '../../src/domain/launchpad/promotion.ts';
import { DeliveryError, messageIdOf, Notifier } from '../../src/launchpad/notifier.ts';
import { LaunchpadStore } from '../../src/launchpad/store.ts';
import { openStorage } from '../../src/storage/open.ts';
import { type Storage } from '../../src/storage/storage.ts';
import { startWebhookServer, type WebhookServer } from '../fakes/webhookServer.ts';
import { type SmtpSink, startSmtpSink } from '../support/smtp.ts';

const failed: BuildEndEvent = {
  type: 'build',
  buildId: '8922054662097716111',
  builder: { project: 'launchpad', bucket: 'ci', builder: 'lp-devel' },
  number: 12,
  status: 'FAILURE',
  previousStatus: 'SUCCESS',
  commit: { host: 'git.launchpad.net', project: 'launchpad', ref: 'refs/heads/master', id: 'a'.repeat(40) },
  blamelist: ['Alice <alice@example.org>'],
  link: 'https://kiln.example.org/api/v1/builds/8922054662097716111',
};

const attempt: PromotionAttempt = {
  id: 'promotion/lp-master-to-stable/3',
  name: 'lp-master-to-stable',
  kind: 'promotion',
  repo: 'launchpad',
  from: 'master',
  to: 'stable',
  mode: 'fast-forward',
  state: 'FAILED',
  reason: 'push refused: ! [rejected] (non-fast-forward)',
  builds: [],
  superseded: [],
  supersededBuilds: [],
  dryRun: false,
  createTime: '2026-01-01T00:00:00Z',
  updateTime: '2026-01-01T00:00:00Z',
  version: 2,
};

function verify(secret: string, raw: string, header: unknown): boolean {
  const want = Buffer.from(`sha256=${createHmac('sha256', secret).update(raw).digest('hex')}`);
  const got = Buffer.from(String(header));
  return want.length === got.length && timingSafeEqual(want, got);
}

describe('notification rules', () => {
  it('knows failure, fix and every end', () => {
    assert.deepEqual(buildEventNames('SUCCESS', 'FAILURE'), ['end', 'success', 'fix']);
    assert.deepEqual(buildEventNames('SUCCESS', 'SUCCESS'), ['end', 'success']);
    assert.deepEqual(buildEventNames('INFRA_FAILURE', undefined), ['end', 'failure']);
    assert.deepEqual(buildEventNames('CANCELED', 'FAILURE'), ['end']);
  });

  it('routes by project, bucket and builder, each target once', () => {
    const rules = [
      { project: 'launchpad', on: ['failure'] as const, targets: ['chat', 'mail'] },
      { project: 'launchpad', bucket: 'ci', builder: 'lp-devel', on: ['end'] as const, targets: ['chat'] },
      { project: 'other', on: ['end'] as const, targets: ['hook'] },
      { on: ['fix'] as const, targets: ['hook'] },
      { repo: 'launchpad', on: ['promotion-failed'] as const, targets: ['hook'] },
    ];
    assert.deepEqual(targetsFor(failed, rules).sort(), ['chat', 'mail']);
    assert.deepEqual(targetsFor({ ...failed, status: 'SUCCESS', previousStatus: 'FAILURE' }, rules).sort(), [
      'chat',
      'hook',
    ]);
    const promo: KilnNotificationEvent = { type: 'promotion', attempt, projects: ['launchpad'], link: 'x' };
    assert.deepEqual(targetsFor(promo, rules), ['hook']);
    assert.deepEqual(targetsFor({ ...promo, attempt: { ...attempt, state: 'PROMOTED' } }, rules), []);
  });
});

describe('notification delivery', () => {
  let storage: Storage;
  let store: LaunchpadStore;
  let notifier: Notifier;
  let chat: WebhookServer;
  let smtp: SmtpSink;
  before(async () => {
    storage = await openStorage({ kind: 'embedded' });
    store = await LaunchpadStore.open(storage);
    notifier = new Notifier(store);
    chat = await startWebhookServer();
    smtp = await startSmtpSink({ username: 'kiln', password: 'mail-secret' });
  });
  after(async () => {
    await chat?.close();
    await smtp?.close();
    await storage?.close();
  });

  it('posts a Mattermost payload with a markdown link to the build, once per key', async () => {
    const t: NotificationTargetConfig = {
      name: 'lp-buildbot',
      kind: 'mattermost',
      url: `${chat.url}/hooks/abc`,
      channel: 'launchpad-buildbot',
      username: 'kiln',
    };
    const before = chat.received.length;
    const r1 = await notifier.deliver('build/1/lp-buildbot', t, failed);
    const r2 = await notifier.deliver('build/1/lp-buildbot', t, failed);
    assert.equal(r1.state, 'SENT');
    assert.equal(r2.state, 'ALREADY_SENT', 'a retry of a sent delivery sends nothing');
    const got = chat.received.slice(before);
    assert.equal(got.length, 1);
    assert.equal(got[0]?.path, '/hooks/abc');
    assert.equal(got[0]?.json.channel, 'launchpad-buildbot');
    assert.equal(got[0]?.json.username, 'kiln');
    const text = String(got[0]?.json.text);
    assert.match(text, /\*\*launchpad\/ci\/lp-devel #12\*\* FAILURE \(was SUCCESS\) on master @ `aaaaaaaaaaaa`/);
    assert.match(
      text,
      /\[build 8922054662097716111\]\(https:\/\/kiln\.example\.org\/api\/v1\/builds\/8922054662097716111\)/,
    );
    assert.match(text, /Blamelist: Alice <alice@example.org>/);
    assert.equal((await store.getDelivery('build/1/lp-buildbot'))?.state, 'SENT');
  });

  it('posts a Slack payload (mrkdwn block, <url|text> links)', async () => {
    const t: NotificationTargetConfig = { name: 'slack', kind: 'slack', url: `${chat.url}/services/T/B/X` };
    const before = chat.received.length;
    await notifier.deliver('build/2/slack', t, { ...failed, status: 'SUCCESS', previousStatus: 'FAILURE' });
    const p = chat.received[before];
    assert.ok(p);
    const blocks = p.json.blocks as { type: string; text: { type: string; text: string } }[];
    assert.equal(blocks[0]?.type, 'section');
    assert.equal(blocks[0]?.text.type, 'mrkdwn');
    assert.match(String(p.json.text), /\*launchpad\/ci\/lp-devel #12\* SUCCESS \(fixed\)/);
    assert.match(
      String(p.json.text),
      /<https:\/\/kiln\.example\.org\/api\/v1\/builds\/8922054662097716111\|build 8922054662097716111>/,
    );
  });

  it('signs a generic webhook with HMAC-SHA256 of the body and names the delivery', async () => {
    const t: NotificationTargetConfig = { name: 'hook', kind: 'webhook', url: `${chat.url}/kiln`, secret: 'hmac-key' };
    const before = chat.received.length;
    const promo: KilnNotificationEvent = { type: 'promotion', attempt, projects: ['launchpad'], link: 'https://k/x' };
    await notifier.deliver('promotion/x/hook', t, promo);
    const p = chat.received[before];
    assert.ok(p);
    assert.ok(verify('hmac-key', p.raw, p.headers['x-kiln-signature-256']), 'the signature checks out');
    assert.ok(!verify('other-key', p.raw, p.headers['x-kiln-signature-256']));
    assert.equal(p.headers['x-kiln-delivery'], 'promotion/x/hook');
    assert.equal(p.headers['x-kiln-event'], 'promotion.ended');
    assert.equal(p.json.event, 'promotion.ended');
    assert.equal((p.json.attempt as PromotionAttempt).reason, attempt.reason);
  });

  it('retries a failing endpoint without sending twice, and gives up on a permanent refusal', async () => {
    const t: NotificationTargetConfig = { name: 'flaky', kind: 'mattermost', url: `${chat.url}/hooks/flaky` };
    chat.failNext(1, 503);
    await assert.rejects(
      notifier.deliver('build/3/flaky', t, failed),
      (e: unknown) => e instanceof DeliveryError && !e.permanent,
    );
    assert.equal((await store.getDelivery('build/3/flaky'))?.state, 'RETRYING');
    const ok = await notifier.deliver('build/3/flaky', t, failed);
    assert.deepEqual(ok, { state: 'SENT', attempts: 2 });
    chat.failNext(1, 404);
    await assert.rejects(
      notifier.deliver('build/4/flaky', t, failed),
      (e: unknown) => e instanceof DeliveryError && e.permanent,
    );
    assert.equal((await store.getDelivery('build/4/flaky'))?.state, 'GIVEN_UP');
  });

  it('does not send again a delivery whose request went out before a crash (UNCONFIRMED)', async () => {
    const t: NotificationTargetConfig = { name: 'lp', kind: 'mattermost', url: `${chat.url}/hooks/lp` };
    const now = new Date().toISOString();
    await store.recordDelivery({
      key: 'build/5/lp',
      target: 'lp',
      state: 'UNCONFIRMED',
      attempts: 1,
      createTime: now,
      updateTime: now,
    });
    const before = chat.received.length;
    assert.equal((await notifier.deliver('build/5/lp', t, failed)).state, 'ALREADY_SENT');
    assert.equal(chat.received.length, before);
    // One that crashed before its request went out (SENDING) is sent.
    await store.recordDelivery({
      key: 'build/6/lp',
      target: 'lp',
      state: 'SENDING',
      attempts: 1,
      createTime: now,
      updateTime: now,
    });
    assert.equal((await notifier.deliver('build/6/lp', t, failed)).state, 'SENT');
    assert.equal(chat.received.length, before + 1);
  });

  it('mails through a real SMTP server with login, a subject naming the build and a stable Message-ID', async () => {
    const t: NotificationTargetConfig = {
      name: 'mail',
      kind: 'email',
      smtp: {
        host: '127.0.0.1',
        port: smtp.port,
        secure: false,
        requireTls: false,
        username: 'kiln',
        password: 'mail-secret',
      },
      from: 'Kiln <kiln@example.org>',
      to: ['launchpad-dev@example.org'],
    };
    await notifier.deliver('build/7/mail', t, failed);
    await notifier.deliver('build/7/mail', t, failed);
    assert.equal(smtp.mails.length, 1, 'one message for one event');
    const m = smtp.mails[0];
    assert.ok(m);
    assert.deepEqual(smtp.logins, ['kiln']);
    assert.deepEqual(m.to, ['launchpad-dev@example.org']);
    assert.equal(m.subject, '[Kiln] launchpad/ci/lp-devel #12 FAILURE (was SUCCESS) on master @ aaaaaaaaaaaa');
    assert.match(
      m.text,
      /build 8922054662097716111: https:\/\/kiln\.example\.org\/api\/v1\/builds\/8922054662097716111/,
    );
    assert.equal(m.messageId, messageIdOf('build/7/mail', 'Kiln <kiln@example.org>'));
    assert.equal(m.headers.get('x-kiln-delivery'), 'build/7/mail');
    // A wrong password is refused by the server and reported as a failed try.
    const bad = { ...t, smtp: { ...t.smtp, password: 'wrong' } };
    await assert.rejects(notifier.deliver('build/8/mail', bad, failed), (e: unknown) => e instanceof DeliveryError);
  });
});
