/**
 * `kiln gerrit listen`: a thin forwarder from `gerrit stream-events` to Kiln. It runs a command
 * (typically `ssh -p 29418 kiln@gerrit.example.org gerrit stream-events`), reads one JSON event
 * per line from its stdout, and POSTs each event Kiln handles to `/api/v1/gerrit/events` with the
 * shared secret. Event types Kiln does not act on are skipped; malformed lines are logged. It
 * exits with the command's exit code (run it under a supervisor that restarts it).
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { type Command, InvalidArgumentError } from 'commander';
import { KilnApiError, KilnClient } from '../../client/kilnClient.ts';
import { verificationLines } from '../format.ts';
import { parseGerritEventLine } from '../../gerrit/events.ts';
import { apiOption, tokenOption } from '../options.ts';

/** Options of `listen`. */
export interface ListenOptions {
  api: string;
  command: string;
  secret: string;
  host?: string;
  /** Where progress lines go. @default console.error */
  log?: (line: string) => void;
}

/** Runs the listener until the command exits; resolves with its exit code. */
export async function listen(o: ListenOptions): Promise<number> {
  const log = o.log ?? ((l: string) => console.error(l));
  const path = `/api/v1/gerrit/events${o.host ? `?host=${encodeURIComponent(o.host)}` : ''}`;
  const child = spawn('sh', ['-c', o.command], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)));
  const lines = createInterface({ input: child.stdout });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    let type: string;
    try {
      const parsed = parseGerritEventLine(line);
      // ref-updated goes to Kiln too: it makes git pollers poll at once.
      if (parsed.kind === 'unknown' && parsed.type !== 'ref-updated') continue;
      type = parsed.kind === 'event' ? parsed.event.type : parsed.type;
    } catch (e) {
      log(`kiln gerrit listen: skipped a malformed line: ${(e as Error).message}`);
      continue;
    }
    // Retry while Kiln is unreachable (restarts); give up on a refusal.
    for (let delay = 500; ; delay = Math.min(delay * 2, 30_000)) {
      try {
        const r = await postEvent(new URL(path, o.api), line, o.secret);
        log(
          `kiln gerrit listen: ${type}: ${r.actions.map((a) => `${a.action} (${a.reason})`).join(', ') || 'not ours'}`,
        );
        break;
      } catch (e) {
        if (e instanceof KilnApiError && e.code === 'UNAVAILABLE') {
          log(`kiln gerrit listen: Kiln unavailable, retrying in ${delay} ms: ${e.message}`);
          await new Promise((r) => setTimeout(r, delay));
          continue;
        }
        log(`kiln gerrit listen: ${type} refused: ${(e as Error).message}`);
        break;
      }
    }
  }
  return exited;
}

/** POSTs one event line as is (Gerrit's JSON) with the secret header; errors as `KilnApiError`. */
async function postEvent(
  url: URL,
  line: string,
  secret: string,
): Promise<{ actions: { action: string; reason: string }[] }> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-kiln-gerrit-secret': secret },
      body: line,
      signal: AbortSignal.timeout(30_000),
    });
  } catch (e) {
    throw new KilnApiError('UNAVAILABLE', (e as Error).message, 0);
  }
  const body = (await res.json().catch(() => ({}))) as { code?: string; message?: string; actions?: [] };
  if (!res.ok) {
    throw new KilnApiError(
      res.status >= 500 ? 'UNAVAILABLE' : 'INVALID_ARGUMENT',
      body.message ?? `HTTP ${res.status}`,
      res.status,
    );
  }
  return { actions: body.actions ?? [] };
}

/** Adds `kiln gerrit …` to `program`. */
export function registerGerritCommands(program: Command): void {
  const g = program.command('gerrit').description('Gerrit integration');
  g.command('listen')
    .description('run a `gerrit stream-events` command and forward its events to Kiln')
    .requiredOption('--command <shell command>', 'e.g. "ssh -p 29418 kiln@gerrit.example.org gerrit stream-events"')
    .option('--host <host>', 'Gerrit host the events come from (when Kiln has several)')
    .addOption(apiOption())
    .option('--secret-env <name>', 'env variable holding the event secret', 'KILN_GERRIT_SECRET')
    .action(async (o: { command: string; host?: string; api: string; secretEnv: string }) => {
      const secret = process.env[o.secretEnv];
      if (!secret) throw new Error(`environment variable ${o.secretEnv} (the event secret) is not set`);
      process.exitCode = await listen({ api: o.api, command: o.command, secret, host: o.host });
    });
  g.command('verifications <change>')
    .description("a change's verification attempts from storage: phase, platforms, vote")
    .option('--host <host>', 'Gerrit host (when Kiln has several)')
    .option('--patchset <n>', 'only this patch set', (v) => positiveInt(v, '--patchset'))
    .addOption(apiOption())
    .addOption(tokenOption())
    .option('--json', 'print JSON')
    .action(
      async (change: string, o: { host?: string; patchset?: number; api: string; token?: string; json?: boolean }) => {
        const { verifications } = await new KilnClient({ baseUrl: o.api, token: o.token }).verifications({
          change: positiveInt(change, '<change>'),
          host: o.host,
          patchset: o.patchset,
        });
        if (o.json) console.log(JSON.stringify(verifications, null, 2));
        else if (verifications.length === 0) console.log(`no verifications of change ${change}`);
        else console.log(verifications.flatMap(verificationLines).join('\n'));
      },
    );
}

function positiveInt(v: string, what: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`${what} must be a positive integer`);
  return n;
}
