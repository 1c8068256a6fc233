/** zod at the edge: parse request parts, or answer INVALID_ARGUMENT naming the field. */
import { type z } from 'zod';
import { MAX_JSON_DEPTH, unstorableText } from '../domain/build.ts';
import { KilnError } from '../domain/errors.ts';
import { formatZodError, pathPart } from '../domain/zodIssues.ts';

/** Options of `parseInput`. */
export interface ParseOptions {
  /**
   * Top-level fields kept as bytes, never as text (log data): any character may appear in them, so
   * they skip the storable-text check.
   */
  anyText?: readonly string[];
}

/**
 * Parses `data` (the request's `where`: body, query, params) or throws INVALID_ARGUMENT. Beyond the
 * schema, every string in the result (keys too) must be text storage can hold — no NUL, no lone
 * UTF-16 surrogate — and nothing may nest deeper than `MAX_JSON_DEPTH`: such input would pass here
 * and then fail in storage, far from the caller.
 */
export function parseInput<S extends z.ZodType>(
  schema: S,
  data: unknown,
  where: 'body' | 'query' | 'params',
  opts: ParseOptions = {},
): z.infer<S> {
  // Fastify parses text/plain into a string (log uploads use it); JSON routes want an object.
  if (where === 'body' && (typeof data === 'string' || Buffer.isBuffer(data))) {
    throw new KilnError('UNSUPPORTED_MEDIA_TYPE', 'body must be application/json');
  }
  // Depth first: a schema over `unknown` values would accept anything, however deep.
  const tooDeep = deepestPath(data, where);
  if (tooDeep !== undefined) {
    throw new KilnError('INVALID_ARGUMENT', `${tooDeep}: nested deeper than ${MAX_JSON_DEPTH} levels`);
  }
  const r = schema.safeParse(data ?? (where === 'body' ? undefined : {}));
  if (!r.success) throw new KilnError('INVALID_ARGUMENT', formatZodError(r.error, { at: where }));
  const bad = unstorablePath(r.data, where, new Set(opts.anyText ?? []));
  if (bad !== undefined) throw new KilnError('INVALID_ARGUMENT', bad);
  return r.data as z.infer<S>;
}

/** Checks a request part that no schema describes (an event passed on as it is); see `parseInput`. */
export function checkStorable(data: unknown, where: 'body' | 'query'): void {
  const tooDeep = deepestPath(data, where);
  if (tooDeep !== undefined) {
    throw new KilnError('INVALID_ARGUMENT', `${tooDeep}: nested deeper than ${MAX_JSON_DEPTH} levels`);
  }
  const bad = unstorablePath(data, where, new Set());
  if (bad !== undefined) throw new KilnError('INVALID_ARGUMENT', bad);
}

/** The path of the first value nested deeper than `MAX_JSON_DEPTH`, or undefined. Never recurses past it. */
function deepestPath(v: unknown, path: string, depth = 0): string | undefined {
  if (v === null || typeof v !== 'object') return undefined;
  if (depth >= MAX_JSON_DEPTH) return path;
  const entries: [PropertyKey, unknown][] = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v);
  for (const [k, x] of entries) {
    const found = deepestPath(x, path + pathPart(k), depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** "<path>: contains …" for the first string or key storage cannot hold, or undefined. */
function unstorablePath(v: unknown, path: string, anyText: Set<string>, depth = 0): string | undefined {
  if (typeof v === 'string') {
    const why = unstorableText(v);
    return why === undefined ? undefined : `${path}: ${why}`;
  }
  if (v === null || typeof v !== 'object' || depth > MAX_JSON_DEPTH) return undefined;
  const entries: [PropertyKey, unknown][] = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v);
  for (const [k, x] of entries) {
    const at = path + pathPart(k);
    if (typeof k === 'string') {
      const why = unstorableText(k);
      if (why !== undefined) return `${at}: the key ${why}`;
      if (depth === 0 && anyText.has(k)) continue;
    }
    const found = unstorablePath(x, at, anyText, depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}
