/**
 * Steps and output properties from the build command to Kiln: the command writes `$KILN_STEPS_FILE` (a JSON array
 * of steps) and `$KILN_OUTPUT_PROPERTIES_FILE` (a JSON object); the runner reads both every interval while the
 * command runs and once more when it exits, and sends what changed with the lease key (`POST
 * /api/v1/builds/:id/update`, each replacing the stored one as a whole). A file that is not valid JSON yet (being
 * written) waits for the next read; at the end, and when Kiln refuses one, the build's log says why.
 */
import { readFile } from 'node:fs/promises';
import type pino from 'pino';
import { type KilnClient, KilnApiError } from '../client/kilnClient.ts';
import { type BuildStep } from '../domain/steps.ts';

/** Options of `ProgressReporter`. */
export interface ProgressReporterOptions {
  client: Pick<KilnClient, 'updateBuild'>;
  buildId: string;
  leaseKey: string;
  stepsFile: string;
  outputPropertiesFile: string;
  /** How often the files are read while the command runs. */
  intervalMs: number;
  logger: pino.Logger;
  /** Writes a line to the build's log. */
  note: (line: string) => void;
}

type Read =
  { kind: 'absent' } | { kind: 'bad'; why: string; text: string } | { kind: 'ok'; value: unknown; text: string };

/** See the module comment. */
export class ProgressReporter {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  /** File text last sent (or refused for good), so the same content is not sent again. */
  private readonly done = new Map<string, string>();

  constructor(private readonly o: ProgressReporterOptions) {}

  /** Starts reading the files every interval. */
  start(): void {
    this.timer = setInterval(() => {
      this.running = this.running.then(async () => void (await this.sync(false)));
    }, this.o.intervalMs);
    this.timer.unref();
  }

  /** Stops the timer without a last read (the lease is gone: Kiln would refuse it). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  /** Stops the timer and sends what the files hold now (the command has exited). */
  async finish(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
    // A lost answer is retried a few times (Kiln restarting); the build's report waits for it.
    for (let attempt = 0; attempt < 5 && (await this.sync(true)) === 'retry'; attempt++) {
      await new Promise((r) => setTimeout(r, 1000 * 2 ** attempt));
    }
  }

  private async read(path: string): Promise<Read> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'absent' };
      return { kind: 'bad', why: (e as Error).message, text: '' };
    }
    try {
      return { kind: 'ok', value: JSON.parse(text) as unknown, text };
    } catch (e) {
      return { kind: 'bad', why: `not valid JSON: ${(e as Error).message}`, text };
    }
  }

  private async sync(final: boolean): Promise<'done' | 'retry'> {
    const steps = await this.read(this.o.stepsFile);
    const output = await this.read(this.o.outputPropertiesFile);
    const req: { leaseKey: string; steps?: BuildStep[]; output?: { properties?: Record<string, unknown> } } = {
      leaseKey: this.o.leaseKey,
    };
    const sent: [string, string][] = [];
    const take = (file: string, env: string, r: Read, want: 'array' | 'object'): unknown => {
      if (r.kind === 'absent' || this.done.get(file) === r.text) return undefined;
      const shape = r.kind === 'ok' && (want === 'array' ? Array.isArray(r.value) : isObject(r.value));
      if (r.kind === 'bad' || !shape) {
        // Mid-build a file may be half written: only the last read counts it as wrong.
        if (final) {
          this.o.note(`kiln runner: $${env} (${file}) ignored: ${r.kind === 'bad' ? r.why : `not a JSON ${want}`}\n`);
        }
        return undefined;
      }
      sent.push([file, r.text]);
      return r.value;
    };
    const s = take(this.o.stepsFile, 'KILN_STEPS_FILE', steps, 'array');
    if (s !== undefined) req.steps = s as BuildStep[];
    const p = take(this.o.outputPropertiesFile, 'KILN_OUTPUT_PROPERTIES_FILE', output, 'object');
    if (p !== undefined) req.output = { properties: p as Record<string, unknown> };
    if (req.steps === undefined && req.output === undefined) return 'done';
    try {
      await this.o.client.updateBuild(this.o.buildId, req);
      for (const [file, text] of sent) this.done.set(file, text);
      return 'done';
    } catch (e) {
      if (e instanceof KilnApiError && !e.retryable) {
        // Refused as it is (too big, malformed): say so once, and wait for new content.
        for (const [file, text] of sent) this.done.set(file, text);
        this.o.note(`kiln runner: Kiln refused the build's steps/output properties: ${e.message}\n`);
        return 'done';
      }
      this.o.logger.warn({ err: (e as Error).message }, 'reporting steps failed; will retry');
      return 'retry';
    }
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
