/**
 * `kiln schedule --wait`: follows a build from SCHEDULED to its end, printing each status change
 * once, with the elapsed time (a lease that expired and sent the build back to SCHEDULED is a
 * change; a lease taken on a SCHEDULED build is not, it shows as STARTED by its holder). A build
 * that does not succeed is followed by the tail of its log and the command that shows all of it.
 * Statuses are coloured on a terminal (NO_COLOR / FORCE_COLOR are honoured).
 */
import { type Color, createColors, isColorSupported } from 'colorette';
import { type KilnClient } from '../../client/kilnClient.ts';
import { type Build, type BuildStatus, builderPath, isEnded } from '../../domain/build.ts';

/** Exit code of `schedule --wait` for a build that did not succeed. */
export const WAIT_FAILED_EXIT_CODE = 2;

/** Lines of the log shown after a build that did not succeed. */
export const LOG_TAIL_LINES = 20;

function elapsed(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** The colour of each status on a terminal. */
export function statusColor(useColor: boolean): (status: BuildStatus) => string {
  const c = createColors({ useColor });
  const by: Record<BuildStatus, Color> = {
    SCHEDULED: c.blue,
    STARTED: c.cyan,
    SUCCESS: (s) => c.bold(c.green(s)),
    FAILURE: (s) => c.bold(c.red(s)),
    INFRA_FAILURE: (s) => c.bold(c.magenta(s)),
    CANCELED: (s) => c.bold(c.yellow(s)),
  };
  return (status) => by[status](status);
}

/** Options of `waitForBuild`. */
export interface WaitOptions {
  /** @default 500 */
  pollMs?: number;
  /** @default console.log */
  print?: (line: string) => void;
  /** @default true on a terminal that supports colour */
  color?: boolean;
}

/** Polls `build` until it ends, printing each change. Returns the ended build. */
export async function waitForBuild(client: KilnClient, build: Build, opts: WaitOptions = {}): Promise<Build> {
  const print = opts.print ?? ((l: string) => console.log(l));
  const paint = statusColor(opts.color ?? isColorSupported);
  const t0 = Date.now();
  const line = (at: number, b: Build, text: string) =>
    print(`[${elapsed(at).padStart(6)}] ${builderPath(b.builder)} #${b.number} ${text}`);
  let last: Build = build;
  let lastKey = '';
  let sawStarted = false;
  for (;;) {
    // A lease on a SCHEDULED build changes its generation and holder but not what a user waits for.
    const key = `${last.status}/${last.leaseResets}`;
    if (key !== lastKey && isEnded(last.status) && last.startTime && !sawStarted) {
      // It started and ended between two polls: still show that it started, and when.
      line(Math.max(0, Date.parse(last.startTime) - t0), last, paint('STARTED'));
    }
    if (last.status === 'STARTED') sawStarted = true;
    if (key !== lastKey) {
      const again =
        lastKey !== '' && last.status === 'SCHEDULED' ? ` again (lease expired, reset ${last.leaseResets})` : '';
      lastKey = key;
      const who = last.status === 'STARTED' && last.leaseHolder ? ` by ${last.leaseHolder}` : '';
      const why = isEnded(last.status) && last.summaryMarkdown ? `: ${last.summaryMarkdown}` : '';
      line(Date.now() - t0, last, `${paint(last.status)}${again}${who}${why}`);
    }
    if (isEnded(last.status)) return last;
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 500));
    last = await client.get(build.id);
  }
}

/** The last `lines` lines of a build's log (its latest attempt); empty when it has none. */
export async function logTail(client: KilnClient, id: string, lines = LOG_TAIL_LINES): Promise<string[]> {
  const head = await client.readLog(id, { offset: Number.MAX_SAFE_INTEGER });
  if (head.size === 0) return [];
  // 200 bytes a line is plenty for a tail; a longer line is shown cut from its start.
  const from = Math.max(0, head.size - lines * 200);
  const chunk = await client.readLog(id, { offset: from, attempt: head.attempt });
  const text = chunk.data.toString('utf8').replace(/\n$/, '');
  const all = text.split('\n');
  if (from > 0) all.shift(); // the first line is cut
  return all.slice(-lines);
}

/** What `schedule --wait` prints after a build that did not succeed: its log's tail and where the rest is. */
export async function failureReport(client: KilnClient, b: Build): Promise<string[]> {
  let tail: string[];
  try {
    tail = await logTail(client, b.id);
  } catch {
    tail = [];
  }
  const out = tail.length
    ? [`--- last ${tail.length} lines of the log of build ${b.id} ---`, ...tail, '---']
    : [`(build ${b.id} has no log)`];
  out.push(`full log: npx kiln log ${b.id}    details: npx kiln get ${b.id}`);
  return out;
}
