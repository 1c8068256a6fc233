/**
 * The process logger of every Kiln command: pino, written to stdout. On a terminal the lines are
 * human-readable and coloured (pino-pretty); otherwise, or with `LOG_FORMAT=json`, one JSON object
 * per line for log collectors. `LOG_FORMAT=pretty` forces the readable form (e.g. under `less -R`).
 */
import { isatty } from 'node:tty';
import pino from 'pino';
import pretty from 'pino-pretty';

/** How log lines look. `auto`: `pretty` when stdout is a terminal, else `json`. */
export type LogFormat = 'auto' | 'json' | 'pretty';

/** Options of `makeLogger`. */
export interface LoggerOptions {
  /** pino level. @default "info" */
  level?: string;
  /** Fields on every line, e.g. `{component: 'kiln-dev'}`. */
  base?: Record<string, unknown>;
  /** @default "auto" */
  format?: LogFormat;
  /** Whether stdout is a terminal. @default isatty(1) */
  isTTY?: boolean;
}

/** The format `auto` stands for here. */
export function resolveLogFormat(format: LogFormat | undefined, isTTY: boolean): 'json' | 'pretty' {
  if (format === 'json' || format === 'pretty') return format;
  return isTTY ? 'pretty' : 'json';
}

/** Makes the process logger; see the module comment. */
export function makeLogger(opts: LoggerOptions = {}): pino.Logger {
  const isTTY = opts.isTTY ?? isatty(1);
  const options = { level: opts.level ?? 'info', base: opts.base ?? {} };
  if (resolveLogFormat(opts.format, isTTY) === 'json') return pino(options);
  return pino(
    options,
    pretty({
      colorize: isTTY && pretty.isColorSupported,
      sync: true,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname,component',
      messageFormat: '{if component}{component}: {end}{msg}',
    }),
  );
}
