/**
 * `kiln tinderbox get-task | report`: the tinderbox side of change verification from a shell
 * script. `get-task` prints the task as JSON (exit 0) or nothing with exit code 2 when no task is
 * pending; `report` ends the build with the task's lease key.
 */
import { readFileSync } from 'node:fs';
import { type Command, InvalidArgumentError } from 'commander';
import { KilnClient } from '../../client/kilnClient.ts';
import { type Build } from '../../domain/build.ts';
import { type TinderboxTask } from '../../builds/tinderbox.ts';
import { apiOption, tokenOption } from '../options.ts';

interface ApiFlags {
  api: string;
  token?: string;
}

const apiOpts = (c: Command) => c.addOption(apiOption()).addOption(tokenOption());

const collect = (v: string, prev: string[]) => [...prev, v];

/** Adds `kiln tinderbox …` to `program`. */
export function registerTinderboxCommands(program: Command): void {
  const tb = program
    .command('tinderbox')
    .description('tinderbox commands: take a verification task, report its outcome');

  apiOpts(
    tb
      .command('get-task')
      .description('take the best pending task for this platform (peek + lease + start); prints JSON, exit 2 when none')
      .requiredOption('--platform <name>', 'builder name or platform:<name> dimension (e.g. LINUX)')
      .requiredOption('--id <tinderboxId>', 'this tinderbox, shown to users as who took the task')
      .option('--capability <name>', 'a capability this tinderbox has (repeatable), e.g. with-java', collect, []),
  ).action(async (o: ApiFlags & { platform: string; id: string; capability: string[] }) => {
    const client = new KilnClient({ baseUrl: o.api, token: o.token });
    const r = await client.request<{ task: TinderboxTask | null }>('POST', '/api/v1/tinderbox/get-task', {
      platform: o.platform,
      tinderboxId: o.id,
      capabilities: o.capability,
    });
    if (!r.task) {
      console.error('no task');
      process.exitCode = 2;
      return;
    }
    console.log(JSON.stringify(r.task, null, 2));
  });

  apiOpts(
    tb
      .command('report <buildId>')
      .description('end a task with its outcome; a report from an expired lease is refused (LEASE_EXPIRED)')
      .requiredOption('--lease-key <key>', 'the leaseKey get-task returned')
      .requiredOption('--outcome <SUCCESS|FAILURE>', 'the outcome', (v) => {
        if (v !== 'SUCCESS' && v !== 'FAILURE') throw new InvalidArgumentError('SUCCESS or FAILURE');
        return v;
      })
      .option('--log-file <file>', 'upload this file as the build log')
      .option('--url <url>', 'a link to the build on the tinderbox')
      .option('--summary <text>', 'a short summary'),
  ).action(
    async (
      buildId: string,
      o: ApiFlags & {
        leaseKey: string;
        outcome: 'SUCCESS' | 'FAILURE';
        logFile?: string;
        url?: string;
        summary?: string;
      },
    ) => {
      const client = new KilnClient({ baseUrl: o.api, token: o.token });
      const build = await client.request<Build>('POST', '/api/v1/tinderbox/report', {
        buildId,
        leaseKey: o.leaseKey,
        outcome: o.outcome,
        ...(o.logFile ? { log: readFileSync(o.logFile, 'utf8') } : {}),
        ...(o.url ? { url: o.url } : {}),
        ...(o.summary ? { summary: o.summary } : {}),
      });
      console.log(`${build.id} ${build.status}`);
    },
  );
}
