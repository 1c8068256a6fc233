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
 * The one error class of Kiln's domain. Thrown by validators, storage and the API when a request
 * cannot be served; the API maps `code` to an HTTP status.
 */
export class KilnError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'KilnError';
  }
}
