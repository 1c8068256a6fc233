/** zod at the edge: parse request parts, or answer INVALID_ARGUMENT naming the field. */
import { type z } from 'zod';
import { KilnError } from '../domain/errors.ts';

/** Parses `data` (the request's `where`: body, query, params) or throws INVALID_ARGUMENT. */
export function parseInput<S extends z.ZodType>(
  schema: S,
  data: unknown,
  where: 'body' | 'query' | 'params',
): z.infer<S> {
  // Fastify parses text/plain into a string (log uploads use it); JSON routes want an object.
  if (where === 'body' && (typeof data === 'string' || Buffer.isBuffer(data))) {
    throw new KilnError('UNSUPPORTED_MEDIA_TYPE', 'body must be application/json');
  }
  const r = schema.safeParse(data ?? (where === 'body' ? undefined : {}));
  if (r.success) return r.data;
  const first = r.error.issues[0];
  const path = first?.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('') ?? '';
  const more = r.error.issues.length > 1 ? ` (and ${r.error.issues.length - 1} more)` : '';
  throw new KilnError('INVALID_ARGUMENT', `${where}${path}: ${first?.message ?? 'invalid'}${more}`);
}
