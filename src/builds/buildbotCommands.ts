/**
 * The Buildbot Gerrit Plugin's SSH command surface on Kiln's lease semantics, so tinderboxes run unchanged
 * (LibreOffice's `tinbuild2`): `buildbot get|put|show|schedule|verify|version`, with the plugin's options,
 * aliases and output formats. A ticket is `<sha1>_<PLATFORM>` (the patchset's commit and the platform); `get`
 * leases and starts the build with a request id derived from the tinderbox, build and lease resets, and `put`
 * finds the build again by its ticket and its holder and retries that lease to recover the key, so nothing but
 * the build itself holds state: a `get` before a Kiln restart and a `put` after it work.
 */
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { type Build, isEnded } from '../domain/build.ts';
import { KilnError } from '../domain/errors.ts';
import { VERIFIED } from '../domain/gerrit/change.ts';
import { type GerritProjectConfig } from '../domain/gerrit/projectConfig.ts';
import { configCoversBranch } from '../domain/gerrit/trigger.ts';
import { type GerritIntake } from '../gerrit/intake.ts';
import { type GerritHosts } from '../gerrit/settings.ts';
import { type LogStore } from '../logs/logStore.ts';
import { type BuildService } from './service.ts';
import { getTask, report } from './tinderbox.ts';

/** A tinderbox logged in over SSH. */
export interface SshTinderbox {
  id: string;
  capabilities: string[];
  admin: boolean;
}

/** What the commands need. */
export interface BuildbotCommandContext {
  service: BuildService;
  logs?: LogStore;
  /** The `project/bucket`s whose builds tinderboxes may take. */
  buckets: string[];
  /** The Gerrit projects Kiln verifies (with their host). */
  projects: GerritProjectConfig[];
  intake?: GerritIntake;
  hosts?: GerritHosts;
  version: string;
}

/** What a command printed and its exit code. */
export interface CommandOutput {
  stdout: string;
  stderr: string;
  exitCode: number;
}

