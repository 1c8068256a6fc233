/**
 * The fixed set of error codes Kiln answers with, over HTTP and inside workflows (as
 * `ApplicationFailure.type`). Pure, so workflows can throw them.
 */
export const ERROR_CODES = [
  'INVALID_ARGUMENT',
  'UNAUTHENTICATED',
  'PERMISSION_DENIED',
  'NOT_FOUND',
  'BUILDER_NOT_FOUND',
  'BUILD_NOT_FOUND',
  'BUILD_IS_LEASED',
  'BUILD_IS_COMPLETED',
  'LEASE_EXPIRED',
  'INVALID_BUILD_STATE',
  'PAYLOAD_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'CONFLICT',
  'UNAVAILABLE',
  'INTERNAL',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** True when `s` is one of Kiln's error codes. */
export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && (ERROR_CODES as readonly string[]).includes(s);
}

/**
 * The one error family of Kiln. Thrown by validators, storage, the clients of the services Kiln
 * calls and the API when something cannot be done; the API maps `code` to an HTTP status. The
 * message is for the caller on 4xx; a 5xx answer never shows it (see src/api/errors.ts), so put what
 * went wrong underneath in `cause`, which is logged.
 */
export class KilnError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'KilnError';
  }
}

/** A service Kiln calls. */
export type Upstream = 'swarming' | 'gerrit';

/**
 * A call to Swarming or Gerrit that failed (`SwarmingRpcError`, `GerritError`). `transient` says
 * whether the same call may succeed later (their 5xx, 429, timeouts, network errors); activities
 * let Temporal retry those and fail the rest for good. The message quotes the service's answer, so
 * an API answer never carries it: callers get UNAVAILABLE or INTERNAL naming the service.
 */
export class UpstreamError extends KilnError {
  constructor(
    readonly upstream: Upstream,
    code: ErrorCode,
    message: string,
    readonly transient: boolean,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'UpstreamError';
  }
}

/**
 * `ApplicationFailure.type`s activities throw besides Kiln's error codes: the one enumerated set, so a
 * workflow (or `nonRetryableErrorTypes`) can name a failure without guessing its spelling.
 */
export const ACTIVITY_FAILURE_TYPES = [
  /** A storage write that can never succeed as it is (see `UNSTORABLE_BUILD_FAILURE`). */
  'UNSTORABLE_BUILD',
  /** Swarming refused a call and retrying cannot help (bad request, denied, not found, malformed answer). */
  'SWARMING_REJECTED',
  /** A Swarming build reached a worker without Swarming settings. */
  'SWARMING_NOT_CONFIGURED',
  /** A verification reached a worker without a gerrit block. */
  'GERRIT_NOT_CONFIGURED',
  /** A schedule, promotion or notification reached a worker without launchpad config. */
  'LAUNCHPAD_NOT_CONFIGURED',
  /** A promotion's git remote did not answer (retried). */
  'REMOTE_UNREACHABLE',
  /** A notification's target was removed from the config. */
  'TARGET_NOT_CONFIGURED',
  /** A notification could not be delivered. */
  'DELIVERY_FAILED',
] as const;

/** A failed Gerrit call, by the Kiln code its answer maps to (`GERRIT_UNAVAILABLE`, `GERRIT_CONFLICT`, …). */
export type GerritFailureType = `GERRIT_${ErrorCode}`;

/** Every `ApplicationFailure.type` Kiln's workflows and activities use. */
export type FailureType = ErrorCode | (typeof ACTIVITY_FAILURE_TYPES)[number] | GerritFailureType;

/** The failure type of a failed Gerrit call with `code`. */
export function gerritFailureType(code: ErrorCode): GerritFailureType {
  return `GERRIT_${code}`;
}

/** Every failure type, listed (for docs and checks). */
export const FAILURE_TYPES: readonly FailureType[] = [
  ...ERROR_CODES,
  ...ACTIVITY_FAILURE_TYPES,
  ...ERROR_CODES.map(gerritFailureType),
];

/** True when `s` is one of Kiln's failure types. */
export function isFailureType(s: unknown): s is FailureType {
  return typeof s === 'string' && (FAILURE_TYPES as readonly string[]).includes(s);
}
