/**
 * `kiln schedule --wait`: follows a build from SCHEDULED to its end, printing each status change
 * with the elapsed time, and sets a non-zero exit code unless it ends SUCCESS.
 */
import { type KilnClient } from '../../client/kilnClient.ts';
import { type Build, builderPath, isEnded } from '../../domain/build.ts';

/** Exit code of `schedule --wait` for a build that did not succeed. */
export const WAIT_FAILED_EXIT_CODE = 2;

function elapsed(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** Polls `build` until it ends; prints progress to stderr-free stdout lines. Returns the ended build. */
export async function waitForBuild(
  client: KilnClient,
  build: Build,
  opts: { pollMs?: number; print?: (line: string) => void } = {},
): Promise<Build> {
  const print = opts.print ?? ((l: string) => console.log(l));
  const t0 = Date.now();
  let last: Build = build;
  let lastKey = '';
  let sawStarted = false;
  for (;;) {
    const key = `${last.status}/${last.leaseGeneration}/${last.leaseHolder ?? ''}`;
    if (key !== lastKey && isEnded(last.status) && last.startTime && !sawStarted) {
      // It started and ended between two polls: still show that it started, and when.
      const at = Math.max(0, Date.parse(last.startTime) - t0);
      print(`[${elapsed(at).padStart(6)}] ${builderPath(last.builder)} #${last.number} STARTED`);
    }
    if (last.status === 'STARTED') sawStarted = true;
    if (key !== lastKey) {
      lastKey = key;
      const who = last.status === 'STARTED' && last.leaseHolder ? ` by ${last.leaseHolder}` : '';
      const why = isEnded(last.status) && last.summaryMarkdown ? `: ${last.summaryMarkdown}` : '';
      print(
        `[${elapsed(Date.now() - t0).padStart(6)}] ${builderPath(last.builder)} #${last.number} ${last.status}${who}${why}`,
      );
    }
    if (isEnded(last.status)) return last;
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 500));
    last = await client.get(build.id);
  }
}
