import { isWardError, type WardErrorCode } from '@ward/core'

/** HTTP status for every error code: decided here and nowhere else. */
const statusOf: Record<WardErrorCode, number> = {
  ERR_CONFIG_INVALID: 500,
  ERR_NOT_INITIALIZED: 503,
  ERR_ALREADY_INITIALIZED: 409,
  ERR_KEY_UNAVAILABLE: 503,
  ERR_KEY_INVALID: 500,
  ERR_JSON_NOT_CANONICAL: 400,
  ERR_ENCODING_INVALID: 400,
  ERR_NOTE_MALFORMED: 400,
  ERR_NOTE_UNVERIFIED: 400,
  ERR_VERIFIER_KEY_INVALID: 400,
  ERR_CHECKPOINT_MALFORMED: 400,
  ERR_PROOF_INVALID: 400,
  ERR_PROOF_RANGE: 400,
  ERR_LOG_INVALID: 500,
  ERR_AUDIT_EVENT_INVALID: 500,
  ERR_AUDIT_LOG_NOT_FOUND: 404,
  ERR_ORGANIZATION_EXISTS: 409,
  ERR_ORGANIZATION_NOT_FOUND: 404,
  ERR_INPUT_INVALID: 400,
  ERR_NOT_FOUND: 404,
  ERR_UNAUTHENTICATED: 401,
  ERR_ACCESS_DENIED: 403,
  ERR_RATE_LIMITED: 429,
  ERR_PAYLOAD_TOO_LARGE: 413,
  ERR_STORE_UNAVAILABLE: 503,
  ERR_INTERNAL: 500,
}

/** An RFC 9457 problem details object, with Ward's stable code and the request id. */
export interface Problem {
  readonly type: string
  readonly title: string
  readonly status: number
  readonly detail: string
  readonly code: WardErrorCode
  readonly requestId: string
}

/**
 * Turns any thrown value into problem details. Ward's own errors keep their code and message
 * (which never carry PHI); errors from elsewhere become `ERR_INTERNAL` with a generic message,
 * because their text may hold anything.
 */
export function toProblem(error: unknown, requestId: string): Problem {
  if (isWardError(error)) {
    const status = statusOf[error.code]
    return {
      type: `urn:ward:error:${error.code}`,
      title: titleOf(status),
      status,
      detail:
        status >= 500 && error.code === 'ERR_LOG_INVALID'
          ? 'audit log failed a consistency check'
          : error.message,
      code: error.code,
      requestId,
    }
  }
  return {
    type: 'urn:ward:error:ERR_INTERNAL',
    title: titleOf(500),
    status: 500,
    detail: 'internal error; the request id identifies it in the service log',
    code: 'ERR_INTERNAL',
    requestId,
  }
}

function titleOf(status: number): string {
  const titles: Record<number, string> = {
    400: 'Bad Request',
    401: 'Unauthorized',
    403: 'Forbidden',
    404: 'Not Found',
    409: 'Conflict',
    413: 'Content Too Large',
    429: 'Too Many Requests',
    500: 'Internal Server Error',
    503: 'Service Unavailable',
  }
  return titles[status] ?? 'Error'
}
