/**
 * `kiln stuck`: builds scheduled too long, leases about to expire, old heartbeats, and the change
 * verifications waiting on them — straight from Temporal visibility — with, for each category, the
 * list filter to paste into the Temporal Web UI (and a link that opens it).
 */
import { type Command } from 'commander';
import { loadConfigFile, loadEnv } from '../../config/load.ts';
import { configPath, temporalUnreachable } from '../../processes/runtime.ts';
import { CATEGORY_TITLES, DEFAULT_STUCK_THRESHOLDS, uiListUrl } from '../../stuck/filters.ts';
import { findStuck, type StuckBuild } from '../../stuck/find.ts';
import { connectClient } from '../../temporal/connection.ts';

const secs = (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`not a number of seconds: ${v}`);
  return n;
};

function line(b: StuckBuild): string {
  const parts = [b.buildId, b.builder, b.status ?? '?', `scheduled ${b.scheduledAt}`];
  if (b.leaseHolder) parts.push(`lease: ${b.leaseHolder}`);
  if (b.leaseExpiresAt) parts.push(`expires ${b.leaseExpiresAt}`);
  if (b.lastHeartbeatAt) parts.push(`heartbeat ${b.lastHeartbeatAt}`);
  return `  ${parts.join('  ')}`;
}

/** Registers `kiln stuck` on the program. */
export function registerStuckCommand(program: Command): void {
  program
    .command('stuck')
    .description('list stuck builds (from Temporal visibility) and the Temporal UI filters that show them')
    .option('-c, --config <file>', 'Kiln config, for the Temporal address and namespace (as kiln dev/api use)')
    .option('--address <host:port>', "Temporal frontend (default: the config's, or its dev server's)")
    .option('--ui <url>', 'Temporal Web UI base URL for links (default: the dev server UI)')
    .option('--scheduled-for <secs>', 'SCHEDULED longer than this', secs, DEFAULT_STUCK_THRESHOLDS.scheduledForSecs)
    .option('--lease-within <secs>', 'lease expires within this', secs, DEFAULT_STUCK_THRESHOLDS.leaseExpiresWithinSecs)
    .option(
      '--heartbeat-older <secs>',
      'last heartbeat older than this',
      secs,
      DEFAULT_STUCK_THRESHOLDS.heartbeatOlderThanSecs,
    )
    .option('--limit <n>', 'builds per category', (v) => Number.parseInt(v, 10), 50)
    .option('--json', 'print JSON')
    .action(
      async (o: {
        config?: string;
        address?: string;
        ui?: string;
        scheduledFor: number;
        leaseWithin: number;
        heartbeatOlder: number;
        limit: number;
        json?: boolean;
      }) => {
        const config = loadConfigFile(configPath(o.config), loadEnv());
        const t = config.temporal;
        const address = o.address ?? t.address ?? `127.0.0.1:${t.devServer.port}`;
        const ui = o.ui ?? `http://127.0.0.1:${t.devServer.uiPort}`;
        const client = await connectClient({ ...t, address }).catch((e: unknown) => {
          throw temporalUnreachable(address, e);
        });
        try {
          const report = await findStuck(
            client,
            {
              scheduledForSecs: o.scheduledFor,
              leaseExpiresWithinSecs: o.leaseWithin,
              heartbeatOlderThanSecs: o.heartbeatOlder,
            },
            { limit: o.limit },
          );
          if (o.json) {
            console.log(JSON.stringify(report, null, 2));
            return;
          }
          const out: string[] = [`Stuck builds at ${report.at} (Temporal ${address}, namespace ${t.namespace})`, ''];
          for (const c of report.categories) {
            out.push(`${CATEGORY_TITLES[c.category]}: ${c.builds.length}`);
            out.push(...c.builds.map(line));
            out.push(`  Temporal UI filter: ${c.filter}`, `  ${uiListUrl(ui, t.namespace, c.filter)}`, '');
          }
          out.push(`Change verifications waiting on these builds: ${report.verifications.runs.length}`);
          for (const v of report.verifications.runs) out.push(`  ${v.workflowId}  waits on ${v.waitsOn.join(', ')}`);
          if (report.verifications.filter) {
            out.push(
              `  Temporal UI filter: ${report.verifications.filter}`,
              `  ${uiListUrl(ui, t.namespace, report.verifications.filter)}`,
            );
          }
          console.log(out.join('\n'));
        } finally {
          await client.connection.close();
        }
      },
    );
}
