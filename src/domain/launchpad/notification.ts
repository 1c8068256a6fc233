/**
 * Notifications: which events of a build or promotion a rule asks for, the deliveries an event
 * makes (one per target, with an idempotency key), and the messages in each target's own format
 * (Mattermost and Slack incoming webhooks, a signed JSON webhook, email). Pure: workflows may import it.
 */
import { type BuildStatus } from '../build.ts';
import { type GitilesCommit } from './commit.ts';
import { type PromotionAttempt } from './promotion.ts';

/** Event names rules subscribe to (the config's `on`). */
export type NotificationEventName = 'end' | 'success' | 'failure' | 'fix' | 'promotion-done' | 'promotion-failed';

/** What a rule matches on; every given filter must match. */
export interface NotificationRule {
  project?: string;
  bucket?: string;
  builder?: string;
  repo?: string;
  on: readonly NotificationEventName[];
  targets: readonly string[];
}

/** A build's end, as notifications see it. */
export interface BuildEndEvent {
  type: 'build';
  buildId: string;
  builder: { project: string; bucket: string; builder: string };
  number: number;
  status: BuildStatus;
  /** The status of the builder's previous ended build (by number), for "fix". */
  previousStatus?: BuildStatus;
  summary?: string;
  commit?: GitilesCommit;
  blamelist?: string[];
  /** The build's page (its API URL until there is a web page). */
  link: string;
  endTime?: string;
}

/** A promotion attempt's end. */
export interface PromotionEndEvent {
  type: 'promotion';
  attempt: PromotionAttempt;
  /** Project of the promotion's builders (or its repository's bucket), for rules with a project. */
  projects: string[];
  link: string;
}

export type KilnNotificationEvent = BuildEndEvent | PromotionEndEvent;

/** The rule events a build end is. */
export function buildEventNames(status: BuildStatus, previous: BuildStatus | undefined): NotificationEventName[] {
  const out: NotificationEventName[] = ['end'];
  if (status === 'SUCCESS') {
    out.push('success');
    if (previous === 'FAILURE' || previous === 'INFRA_FAILURE') out.push('fix');
  }
  if (status === 'FAILURE' || status === 'INFRA_FAILURE') out.push('failure');
  return out;
}

/** The rule events a promotion end is (none for a dry run or a non-final state). */
export function promotionEventNames(a: PromotionAttempt): NotificationEventName[] {
  if (a.state === 'PROMOTED') return ['promotion-done'];
  if (a.state === 'FAILED') return ['promotion-failed'];
  return [];
}

/** The targets `event` goes to under `rules`, each once. */
export function targetsFor(event: KilnNotificationEvent, rules: readonly NotificationRule[]): string[] {
  const names =
    event.type === 'build' ? buildEventNames(event.status, event.previousStatus) : promotionEventNames(event.attempt);
  const out = new Set<string>();
  for (const r of rules) {
    if (!r.on.some((n) => names.includes(n))) continue;
    if (event.type === 'build') {
      if (r.repo !== undefined) continue;
      if (r.project !== undefined && r.project !== event.builder.project) continue;
      if (r.bucket !== undefined && r.bucket !== event.builder.bucket) continue;
      if (r.builder !== undefined && r.builder !== event.builder.builder) continue;
    } else {
      if (r.bucket !== undefined || r.builder !== undefined) continue;
      if (r.repo !== undefined && r.repo !== event.attempt.repo) continue;
      if (r.project !== undefined && !event.projects.includes(r.project)) continue;
    }
    for (const t of r.targets) out.add(t);
  }
  return [...out];
}

/** True when some rule could ever want an event of this builder (before its previous status is known). */
export function rulesConcernBuilder(
  builder: { project: string; bucket: string; builder: string },
  rules: readonly NotificationRule[],
): boolean {
  return rules.some(
    (r) =>
      r.repo === undefined &&
      r.on.some((n) => !n.startsWith('promotion-')) &&
      (r.project === undefined || r.project === builder.project) &&
      (r.bucket === undefined || r.bucket === builder.bucket) &&
      (r.builder === undefined || r.builder === builder.builder),
  );
}

/** The idempotency key of delivering `event` to `target`: one message per (event, target), ever. */
export function deliveryKey(event: KilnNotificationEvent, target: string): string {
  return event.type === 'build' ? `build/${event.buildId}/${target}` : `promotion/${event.attempt.id}/${target}`;
}

