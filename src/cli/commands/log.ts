/** `kiln log <id> [--follow]`: print a build's log; with --follow, keep printing until it is complete. */
import { type Command } from 'commander';
import { KilnClient } from '../../client/kilnClient.ts';
import { isEnded } from '../../domain/build.ts';
import { apiOption, tokenOption } from '../options.ts';

/** Milliseconds between polls with --follow. */
const FOLLOW_POLL_MS = 1000;

/** Registers `kiln log` on the program. */
export function registerLogCommand(program: Command): void {
  program
    .command('log <id>')
    .description("print a build's log (its latest attempt)")
    .option('-f, --follow', 'keep printing as the log grows, until it is complete or the build has ended')
    .option('--attempt <n>', 'an earlier attempt (lease generation)', (v) => Number.parseInt(v, 10))
    .addOption(apiOption())
    .addOption(tokenOption())
    .action(async (id: string, o: { follow?: boolean; attempt?: number; api: string; token?: string }) => {
      const client = new KilnClient({ baseUrl: o.api, token: o.token });
      let attempt = o.attempt;
      let offset = 0;
      let quietPolls = 0;
      for (;;) {
        if (o.follow && o.attempt === undefined) {
          // Headers only: which attempt is the latest? A lease that expired hands the build to a new one.
          const head = await client.readLog(id, { offset: Number.MAX_SAFE_INTEGER });
          if (head.attempt !== undefined && attempt !== undefined && head.attempt !== attempt) {
            process.stdout.write(`\n--- attempt ${head.attempt} (the previous runner's lease ended) ---\n`);
            offset = 0;
          }
          attempt = head.attempt ?? attempt;
        }
        const chunk = await client.readLog(id, { offset, attempt });
        if (chunk.data.length) process.stdout.write(chunk.data);
        offset += chunk.data.length;
        if (chunk.complete) return;
        if (!o.follow) {
          await noteIncomplete(client, id);
          return;
        }
        if (chunk.data.length === 0) {
          // An ended build whose runner never completed the log: stop after a few quiet polls.
          quietPolls = isEnded((await client.get(id)).status) ? quietPolls + 1 : 0;
          if (quietPolls >= 3) {
            await noteIncomplete(client, id);
            return;
          }
        }
        await new Promise((r) => setTimeout(r, FOLLOW_POLL_MS));
      }
    });
}

/** Says on stderr that the log printed is not the whole story, and why (issue 17: a cut-off log with no note). */
async function noteIncomplete(client: KilnClient, id: string): Promise<void> {
  const b = await client.get(id).catch(() => undefined);
  if (!b) return;
  const why = isEnded(b.status)
    ? `build ${id} ended ${b.status}${b.summaryMarkdown ? ` (${b.summaryMarkdown})` : ''} and its runner has not finished uploading the log (it may still): kiln log ${id} --follow waits for the rest`
    : `build ${id} is ${b.status}: the log goes on; kiln log ${id} --follow prints it as it grows`;
  process.stderr.write(`\n[kiln: this log is incomplete: ${why}]\n`);
}
