/**
 * `kiln schedules list | pause | unpause | trigger` and `kiln promotions [--repo R] [--dry-run]`:
 * schedulers, git pollers, periodic merges and promotion attempts through the API.
 */
import { type Command } from 'commander';
import { KilnClient } from '../../client/kilnClient.ts';
import { type PromotionAttempt } from '../../domain/launchpad/promotion.ts';
import { type ScheduleView } from '../../launchpad/api.ts';

type ApiFlags = { api: string; token?: string; json?: boolean };

const withApi = (c: Command) =>
  c
    .option('--api <url>', 'Kiln API base URL', process.env.KILN_API ?? 'http://127.0.0.1:8080')
    .option('--token <token>', 'bearer token', process.env.KILN_TOKEN)
    .option('--json', 'print JSON');

const clientOf = (o: ApiFlags) => new KilnClient({ baseUrl: o.api, token: o.token, timeoutMs: 150_000 });

/** Lines for one schedule. */
export function scheduleLines(s: ScheduleView): string[] {
  const lines = [`${s.name}  ${s.kind}  ${s.when}${s.paused ? '  PAUSED' : ''}${s.note ? `  (${s.note})` : ''}`];
  lines.push(`  ${s.kind === 'merge' ? '' : 'builds '}${s.what}`);
  if (s.nextRunTime) lines.push(`  next run:     ${s.nextRunTime}`);
  if (s.lastRunTime) lines.push(`  last run:     ${s.lastRunTime}`);
  if (s.lastCommit) lines.push(`  last commit:  ${s.lastCommit}`);
  if (s.kind === 'on-commit') lines.push(`  last success: ${s.lastSuccessTime ?? 'never'}`);
  if (s.lastError) lines.push(`  last error:   ${s.lastErrorTime ?? ''} ${s.lastError}`);
  return lines;
}

/** One line for a promotion attempt. */
export function promotionLine(a: PromotionAttempt): string {
  const what = `${a.repo} ${a.from} → ${a.to}`;
  const commit = a.commit ? ` ${a.commit.slice(0, 12)}` : '';
  const detail = a.state === 'FAILED' || a.state === 'NOT_GREEN' ? a.reason : a.message;
  return `${a.createTime}  ${a.id}  ${what}  ${a.state}${commit}${detail ? `  ${detail}` : ''}`;
}

/** Adds the commands to `program`. */
export function registerLaunchpadCommands(program: Command): void {
  const s = program.command('schedules').description('schedulers, git pollers and periodic merges');
  withApi(s.command('list').description('every scheduler and periodic merge with its state')).action(
    async (o: ApiFlags) => {
      const { schedules } = await clientOf(o).schedules();
      if (o.json) console.log(JSON.stringify(schedules, null, 2));
      else console.log(schedules.flatMap(scheduleLines).join('\n') || '(no schedulers configured)');
    },
  );
  for (const action of ['pause', 'unpause', 'trigger'] as const) {
    const what = { pause: 'pause', unpause: 'resume', trigger: 'run now' }[action];
    withApi(
      s
        .command(`${action} <name>`)
        .description(`${what} a scheduler, git poller or periodic merge`)
        .option('--note <text>', 'why (shown by list)'),
    ).action(async (name: string, o: ApiFlags & { note?: string }) => {
      const r = await clientOf(o).scheduleAction(name, action, o.note);
      console.log(o.json ? JSON.stringify(r) : `${name}: ${action === 'trigger' ? 'triggered' : `${action}d`}`);
    });
  }
  withApi(
    program
      .command('promotions')
      .description('promotion and periodic-merge attempts, newest first (--dry-run: what would be pushed now)')
      .option('--repo <name>', 'only this repository')
      .option('--name <promotion>', 'only this promotion or merge')
      .option('--build <id>', 'only attempts this build fed')
      .option('--limit <n>', 'how many', '30')
      .option('--dry-run', 'say what each promotion and merge would push where, pushing nothing'),
  ).action(async (o: ApiFlags & { repo?: string; name?: string; build?: string; limit: string; dryRun?: boolean }) => {
    const c = clientOf(o);
    if (o.dryRun) {
      const { results } = await c.promotionDryRun(o.repo);
      if (o.json) console.log(JSON.stringify(results, null, 2));
      else
        console.log(
          results
            .map(
              (r) => `${r.kind} ${r.name} (${r.repo} ${r.from} → ${r.to}): ${r.state}: ${r.message ?? r.reason ?? ''}`,
            )
            .join('\n') || '(no promotions or merges configured)',
        );
      return;
    }
    const { promotions } = await c.promotions({
      repo: o.repo,
      name: o.name,
      build: o.build,
      limit: Number.parseInt(o.limit, 10),
    });
    if (o.json) console.log(JSON.stringify(promotions, null, 2));
    else console.log(promotions.map(promotionLine).join('\n') || '(no promotion attempts)');
  });
}
