/**
 * What a storage error means for its caller: a write storage can never accept as it is (retrying
 * cannot help), or storage being unreachable for now (retrying later can). PGlite and node-postgres
 * both carry PostgreSQL's SQLSTATE in `code`.
 */

/** SQLSTATE classes of errors that the same write will always get: 22 data exception, 54 program limit exceeded. */
const UNSTORABLE_CLASSES = /^(22|54)[0-9A-Z]{3}$/;

/**
 * SQLSTATE classes and socket errors that mean storage is not reachable right now: 08 connection
 * exception, 53 insufficient resources, 57P operator intervention (shutdown, cannot connect now).
 */
const UNAVAILABLE_SQLSTATE = /^(08[0-9A-Z]{3}|53[0-9A-Z]{3}|57P0[1-4])$/;
const UNAVAILABLE_ERRNO = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);

function codeOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Why storage can never accept the write that failed with `e`, or undefined when retrying may help. */
export function unstorableReason(e: unknown): string | undefined {
  const code = codeOf(e);
  const message = e instanceof Error ? e.message : String(e);
  if (code !== undefined && UNSTORABLE_CLASSES.test(code)) return `storage error ${code}: ${message}`;
  // Serializing a value nested too deep for the driver fails the same way every time.
  if (e instanceof RangeError) return `storage could not serialize the build: ${message}`;
  return undefined;
}

/** True when `e` says storage is unreachable or refusing connections for now. */
export function isStorageUnavailable(e: unknown): boolean {
  const code = codeOf(e);
  if (code !== undefined && (UNAVAILABLE_SQLSTATE.test(code) || UNAVAILABLE_ERRNO.has(code))) return true;
  const message = e instanceof Error ? e.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/.test(
    message,
  );
}
