/**
 * Sends one notification to one target, at most once per idempotency key (Node side, called by
 * the `deliverNotification` activity, which Temporal retries until it succeeds or gives up).
 *
 * The delivery record in storage is what keeps a retry from sending twice: `SENT` and `UNCONFIRMED`
 * deliveries are never sent again. A try is `SENDING` until the whole request has been handed to
 * the network, then `UNCONFIRMED` until the receiver answers: a worker killed before the request
 * went out leaves `SENDING` and the retry sends it; one killed after leaves `UNCONFIRMED` and the
 * retry does not (the receiver has it). Webhooks and emails also carry the key (`X-Kiln-Delivery`,
 * the Message-ID), so a receiver can drop a duplicate from the remaining window itself.
 */
import { createHash, createHmac } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import nodemailer from 'nodemailer';
import { type NotificationTargetConfig } from '../config/launchpad.ts';
import {
  chatPayload,
  describeEvent,
  emailContent,
  type KilnNotificationEvent,
  webhookPayload,
} from '../domain/launchpad/notification.ts';
import { type Delivery, type LaunchpadStore } from './store.ts';

/** A try that failed; `permanent` ones (a 4xx that no retry fixes) are not retried. */
export class DeliveryError extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
  ) {
    super(message);
    this.name = 'DeliveryError';
  }
}

/** The result of `deliver`. */
export interface DeliveryResult {
  state: 'SENT' | 'UNCONFIRMED' | 'ALREADY_SENT';
  attempts: number;
}

/** How long one HTTP or SMTP exchange may take. @default 30000 */
const TIMEOUT_MS = 30_000;

/** The HMAC-SHA256 signature header value of `body` under `secret`: `sha256=<hex>`. */
export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/**
 * POSTs JSON and resolves with the status; calls `onSent` once the whole request is on the wire
 * (before the answer), and waits for it.
 */
function postJson(
  url: string,
  body: string,
  headers: Record<string, string>,
  onSent: () => Promise<void>,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const send = u.protocol === 'https:' ? httpsRequest : httpRequest;
    let sent: Promise<void> | undefined;
    const req = send(
      u,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers },
        timeout: TIMEOUT_MS,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8').slice(0, 500);
          void (sent ?? Promise.resolve()).then(() => resolve({ status: res.statusCode ?? 0, text }), reject);
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from ${u.host} within ${TIMEOUT_MS} ms`)));
    req.on('error', (e) => reject(new DeliveryError(`${u.host}: ${e.message}`, false)));
    req.end(body, () => {
      sent = onSent();
      sent.catch(() => undefined);
    });
  });
}

/** Turns an HTTP answer into success or a DeliveryError (4xx other than 408/429 are permanent). */
function checkStatus(target: string, r: { status: number; text: string }): void {
  if (r.status >= 200 && r.status < 300) return;
  const permanent = r.status >= 400 && r.status < 500 && r.status !== 408 && r.status !== 429;
  throw new DeliveryError(`${target}: HTTP ${r.status} ${r.text}`.trim(), permanent);
}

/** The Message-ID of a delivery: the same key always gives the same ID. */
export function messageIdOf(key: string, from: string): string {
  const domain = /@([^>\s]+)/.exec(from)?.[1] ?? 'kiln.local';
  return `<kiln.${createHash('sha256').update(key).digest('hex').slice(0, 32)}@${domain}>`;
}

/** See the module comment. */
export class Notifier {
  constructor(private readonly store: LaunchpadStore) {}

  /**
   * Sends `event` to `target` unless a delivery with `key` already went out. Throws DeliveryError
   * when this try failed (the caller retries unless `permanent`).
   */
  async deliver(key: string, target: NotificationTargetConfig, event: KilnNotificationEvent): Promise<DeliveryResult> {
    const now = () => new Date().toISOString();
    const prior = await this.store.getDelivery(key);
    if (prior && (prior.state === 'SENT' || prior.state === 'UNCONFIRMED'))
      return { state: 'ALREADY_SENT', attempts: prior.attempts };
    const d: Delivery = {
      key,
      target: target.name,
      state: 'SENDING',
      attempts: (prior?.attempts ?? 0) + 1,
      createTime: prior?.createTime ?? now(),
      updateTime: now(),
      title: describeEvent(event, { bold: (s) => s, link: (t) => t, code: (s) => s }).title,
    };
    await this.store.recordDelivery(d);
    const mark = (state: Delivery['state'], lastError?: string) =>
      this.store.recordDelivery({ ...d, state, updateTime: now(), ...(lastError ? { lastError } : {}) });
    try {
      await this.send(key, target, event, () => mark('UNCONFIRMED'));
    } catch (e) {
      const err = e instanceof DeliveryError ? e : new DeliveryError((e as Error).message, false);
      await mark(err.permanent ? 'GIVEN_UP' : 'RETRYING', err.message);
      throw err;
    }
    await mark('SENT');
    return { state: 'SENT', attempts: d.attempts };
  }

  /** Records that a delivery was given up after its last try. */
  async giveUp(key: string, target: string, error: string): Promise<void> {
    const prior = await this.store.getDelivery(key);
    const now = new Date().toISOString();
    await this.store.recordDelivery({
      key,
      target,
      state: 'GIVEN_UP',
      attempts: prior?.attempts ?? 0,
      createTime: prior?.createTime ?? now,
      updateTime: now,
      lastError: error,
      ...(prior?.title ? { title: prior.title } : {}),
    });
  }

  private async send(
    key: string,
    t: NotificationTargetConfig,
    event: KilnNotificationEvent,
    onSent: () => Promise<void>,
  ): Promise<void> {
    if (t.kind === 'mattermost' || t.kind === 'slack') {
      const body = JSON.stringify(chatPayload(t.kind, event, { channel: t.channel, username: t.username }));
      checkStatus(t.name, await postJson(t.url ?? '', body, {}, onSent));
      return;
    }
    if (t.kind === 'webhook') {
      const body = JSON.stringify(webhookPayload(event, key));
      const headers = {
        'x-kiln-event': event.type === 'build' ? 'build.ended' : 'promotion.ended',
        'x-kiln-delivery': key,
        'x-kiln-signature-256': signBody(t.secret ?? '', body),
      };
      checkStatus(t.name, await postJson(t.url ?? '', body, headers, onSent));
      return;
    }
    if (t.kind !== 'email') return;
    const { subject, text } = emailContent(event);
    const transport = nodemailer.createTransport({
      host: t.smtp.host,
      port: t.smtp.port,
      secure: t.smtp.secure,
      requireTLS: t.smtp.requireTls,
      ...(t.smtp.username ? { auth: { user: t.smtp.username, pass: t.smtp.password ?? '' } } : {}),
      connectionTimeout: TIMEOUT_MS,
      greetingTimeout: TIMEOUT_MS,
      socketTimeout: TIMEOUT_MS,
    });
    try {
      await transport.sendMail({
        from: t.from,
        to: t.to,
        subject,
        text,
        messageId: messageIdOf(key, t.from),
        headers: { 'X-Kiln-Delivery': key },
      });
    } catch (e) {
      const code = (e as { responseCode?: number }).responseCode;
      throw new DeliveryError(`${t.name}: ${(e as Error).message}`, code !== undefined && code >= 500 && code < 600);
    } finally {
      transport.close();
    }
  }
}
