/**
 * Kiln's HTTP error contract: every error is `{code, message}` with a code from the fixed set, and
 * one exhaustive code → status map. 5xx answers never carry internals: an INTERNAL answer says only
 * "internal error", a failed call to Swarming or Gerrit only names the service, and an UNAVAILABLE
 * answer carries the message Kiln wrote for the caller (what went wrong underneath is the error's
 * `cause`, which goes to the log with the request).
 */
import { type ErrorCode, KilnError, type Upstream, UpstreamError } from '../domain/errors.ts';
import { isStorageUnavailable, unstorableReason } from '../storage/errors.ts';

/** HTTP status for every error code. */
export const HTTP_STATUS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  BUILDER_NOT_FOUND: 404,
  BUILD_NOT_FOUND: 404,
  BUILD_IS_LEASED: 409,
  BUILD_IS_COMPLETED: 409,
  LEASE_EXPIRED: 409,
  INVALID_BUILD_STATE: 409,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  UNAVAILABLE: 503,
  INTERNAL: 500,
};

/** The JSON body of every error answer. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
}

/** Fastify's own errors (parsing, limits) mapped to Kiln codes. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INVALID_ARGUMENT',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_ARGUMENT',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_ARGUMENT',
  FST_ERR_BAD_URL: 'INVALID_ARGUMENT',
  FST_ERR_MAX_PARAM_LENGTH: 'INVALID_ARGUMENT',
  FST_ERR_ASYNC_CONSTRAINT: 'INVALID_ARGUMENT',
};

/** What an INTERNAL answer says, whatever failed. */
export const INTERNAL_MESSAGE = 'internal error';

const UPSTREAM_NAMES: Record<Upstream, string> = { swarming: 'Swarming', gerrit: 'Gerrit' };

/** A failed Swarming or Gerrit call as an answer: the service named, its words left in the log. */
function upstreamAnswer(e: UpstreamError): ErrorBody {
  const name = UPSTREAM_NAMES[e.upstream];
  return e.transient
    ? { code: 'UNAVAILABLE', message: `${name} did not answer in time or is overloaded; retry` }
    : { code: 'INTERNAL', message: `${name} refused a call Kiln made (the details are in Kiln's log)` };
}

/** Turns anything thrown by a handler into a status and body; unknown errors become a bare INTERNAL. */
export function toErrorResponse(e: unknown): { status: number; body: ErrorBody; internal: boolean } {
  if (e instanceof UpstreamError) {
    const body = upstreamAnswer(e);
    return { status: HTTP_STATUS[body.code], body, internal: true };
  }
  if (e instanceof KilnError) {
    if (e.code === 'INTERNAL') {
      return { status: HTTP_STATUS.INTERNAL, body: { code: 'INTERNAL', message: INTERNAL_MESSAGE }, internal: true };
    }
    const status = HTTP_STATUS[e.code];
    // An outage is logged (with its cause) like a bug; its message was written for the caller.
    return { status, body: { code: e.code, message: e.message }, internal: status >= 500 };
  }
  const fe = e as { code?: string; statusCode?: number; message?: string };
  const mapped = fe.code !== undefined ? FASTIFY_CODES[fe.code] : undefined;
  if (mapped)
    return {
      status: HTTP_STATUS[mapped],
      body: { code: mapped, message: (fe.message ?? mapped).slice(0, 300) },
      internal: false,
    };
  if (e instanceof SyntaxError)
    return {
      status: 400,
      body: { code: 'INVALID_ARGUMENT', message: `body is not valid JSON: ${e.message}` },
      internal: false,
    };
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return { status: 400, body: { code: 'INVALID_ARGUMENT', message: fe.message ?? 'bad request' }, internal: false };
  }
  // Outages are the caller's to retry, not bugs: storage down, Temporal unreachable (a call that
  // went around BuildService's own mapping).
  if (isStorageUnavailable(e)) {
    return {
      status: 503,
      body: { code: 'UNAVAILABLE', message: 'storage is unreachable; retry' },
      internal: true,
    };
  }
  const grpc = (e as { code?: unknown; cause?: { code?: unknown } }) ?? {};
  const grpcCode = typeof grpc.cause?.code === 'number' ? grpc.cause.code : undefined;
  if (grpcCode === 14 || grpcCode === 4) {
    return { status: 503, body: { code: 'UNAVAILABLE', message: 'Temporal is unreachable; retry' }, internal: true };
  }
  // Input that got past validation but that storage cannot take: the request's fault, not Kiln's.
  const unstorable = unstorableReason(e);
  if (unstorable !== undefined && !(e instanceof RangeError)) {
    return {
      status: 400,
      body: { code: 'INVALID_ARGUMENT', message: `a value of this request cannot be stored (${unstorable})` },
      internal: true,
    };
  }
  return { status: 500, body: { code: 'INTERNAL', message: INTERNAL_MESSAGE }, internal: true };
}