const STATUS_ICON: Record<string, string> = {
  SUCCESS: '✅',
  FAILURE: '❌',
  INFRA_FAILURE: '🟪',
  CANCELED: '⚪',
  PROMOTED: '⏩',
  FAILED: '⛔',
};

/** Link and emphasis syntax of a chat flavour. */
interface Markup {
  bold(s: string): string;
  link(text: string, url: string): string;
  code(s: string): string;
}

const MARKDOWN: Markup = { bold: (s) => `**${s}**`, link: (t, u) => `[${t}](${u})`, code: (s) => `\`${s}\`` };
const SLACK: Markup = { bold: (s) => `*${s}*`, link: (t, u) => `<${u}|${t}>`, code: (s) => `\`${s}\`` };
const PLAIN: Markup = { bold: (s) => s, link: (t, u) => `${t}: ${u}`, code: (s) => s };

/** One line (plus details) saying what happened, in `m`'s syntax. */
export function describeEvent(event: KilnNotificationEvent, m: Markup): { title: string; lines: string[] } {
  if (event.type === 'build') {
    const path = `${event.builder.project}/${event.builder.bucket}/${event.builder.builder}`;
    const fixed = buildEventNames(event.status, event.previousStatus).includes('fix') ? ' (fixed)' : '';
    const was =
      event.previousStatus && event.previousStatus !== event.status && !fixed ? ` (was ${event.previousStatus})` : '';
    const on = event.commit
      ? ` on ${event.commit.ref.replace('refs/heads/', '')} @ ${m.code(event.commit.id.slice(0, 12))}`
      : '';
    const title =
      `${STATUS_ICON[event.status] ?? ''} ${m.bold(`${path} #${event.number}`)} ${event.status}${fixed}${was}${on}`.trim();
    const lines = [m.link(`build ${event.buildId}`, event.link)];
    if (event.summary) lines.push(event.summary);
    if (event.blamelist?.length) lines.push(`Blamelist: ${event.blamelist.join(', ')}`);
    return { title, lines };
  }
  const a = event.attempt;
  const what = a.kind === 'merge' ? `merge ${a.from} → ${a.to}` : `promotion ${a.from} → ${a.to}`;
  const title =
    a.state === 'PROMOTED'
      ? `${STATUS_ICON.PROMOTED} ${m.bold(`${a.repo}: ${what}`)} done: ${a.message ?? ''}`.trim()
      : `${STATUS_ICON.FAILED} ${m.bold(`${a.repo}: ${what}`)} failed: ${a.reason ?? a.state}`;
  const lines = [m.link(`attempt ${a.id}`, event.link)];
  if (a.superseded.length) lines.push(`Superseded: ${a.superseded.map((c) => m.code(c.slice(0, 12))).join(', ')}`);
  return { title, lines };
}

/** The JSON body of a Mattermost or Slack incoming webhook. */
export function chatPayload(
  flavour: 'mattermost' | 'slack',
  event: KilnNotificationEvent,
  opts: { channel?: string; username?: string } = {},
): Record<string, unknown> {
  const d = describeEvent(event, flavour === 'slack' ? SLACK : MARKDOWN);
  const text = [d.title, ...d.lines].join('\n');
  if (flavour === 'slack') return { text, blocks: [{ type: 'section', text: { type: 'mrkdwn', text } }] };
  return {
    text,
    ...(opts.channel ? { channel: opts.channel } : {}),
    ...(opts.username ? { username: opts.username } : {}),
  };
}

/** The JSON body of a generic webhook: the event itself, with its delivery key. */
export function webhookPayload(event: KilnNotificationEvent, key: string): Record<string, unknown> {
  const { type, ...rest } = event;
  return { delivery: key, event: type === 'build' ? 'build.ended' : 'promotion.ended', ...rest };
}

/** Subject and plain-text body of an email. */
export function emailContent(event: KilnNotificationEvent): { subject: string; text: string } {
  const d = describeEvent(event, PLAIN);
  return { subject: `[Kiln] ${d.title.replace(/^\S+\s/u, '')}`, text: [d.title, '', ...d.lines, ''].join('\n') };
}