const RULE = `${'-'.repeat(78)}\n`;
const ROW = (cols: string[]): string => {
  const [a = '', b = '', c = '', d = '', e = '', f = ''] = cols;
  return `${a.padEnd(17)} ${b.padEnd(12)} ${c.padEnd(12)} ${d.padEnd(22)} ${e.padEnd(3)} ${f}\n`;
};
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** The plugin's `MMM-dd HH:mm` (UTC here). */
function time(iso: string | undefined): string {
  if (!iso) return '-';
  const d = new Date(iso);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${MONTHS[d.getUTCMonth()]}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}`;
}

/** The plugin's platform names (and its later `--os` values) as Kiln platforms; others are taken upper-cased. */
export function kilnPlatform(name: string): string {
  const n = name.toLowerCase();
  if (n === 'linux') return 'LINUX';
  if (n === 'windows') return 'WINDOWS';
  if (n === 'mac' || n === 'macosx') return 'MAC';
  return name.toUpperCase();
}

/** Splits an SSH command line like a POSIX shell would for plain words and quotes (no expansions). */
export function splitCommandLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quote) {
      if (ch === quote) quote = undefined;
      else if (ch === '\\' && quote === '"' && i + 1 < line.length) cur += line[++i];
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inWord = true;
    } else if (ch === '\\' && i + 1 < line.length) {
      cur += line[++i];
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (quote) throw new KilnError('INVALID_ARGUMENT', 'unterminated quote');
  if (inWord) out.push(cur);
  return out;
}

const done = (stdout: string): CommandOutput => ({ stdout, stderr: '', exitCode: 0 });
const fail = (message: string, exitCode = 1): CommandOutput => ({ stdout: '', stderr: `${message}\n`, exitCode });

/** The Gerrit change a build verifies, with its revision and platform. */
function changeOf(b: Build) {
  const c = b.input.gerritChanges?.[0];
  const p = b.input.properties;
  const str = (k: string) => (typeof p[k] === 'string' ? p[k] : undefined);
  return c
    ? {
        ...c,
        // CQ builds say `revision: HEAD`: no commit, so tickets fall back to the build id.
        revision: /^[0-9a-f]{7,64}$/i.test(str('revision') ?? '') ? str('revision')! : '',
        ref: str('event.patchSet.ref') ?? '',
        branch: str('event.change.branch') ?? 'master',
      }
    : undefined;
}

/** The platform a build is for: its `platform:<X>` dimension, else its builder name. */
function platformOf(b: Build): string {
  return b.dimensions.find((d) => d.startsWith('platform:'))?.slice('platform:'.length) ?? b.builder.builder;
}

const ticketOf = (b: Build): string => `${changeOf(b)?.revision || b.id}_${platformOf(b)}`;

/** The lease request id `get` uses, so `put` can recover the same lease key (a lease retry). */
const leaseRequestId = (tinderbox: string, b: Build): string => `bgp/${tinderbox}/${b.id}/${b.leaseResets}`;

/** Builds in a state, of the Gerrit project `project` (newest first). */
async function projectBuilds(ctx: BuildbotCommandContext, project: string, status: Build['status']): Promise<Build[]> {
  const page = await ctx.service.search({ buckets: ctx.buckets, status, limit: 1000 });
  return page.builds.filter((b) => changeOf(b)?.project === project);
}

/** Runs one `buildbot …` command line for `tb`; `stdin` reads the client's input to its end (for `put --log -`). */
export async function runBuildbotCommand(
  ctx: BuildbotCommandContext,
  tb: SshTinderbox,
  commandLine: string,
  stdin: () => Promise<Buffer>,
): Promise<CommandOutput> {
  let argv: string[];
  try {
    argv = splitCommandLine(commandLine);
  } catch (e) {
    return fail(`fatal: ${(e as Error).message}`);
  }
  if (argv[0] !== 'buildbot')
    return fail(`fatal: unknown command ${argv[0] ?? ''}: only buildbot commands are served`, 127);
  const [sub, ...args] = argv.slice(1);
  try {
    switch (sub) {
      case 'get':
        return await get(ctx, tb, args);
      case 'put':
        return await put(ctx, tb, args, stdin);
      case 'show':
        return await show(ctx, args);
      case 'schedule':
        return await schedule(ctx, tb, args);
      case 'verify':
        return await verify(ctx, tb, args);
      case 'version':
        return done(`buildbot version ${ctx.version}\n`);
      default:
        return fail(`fatal: buildbot: unknown command ${sub ?? ''} (get, put, show, schedule, verify, version)`);
    }
  } catch (e) {
    if (e instanceof KilnError || (e instanceof TypeError && 'code' in e))
      return fail(`fatal: ${(e as Error).message}`);
    throw e;
  }
}

function enabled(ctx: BuildbotCommandContext, project: string | undefined): GerritProjectConfig[] | string {
  if (!project) return 'fatal: --project is required';
  const configs = ctx.projects.filter((p) => p.project === project);
  return configs.length ? configs : `project <${project}> is not enabled for building!`;
}

async function get(ctx: BuildbotCommandContext, tb: SshTinderbox, args: string[]): Promise<CommandOutput> {
  const { values: o, positionals: branches } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      project: { type: 'string', short: 'p' },
      platform: { type: 'string', short: 'a' },
      os: { type: 'string', short: 'o' },
      id: { type: 'string', short: 'i' },
      format: { type: 'string', short: 'f', default: 'TEXT' },
      test: { type: 'boolean', short: 't', default: false },
    },
  });
  const configs = enabled(ctx, o.project);
  if (typeof configs === 'string') return fail(configs);
  const platformName = o.os ?? o.platform;
  if (!platformName) return fail('os or platform parameter must be not empty!');
  const id = o.id ?? tb.id;
  if (id !== tb.id && !tb.admin) return fail('only member of buildbot admin group allowed to pass --id option!');
  const format = o.format.toUpperCase();
  if (format !== 'TEXT' && format !== 'BASH') return fail(`fatal: --format must be TEXT or BASH, not ${o.format}`);
  const task = await getTask(ctx.service, {
    platform: kilnPlatform(platformName),
    tinderboxId: id,
    capabilities: tb.capabilities,
    buckets: ctx.buckets,
    filter: (b) => {
      const c = changeOf(b);
      return (
        c !== undefined &&
        configs.some((cfg) => cfg.host === c.host && configCoversBranch(cfg, c.branch)) &&
        (branches.length === 0 || branches.includes(c.branch))
      );
    },
    requestId: (b) => leaseRequestId(id, b),
    peekOnly: o.test,
  });
  if (!task) return done(format === 'BASH' ? 'GERRIT_TASK_TICKET=\nGERRIT_TASK_BRANCH=\nGERRIT_TASK_REF=\n' : 'empty');
  const ticket = `${task.gerrit?.revision || task.buildId}_${kilnPlatform(platformName)}`;
  const branch = task.gerrit?.branch ?? 'master';
  const ref = task.gerrit?.ref ?? '';
  return done(
    format === 'BASH'
      ? `GERRIT_TASK_TICKET=${ticket}\nGERRIT_TASK_BRANCH=${branch}\nGERRIT_TASK_REF=${ref}\n`
      : `engaged: ticket=${ticket} branch=${branch} ref=${ref}\n`,
  );
}

/** Finds the started build a ticket names that `holder` holds now. */
async function heldBuild(ctx: BuildbotCommandContext, ticket: string, holder: string): Promise<Build | undefined> {
  const m = /^([0-9a-f]{40})_([A-Za-z0-9._-]+)$/.exec(ticket);
  if (!m) return undefined;
  const [, revision, platform] = m;
  const page = await ctx.service.search({ buckets: ctx.buckets, status: 'STARTED', limit: 1000 });
  return page.builds.find(
    (b) =>
      changeOf(b)?.revision === revision &&
      kilnPlatform(platformOf(b)) === kilnPlatform(platform!) &&
      b.leaseHolder === holder,
  );
}

async function put(
  ctx: BuildbotCommandContext,
  tb: SshTinderbox,
  args: string[],
  stdin: () => Promise<Buffer>,
): Promise<CommandOutput> {
  const { values: o } = parseArgs({
    args,
    options: {
      ticket: { type: 'string', short: 't' },
      status: { type: 'string', short: 's' },
      id: { type: 'string', short: 'i' },
      log: { type: 'string', short: 'l' },
    },
  });
  if (!o.ticket) return fail('No ticket is provided');
  const status = (o.status ?? '').toLowerCase();
  if (!['success', 'failed', 'canceled', 'cancelled'].includes(status)) {
    return fail(`fatal: --status must be success, failed or canceled, not ${o.status ?? '(none)'}`);
  }
  const id = o.id ?? tb.id;
  if (id !== tb.id && !tb.admin) return fail('only member of buildbot admin group allowed to pass --id option!');
  if ((status === 'success' || status === 'failed') && !o.log) {
    return fail(`No log is provided for status ${status.toUpperCase()}`);
  }
  // Another tinderbox's ticket, a task rescheduled after its lease expired, or a discarded one: ignored.
  const b = await heldBuild(ctx, o.ticket, id);
  const margin = 30_000;
  if (!b || !b.leaseExpiration || Date.parse(b.leaseExpiration) < Date.now() + margin) {
    return fail(`Can not find task for ticket ${o.ticket}`);
  }
  const grant = await ctx.service.lease(b.id, { holder: id, requestId: leaseRequestId(id, b) }).catch((e: unknown) => {
    if (e instanceof KilnError) return undefined;
    throw e;
  });
  if (!grant || grant.build.leaseGeneration !== b.leaseGeneration)
    return fail(`Can not find task for ticket ${o.ticket}`);
  if (status === 'canceled' || status === 'cancelled') {
    // The plugin puts a canceled task back in the queue: end the lease now, so another tinderbox takes it.
    await ctx.service.heartbeat(b.id, { leaseKey: grant.leaseKey, leaseDurationMs: 1000 });
    return done('');
  }
  let log: string | undefined;
  let url: string | undefined;
  if (o.log === '-') {
    const raw = await stdin();
    try {
      log = gunzipSync(raw).toString('utf8');
    } catch {
      log = raw.toString('utf8'); // not gzipped: take it as it is
    }
  } else {
    url = o.log;
  }
  const ended = await report(ctx.service, ctx.logs, {
    buildId: b.id,
    leaseKey: grant.leaseKey,
    outcome: status === 'success' ? 'SUCCESS' : 'FAILURE',
    ...(log !== undefined ? { log } : {}),
    ...(url !== undefined && /^https?:\/\//.test(url) ? { url } : {}),
  });
  return isEnded(ended.status) ? done('') : fail(`fatal: build ${b.id} is ${ended.status}`);
}

async function show(ctx: BuildbotCommandContext, args: string[]): Promise<CommandOutput> {
  const { values: o } = parseArgs({
    args,
    options: {
      project: { type: 'string', short: 'p' },
      type: { type: 'string', short: 't' },
      dump: { type: 'boolean', short: 'd', default: false },
    },
  });
  const configs = enabled(ctx, o.project);
  if (typeof configs === 'string') return fail(configs);
  const type = o.type?.toUpperCase();
  const builds = [
    ...(await projectBuilds(ctx, o.project!, 'SCHEDULED')),
    ...(await projectBuilds(ctx, o.project!, 'STARTED')),
  ].sort((a, b) => (BigInt(b.id) > BigInt(a.id) ? 1 : -1));
  const byRevision = new Map<string, Build[]>();
  for (const b of builds) {
    const rev = changeOf(b)?.revision || b.id;
    byRevision.set(rev, [...(byRevision.get(rev) ?? []), b]);
  }
  let out = RULE + ROW(['Task-Id', 'Start/End', 'Type/State', 'Ref', 'Bot', 'Branch']);
  let n = 0;
  for (const [rev, tasks] of byRevision) {
    const c = changeOf(tasks[0]!);
    if (type === undefined || type === 'CHANGE') {
      n++;
      out += ROW([rev, time(tasks.map((t) => t.createTime).sort()[0]), 'Change', c?.ref ?? '', '-', c?.branch ?? '']);
    }
    if (type === undefined || type === 'JOB') {
      for (const t of tasks) {
        n++;
        const started = t.status === 'STARTED';
        out += ROW([
          ticketOf(t).replace(/^([0-9a-f]{40})_/, `${rev}_`),
          started ? time(t.startTime) : '-',
          `Job: ${started ? 'STARTED' : 'INIT'}`,
          c?.ref ?? '',
          t.leaseHolder ?? '-',
          c?.branch ?? '',
        ]);
      }
    }
  }
  out += `${RULE}  ${n} task(s)\n`;
  if (o.dump) {
    out += `Verbose\n${RULE}`;
    const platforms = [...new Set(builds.map(platformOf))].sort();
    let queued = 0;
    for (const p of platforms) {
      out += `Queue for platform: ${p}\n`;
      for (const t of builds.filter((b) => platformOf(b) === p && b.status === 'SCHEDULED')) {
        queued++;
        out += `  ${ticketOf(t)} priority ${t.priority}\n`;
      }
    }
    out += `${RULE}  ${queued} task(s)\n`;
  }
  return done(out);
}

/** The patchset a `COMMIT` or `CHANGE,PATCHSET` argument names, from Gerrit. */
async function resolvePatchset(ctx: BuildbotCommandContext, config: GerritProjectConfig, token: string) {
  const client = ctx.hosts?.client(config.host);
  if (!client) throw new KilnError('UNAVAILABLE', 'Gerrit is not configured');
  let changes;
  let wantPs: number | undefined;
  const legacy = /^([1-9][0-9]*),([1-9][0-9]*)$/.exec(token);
  if (/^[0-9a-fA-F]{4,40}$/.test(token)) {
    changes = await client.queryChanges(`commit:${token} project:${config.project}`);
  } else if (legacy) {
    changes = [await client.getChangeDetail({ project: config.project, change: Number(legacy[1]) })];
    wantPs = Number(legacy[2]);
  } else {
    throw new KilnError('INVALID_ARGUMENT', `"${token}" is not a valid patch set`);
  }
  if (changes.length === 0) throw new KilnError('NOT_FOUND', `"${token}" no such patch set`);
  if (changes.length > 1) throw new KilnError('INVALID_ARGUMENT', `"${token}" matches multiple patch sets`);
  const c = changes[0]!;
  const sha = c.current_revision;
  const rev = sha ? c.revisions?.[sha] : undefined;
  if (!sha || !rev) throw new KilnError('NOT_FOUND', `"${token}" no such patch set`);
  if (wantPs !== undefined && rev._number !== wantPs) {
    throw new KilnError('INVALID_ARGUMENT', `"${token}": patch set ${wantPs} is not the current one (${rev._number})`);
  }
  if (!sha.toLowerCase().startsWith(legacy ? '' : token.toLowerCase())) {
    throw new KilnError('INVALID_ARGUMENT', `"${token}" is not the current patch set of change ${c._number}`);
  }
  return { change: c, patchset: { number: rev._number, revision: sha, ref: rev.ref } };
}

async function schedule(ctx: BuildbotCommandContext, tb: SshTinderbox, args: string[]): Promise<CommandOutput> {
  const { values: o, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      project: { type: 'string', short: 'p' },
      ticket: { type: 'string', short: 't' },
      drop: { type: 'boolean', short: 'd', default: false },
      force: { type: 'boolean', short: 'f', default: false },
      all: { type: 'boolean', short: 'a', default: false },
      priority: { type: 'string' },
    },
  });
  if (!tb.admin) return fail(`error: ${tb.id} has not the ACL to call schedule command`);
  const configs = enabled(ctx, o.project);
  if (typeof configs === 'string') return fail(`error: project ${o.project ?? ''} is not supported`);
  const project = o.project!;
  const matches = (b: Build): boolean => {
    if (o.all) return true;
    const t = o.ticket ?? '';
    return t.includes('_') ? ticketOf(b) === t : changeOf(b)?.revision === t;
  };
  if (o.drop || o.priority !== undefined) {
    if (!o.all && !o.ticket) return fail('error: --drop and --priority need --ticket or --all');
    const pending = (await projectBuilds(ctx, project, 'SCHEDULED')).filter(matches);
    if (o.priority !== undefined) {
      const priority = Number(o.priority);
      if (!Number.isInteger(priority) || priority < 0 || priority > 255) {
        return fail('error: --priority must be an integer 0..255 (lower runs first)');
      }
      for (const b of pending) await ctx.service.setPriority(b.id, priority);
      return done('');
    }
    const running = o.force ? (await projectBuilds(ctx, project, 'STARTED')).filter(matches) : [];
    for (const b of [...pending, ...running]) await ctx.service.cancel(b.id, `dropped by ${tb.id}`, tb.id);
    return done('');
  }
  if (positionals.length === 0) return fail('error: name a COMMIT or CHANGE,PATCHSET to schedule');
  if (!ctx.intake) return fail('error: Gerrit is not configured');
  const config = configs[0]!;
  for (const token of positionals) {
    const { change, patchset } = await resolvePatchset(ctx, config, token);
    if (change.status !== 'NEW')
      return fail(`error: status of patch set ${change._number},${patchset.number} is not NEW`);
    const r = await ctx.intake.scheduleByHand(
      config.host,
      {
        project: change.project,
        branch: change.branch,
        change: change._number,
        patchset: patchset.number,
        revision: patchset.revision,
        ref: patchset.ref,
      },
      tb.id,
    );
    if (r.action === 'ignore') return fail(`error: ${r.reason}`);
  }
  return done('');
}

async function verify(ctx: BuildbotCommandContext, tb: SshTinderbox, args: string[]): Promise<CommandOutput> {
  const { values: o, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { project: { type: 'string', short: 'p' }, verified: { type: 'string' } },
  });
  if (!tb.admin) return fail(`error: ${tb.id} has not the ACL to call verify command`);
  const configs = enabled(ctx, o.project);
  if (typeof configs === 'string') return fail(`error: project ${o.project ?? ''} is not supported`);
  if (positionals.length !== 1) return fail('error: only one commit|patch set can be provided');
  const value = Number(o.verified ?? '0');
  if (!Number.isInteger(value)) return fail('error: --verified must be an integer');
  const config = configs[0]!;
  const { change, patchset } = await resolvePatchset(ctx, config, positionals[0]!);
  const running = (await ctx.service.findVerifications({ host: config.host, change: change._number })).find(
    (v) => v.patchset === patchset.number && (v.phase === 'BUILDING' || v.phase === 'EVALUATING'),
  );
  if (running) return fail(`error: build job still pending from ${running.createTime}`);
  const result = await ctx
    .hosts!.client(config.host)
    .setReview({ project: change.project, change: change._number }, patchset.revision, {
      message: `Verification status of the Buildbot is manually set to ${value} by ${tb.id}`,
      labels: { [VERIFIED]: value },
      tag: 'autogenerated:kiln',
    });
  if (result.labels?.[VERIFIED] !== value) return fail(`error: vote ${VERIFIED} ${value} dropped by Gerrit`);
  return done('');
}
