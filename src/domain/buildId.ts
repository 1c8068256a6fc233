/**
 * Build IDs: int64 decimal strings that decrease with time, so a lexicographic-by-number sort
 * puts the newest build first, generated without a database round trip (Buildbucket's scheme:
 * the complement of the millisecond timestamp in the high bits, random bits below).
 */

const TIME_BITS = 43n;
const RANDOM_BITS = 16n;
const VERSION_BITS = 4n;
const MAX_TIME = (1n << TIME_BITS) - 1n;
const BUILD_ID_VERSION = 1n;

/**
 * Makes a new build ID for `nowMs`. `random16` is any integer in [0, 65535]; workflows pass a value
 * from the SDK's deterministic `Math.random`, Node code from `crypto`.
 */
export function newBuildId(nowMs: number, random16: number): string {
  const inverted = MAX_TIME - BigInt(Math.floor(nowMs));
  const id =
    (inverted << (RANDOM_BITS + VERSION_BITS)) | (BigInt(random16 & 0xffff) << VERSION_BITS) | BUILD_ID_VERSION;
  return id.toString();
}

/** The creation time (ms since epoch) encoded in a build ID. */
export function buildIdTime(id: string): number {
  const inverted = BigInt(id) >> (RANDOM_BITS + VERSION_BITS);
  return Number(MAX_TIME - inverted);
}

/** True for a string that could be a Kiln build ID (positive int64 in decimal). */
export function isBuildId(s: string): boolean {
  if (!/^[1-9][0-9]{0,18}$/.test(s)) return false;
  return BigInt(s) <= 0x7fffffffffffffffn;
}

/** The Temporal workflow ID of a patchset's change verification. */
export function verificationWorkflowId(host: string, change: number, patchset: number): string {
  return `verify/${host}/${change}/${patchset}`;
}

/** The Temporal workflow ID of a build. */
export function buildWorkflowId(id: string): string {
  return `build/${id}`;
}
