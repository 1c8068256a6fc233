/**
 * The config of Kiln's Launchpad-style automation (see README "Schedulers, promotions and
 * notifications"): git repositories, schedulers (periodic and on-commit), branch promotions after
 * green builds, periodic merges, and notification rules and targets. Validated with the rest of the
 * config at start: an unknown builder, repository or target, a bad cron expression or duration
 * fails with the file and key. Secrets are named by environment variable and resolved at start.
 */
import { Cron } from 'croner';
import { z } from 'zod';
import { type ParsedDuration, parseDuration } from '../domain/launchpad/duration.ts';

const name = z.string().regex(/^[a-z0-9][a-z0-9._-]*$/i, 'letters, digits, ".", "_", "-"');
const builderPath = z.string().regex(/^[^/\s]+\/[^/\s]+\/[^/\s]+$/, 'a "project/bucket/builder" path');
const bucketPath = z.string().regex(/^[^/\s]+\/[^/\s]+$/, 'a "project/bucket" path');
const branch = z
  .string()
  .min(1)
  .refine((b) => !b.startsWith('refs/') && !b.startsWith('-') && !/[\s~^:?*[\\]|\.\.|@\{/.test(b), {
    message: 'a branch name such as "master" (without refs/heads/)',
  });
const duration = z.string().refine((s) => parseDuration(s) !== undefined, {
  message: 'a duration such as "90s", "15m", "6h", "1d" or "1h30m"',
});
const cron = z.string().refine(
  (s) => {
    if (s.trim().split(/\s+/).length !== 5) return false;
    try {
      new Cron(s, { paused: true });
      return true;
    } catch {
      return false;
    }
  },
  { message: 'a 5-field cron expression (minute hour day-of-month month day-of-week), e.g. "0 3 * * *"' },
);

/** Temporal's overlap policies, as config spells them. */
export const OVERLAP_POLICIES = [
  'skip',
  'buffer-one',
  'buffer-all',
  'cancel-other',
  'terminate-other',
  'allow-all',
] as const;
export type OverlapPolicy = (typeof OVERLAP_POLICIES)[number];

/** Exactly one of `value` and `valueEnv` (a secret in the environment). */
const secretPair = <K extends string>(key: K) =>
  ({
    [key]: z.string().min(1).optional(),
    [`${key}Env`]: z.string().min(1).optional(),
  }) as { [P in K | `${K}Env`]: z.ZodOptional<z.ZodString> };

/** A git remote Kiln polls, and pushes promotions and merges to. */
export const repositorySchema = z
  .object({
    name,
    /** Any git remote: `file:///srv/git/lp.git`, `https://git.example.org/lp`, `ssh://git@host/lp`, `git@host:lp`. */
    url: z.string().min(1),
    /** Where promotions and merges push, when it differs from `url`. */
    pushUrl: z.string().min(1).optional(),
    /** Who may see and operate this repository's pollers, promotions and merges (`project/bucket`). */
    bucket: bucketPath.optional(),
    /** SSH remotes: the private key to use (GIT_SSH_COMMAND), and the known_hosts file to check against. */
    ssh: z
      .object({ keyPath: z.string().min(1), knownHostsPath: z.string().min(1).optional() })
      .strict()
      .optional(),
    /** HTTP(S) remotes: basic auth (a password or token from the environment). */
    http: z
      .object({ username: z.string().min(1).default('git'), ...secretPair('password') })
      .strict()
      .optional(),
    /** Gerrit `ref-updated` events of this Gerrit project make its pollers poll at once. */
    gerrit: z
      .object({ host: z.string().min(1), project: z.string().min(1) })
      .strict()
      .optional(),
  })
  .strict();

const overlap = z.enum(OVERLAP_POLICIES).default('skip');

/** A periodic builder: Temporal Schedule that schedules `builders` on a cron expression or interval. */
export const periodicSchedulerSchema = z
  .object({
    name,
    kind: z.literal('periodic'),
    cron: cron.optional(),
    every: duration.optional(),
    /** IANA time zone of `cron`. @default "UTC" */
    timezone: z.string().min(1).default('UTC'),
    builders: z.array(builderPath).min(1),
    properties: z.record(z.string(), z.unknown()).default({}),
    /** What happens when a run is due while the last one's builds still run. @default "skip" */
    overlap,
    /** Runs missed while Kiln (or Temporal) was down are still made up within this window. @default "10m" */
    catchupWindow: duration.default('10m'),
  })
  .strict();

/** An on-commit scheduler: a poller per (repository, branch) that schedules `builders` for new commits. */
export const onCommitSchedulerSchema = z
  .object({
    name,
    kind: z.literal('on-commit'),
    repo: name,
    branch,
    builders: z.array(builderPath).min(1),
    properties: z.record(z.string(), z.unknown()).default({}),
    /** How often the poller runs `git ls-remote`. @default "60s" */
    pollInterval: duration.default('60s'),
    /** `each`: a build per new commit; `newest`: one build of the newest commit, blamelist of all. @default "each" */
    mode: z.enum(['each', 'newest']).default('each'),
    /** `newest` only: wait until the branch has not moved for this long before building. @default "0s" */
    treeStableTimer: duration.default('0s'),
    /** Most new commits handled per poll; more are handled on the next polls, none skipped. @default 50 */
    maxCommitsPerPoll: z.number().int().min(1).max(1000).default(50),
  })
  .strict();

export const schedulerSchema = z.discriminatedUnion('kind', [periodicSchedulerSchema, onCommitSchedulerSchema]);

/** Push commit C of `from` to `to` once every builder in `when` passed on C. */
export const promotionSchema = z
  .object({
    /** @default "<repo>-<from>-to-<to>" */
    name: name.optional(),
    repo: name,
    from: branch,
    to: branch,
    when: z.array(builderPath).min(1),
    /** `fast-forward` moves `to` to C; `merge` makes a merge commit of C on `to`. @default "fast-forward" */
    mode: z.enum(['fast-forward', 'merge']).default('fast-forward'),
  })
  .strict();

/** Merge `from` into `to` on a schedule (a Temporal Schedule that merges instead of building). */
export const mergeSchema = z
  .object({
    name,
    repo: name,
    from: branch,
    to: branch,
    cron: cron.optional(),
    every: duration.optional(),
    timezone: z.string().min(1).default('UTC'),
    /** @default "merge" */
    mode: z.enum(['fast-forward', 'merge']).default('merge'),
    overlap,
    catchupWindow: duration.default('10m'),
  })
  .strict();

/** Events a notification rule can ask for. */
export const NOTIFICATION_EVENTS = ['end', 'success', 'failure', 'fix', 'promotion-done', 'promotion-failed'] as const;
export type NotificationEvent = (typeof NOTIFICATION_EVENTS)[number];

const url = z.string().url();

/** Where notifications go. */
export const notificationTargetSchema = z.discriminatedUnion('kind', [
  z
    .object({
      name,
      /** A chat incoming webhook; `mattermost` and `slack` differ in link syntax and payload. */
      kind: z.enum(['mattermost', 'slack']),
      url: url.optional(),
      urlEnv: z.string().min(1).optional(),
      /** Mattermost: post to this channel instead of the webhook's own. */
      channel: z.string().min(1).optional(),
      /** Mattermost: post as this user name. */
      username: z.string().min(1).optional(),
    })
    .strict(),
  z
    .object({
      name,
      /** A JSON POST signed with HMAC-SHA256 of the body in `X-Kiln-Signature-256: sha256=<hex>`. */
      kind: z.literal('webhook'),
      url: url.optional(),
      urlEnv: z.string().min(1).optional(),
      ...secretPair('secret'),
    })
    .strict(),
  z
    .object({
      name,
      kind: z.literal('email'),
      smtp: z
        .object({
          host: z.string().min(1),
          /** @default 587 */
          port: z.number().int().min(1).max(65535).default(587),
          /** TLS from the start (port 465); otherwise STARTTLS when the server offers it. @default false */
          secure: z.boolean().default(false),
          /** Refuse to send unless STARTTLS succeeds. @default false */
          requireTls: z.boolean().default(false),
          username: z.string().min(1).optional(),
          ...secretPair('password'),
        })
        .strict(),
      from: z.string().min(3),
      to: z.array(z.string().min(3)).min(1),
    })
    .strict(),
]);

/** Which events go to which targets; filters that are given must all match. */
export const notificationRuleSchema = z
  .object({
    project: name.optional(),
    bucket: name.optional(),
    builder: name.optional(),
    /** Promotion events only: of this repository. */
    repo: name.optional(),
    on: z.array(z.enum(NOTIFICATION_EVENTS)).min(1),
    targets: z.array(name).min(1),
  })
  .strict();

export const notificationsSchema = z
  .object({
    targets: z.array(notificationTargetSchema).default([]),
    rules: z.array(notificationRuleSchema).default([]),
    /** A delivery still failing after this long is given up (and stays listed as FAILED). @default "24h" */
    giveUpAfter: duration.default('24h'),
  })
  .strict();

/** How Kiln runs git for promotions and merges. */
export const gitSettingsSchema = z
  .object({
    /** Author and committer of merge commits. */
    committer: z
      .object({ name: z.string().min(1), email: z.string().min(3) })
      .strict()
      .default({ name: 'Kiln', email: 'kiln@localhost' }),
    /** Say what promotions and merges would push, and push nothing. @default false */
    dryRun: z.boolean().default(false),
    /** Longest one git command may run. @default "10m" */
    commandTimeout: duration.default('10m'),
  })
  .strict();

/** The config keys of this module, spread into the top-level config schema. */
export const launchpadConfigShape = {
  repositories: z.array(repositorySchema).default([]),
  schedulers: z.array(schedulerSchema).default([]),
  promotions: z.array(promotionSchema).default([]),
  merges: z.array(mergeSchema).default([]),
  notifications: notificationsSchema.optional(),
  git: gitSettingsSchema.default({
    committer: { name: 'Kiln', email: 'kiln@localhost' },
    dryRun: false,
    commandTimeout: '10m',
  }),
};

export type RepositoryConfig = z.infer<typeof repositorySchema>;
export type PeriodicSchedulerConfig = z.infer<typeof periodicSchedulerSchema>;
export type OnCommitSchedulerConfig = z.infer<typeof onCommitSchedulerSchema>;
export type SchedulerConfig = z.infer<typeof schedulerSchema>;
export type PromotionConfig = z.infer<typeof promotionSchema> & { name: string };
export type MergeConfig = z.infer<typeof mergeSchema>;
export type NotificationTargetConfig = z.infer<typeof notificationTargetSchema>;
export type NotificationRuleConfig = z.infer<typeof notificationRuleSchema>;
export type NotificationsConfig = z.infer<typeof notificationsSchema>;
export type GitSettings = z.infer<typeof gitSettingsSchema>;

/** The parts of the whole config the cross-checks read. */
export interface LaunchpadConfigView {
  projects: {
    name: string;
    buckets: {
      name: string;
      acls: unknown[];
      builders: { name: string }[];
      swarming?: { builders: { name: string }[] };
    }[];
  }[];
  repositories: RepositoryConfig[];
  schedulers: SchedulerConfig[];
  promotions: z.infer<typeof promotionSchema>[];
  merges: MergeConfig[];
  notifications?: NotificationsConfig;
}

/** The default name of a promotion. */
export function promotionName(p: { name?: string; repo: string; from: string; to: string }): string {
  return p.name ?? `${p.repo}-${p.from}-to-${p.to}`;
}

/**
 * Cross-checks the Launchpad keys against the rest of the config (called from the config schema's
 * refinement): builders, repositories, buckets and targets must exist; names must be unique; a
 * periodic scheduler or merge needs exactly one of `cron` and `every`.
 */
export function checkLaunchpadConfig(cfg: LaunchpadConfigView, ctx: z.RefinementCtx): void {
  const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', message, path });
  const builders = new Set<string>();
  const buckets = new Set<string>();
  const projects = new Set<string>();
  for (const p of cfg.projects) {
    projects.add(p.name);
    for (const b of p.buckets) {
      buckets.add(`${p.name}/${b.name}`);
      for (const bl of [...b.builders, ...(b.swarming?.builders ?? [])]) builders.add(`${p.name}/${b.name}/${bl.name}`);
    }
  }
  const repos = new Set<string>();
  cfg.repositories.forEach((r, i) => {
    if (repos.has(r.name)) issue(['repositories', i, 'name'], `duplicate repository ${r.name}`);
    repos.add(r.name);
    if (r.bucket !== undefined && !buckets.has(r.bucket))
      issue(['repositories', i, 'bucket'], `bucket ${r.bucket} is not configured`);
    if (r.http && (r.http.password === undefined) === (r.http.passwordEnv === undefined))
      issue(['repositories', i, 'http'], 'give exactly one of password or passwordEnv');
  });
  const checkBuilders = (list: string[], path: (string | number)[]) =>
    list.forEach((b, j) => {
      if (!builders.has(b)) issue([...path, j], `builder ${b} is not configured`);
    });
  const checkRepo = (repo: string, path: (string | number)[]) => {
    if (!repos.has(repo)) issue(path, `repository ${repo} is not configured (see repositories)`);
  };
  const checkWhen = (o: { cron?: string; every?: string }, path: (string | number)[]) => {
    if ((o.cron === undefined) === (o.every === undefined))
      issue(path, 'give exactly one of cron (e.g. "0 3 * * *") or every (e.g. "6h")');
  };
  const schedulerNames = new Set<string>();
  const pollers = new Set<string>();
  cfg.schedulers.forEach((s, i) => {
    if (schedulerNames.has(s.name)) issue(['schedulers', i, 'name'], `duplicate scheduler ${s.name}`);
    schedulerNames.add(s.name);
    checkBuilders(s.builders, ['schedulers', i, 'builders']);
    if (s.kind === 'periodic') checkWhen(s, ['schedulers', i]);
    else {
      checkRepo(s.repo, ['schedulers', i, 'repo']);
      const key = `${s.repo} ${s.branch}`;
      if (pollers.has(key))
        issue(['schedulers', i, 'branch'], `another on-commit scheduler already polls ${s.repo} ${s.branch}`);
      pollers.add(key);
      if (s.mode === 'each' && (parseDuration(s.treeStableTimer)?.ms ?? 0) > 0)
        issue(['schedulers', i, 'treeStableTimer'], 'only for mode "newest"');
    }
  });
  const promotionNames = new Set<string>();
  cfg.promotions.forEach((p, i) => {
    const n = promotionName(p);
    if (promotionNames.has(n)) issue(['promotions', i, 'name'], `duplicate promotion ${n}`);
    promotionNames.add(n);
    checkRepo(p.repo, ['promotions', i, 'repo']);
    checkBuilders(p.when, ['promotions', i, 'when']);
    if (p.from === p.to) issue(['promotions', i, 'to'], 'from and to are the same branch');
  });
  cfg.merges.forEach((m, i) => {
    if (schedulerNames.has(m.name) || promotionNames.has(m.name))
      issue(['merges', i, 'name'], `name ${m.name} is already used by a scheduler or promotion`);
    schedulerNames.add(m.name);
    checkRepo(m.repo, ['merges', i, 'repo']);
    checkWhen(m, ['merges', i]);
    if (m.from === m.to) issue(['merges', i, 'to'], 'from and to are the same branch');
  });
  const n = cfg.notifications;
  if (n) {
    const targets = new Set<string>();
    n.targets.forEach((t, i) => {
      if (targets.has(t.name)) issue(['notifications', 'targets', i, 'name'], `duplicate target ${t.name}`);
      targets.add(t.name);
      if (t.kind !== 'email' && (t.url === undefined) === (t.urlEnv === undefined))
        issue(['notifications', 'targets', i], 'give exactly one of url or urlEnv');
      if (t.kind === 'webhook' && (t.secret === undefined) === (t.secretEnv === undefined))
        issue(['notifications', 'targets', i], 'give exactly one of secret or secretEnv (the HMAC key)');
      if (t.kind === 'email' && t.smtp.password !== undefined && t.smtp.passwordEnv !== undefined)
        issue(['notifications', 'targets', i, 'smtp'], 'give at most one of password or passwordEnv');
    });
    n.rules.forEach((r, i) => {
      r.targets.forEach((t, j) => {
        if (!targets.has(t)) issue(['notifications', 'rules', i, 'targets', j], `target ${t} is not configured`);
      });
      if (r.project !== undefined && !projects.has(r.project))
        issue(['notifications', 'rules', i, 'project'], `project ${r.project} is not configured`);
      if (r.repo !== undefined) checkRepo(r.repo, ['notifications', 'rules', i, 'repo']);
      if ((r.bucket !== undefined || r.builder !== undefined) && r.project === undefined)
        issue(['notifications', 'rules', i, 'project'], 'a rule with a bucket or builder names its project');
      if (r.project !== undefined && r.bucket !== undefined && !buckets.has(`${r.project}/${r.bucket}`))
        issue(['notifications', 'rules', i, 'bucket'], `bucket ${r.project}/${r.bucket} is not configured`);
      if (r.builder !== undefined && r.bucket !== undefined && r.project !== undefined) {
        const path = `${r.project}/${r.bucket}/${r.builder}`;
        if (!builders.has(path)) issue(['notifications', 'rules', i, 'builder'], `builder ${path} is not configured`);
      }
    });
  }
  // With auth on, every repository-level thing needs buckets whose roles govern it.
  const authOn = cfg.projects.some((p) => p.buckets.some((b) => b.acls.length > 0));
  if (authOn) {
    cfg.merges.forEach((m, i) => {
      const repo = cfg.repositories.find((r) => r.name === m.repo);
      if (repo && repo.bucket === undefined)
        issue(
          ['merges', i, 'repo'],
          `repository ${m.repo} needs a bucket (whose roles may see and trigger this merge)`,
        );
    });
  }
}

/** A config error found while resolving secrets; the message names the file and key. */
export class LaunchpadConfigError extends Error {}

type Resolvable = {
  repositories: RepositoryConfig[];
  notifications?: NotificationsConfig;
};

/**
 * Resolves the `…Env` secrets of repositories and notification targets from the environment, in
 * place, so a missing variable fails at start naming the file and key.
 */
export function resolveLaunchpadSecrets(cfg: Resolvable, file: string, env: NodeJS.ProcessEnv = process.env): void {
  const fromEnv = (variable: string, key: string): string => {
    const v = env[variable];
    if (!v) throw new LaunchpadConfigError(`${file}: ${key}: environment variable ${variable} is not set`);
    return v;
  };
  cfg.repositories.forEach((r, i) => {
    if (r.http?.passwordEnv !== undefined)
      r.http.password = fromEnv(r.http.passwordEnv, `repositories[${i}].http.passwordEnv`);
  });
  cfg.notifications?.targets.forEach((t, i) => {
    const key = `notifications.targets[${i}]`;
    if (t.kind === 'email') {
      if (t.smtp.passwordEnv !== undefined) t.smtp.password = fromEnv(t.smtp.passwordEnv, `${key}.smtp.passwordEnv`);
      return;
    }
    if (t.urlEnv !== undefined) {
      const v = fromEnv(t.urlEnv, `${key}.urlEnv`);
      if (!URL.canParse(v)) throw new LaunchpadConfigError(`${file}: ${key}.urlEnv: ${t.urlEnv} is not a URL`);
      t.url = v;
    }
    if (t.kind === 'webhook' && t.secretEnv !== undefined) t.secret = fromEnv(t.secretEnv, `${key}.secretEnv`);
  });
}

/** Milliseconds of a validated duration string. */
export function durationMs(s: string): number {
  const d: ParsedDuration | undefined = parseDuration(s);
  if (d === undefined) throw new Error(`not a duration: ${s}`);
  return d.ms;
}
