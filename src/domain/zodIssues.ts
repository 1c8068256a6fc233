/**
 * The one formatter of zod errors for every edge: HTTP input, config and env, Gerrit events,
 * Swarming notifications, and what Swarming and Gerrit answer. Every message names the field as a
 * path (`body.tags[0]`, `projects[1].buckets[0].name`, `message.data.task_id`), so a caller or an
 * operator can find what to fix. Pure (type-only zod import), so workflow code may use it.
 */
import { type z } from 'zod';

/** How `formatZodError` words an error. */
export interface ZodErrorFormat {
  /**
   * Where the parsed value sits, put before every issue's path: `body`, `query`, `message.data`,
   * `swarming.overrideBuilderCfg`. @default '' (the path alone, or `(root)` when it is empty)
   */
  at?: string;
  /**
   * Every issue, one per line, instead of the first one and how many more. Config errors list all,
   * so one start names every bad key. @default false
   */
  all?: boolean;
  /** Put before each line, e.g. the config file's name (`kiln.yaml: projects[0].name: …`). */
  source?: string;
  /** Between the lines of `all`. @default '\n' */
  separator?: string;
}

/**
 * `path: message` for the first issue (`body.priority: Too big … (and 2 more)`), or for each issue
 * on its own line with `all`. Odd keys are quoted (`["a b"]`), control characters shown as escapes.
 */
export function formatZodError(error: z.ZodError, o: ZodErrorFormat = {}): string {
  const issues = o.all ? error.issues : error.issues.slice(0, 1);
  const lines = issues.map((i) => {
    const line = `${zodIssuePath(i.path, o.at)}: ${i.message}`;
    return o.source === undefined ? line : `${o.source}: ${line}`;
  });
  if (lines.length === 0) lines.push(`${o.source === undefined ? '' : `${o.source}: `}${o.at || '(root)'}: invalid`);
  const more = !o.all && error.issues.length > 1 ? ` (and ${error.issues.length - 1} more)` : '';
  return lines.join(o.separator ?? '\n') + more;
}

/** `at` followed by `path` as `.name`, `[3]` or `["odd key"]`; `(root)` when both are empty. */
export function zodIssuePath(path: readonly PropertyKey[], at = ''): string {
  let out = at;
  for (const p of path) out += pathPart(p, out === '');
  return out || '(root)';
}

/** One step of a path: `.name` (`name` first), `[3]`, or `["odd key"]` with unstorable characters escaped. */
export function pathPart(p: PropertyKey, first = false): string {
  if (typeof p === 'number') return `[${p}]`;
  const s = String(p);
  if (/^[A-Za-z_$][\w$-]*$/.test(s)) return first ? s : `.${s}`;
  // eslint-disable-next-line no-control-regex -- NUL and lone surrogates are exactly what this shows
  return `[${JSON.stringify(s).replace(/[\u0000-\u001f\ud800-\udfff]/g, escapeChar)}]`;
}

function escapeChar(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}
