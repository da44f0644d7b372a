import type { Duplex } from 'node:stream'

import type { FastifyReply, FastifyRequest } from 'fastify'

import { WardError, isWardError, type WardErrorCode } from '@ward/core'

import type { AddressRateLimit } from './rate-limit.js'

/** HTTP status for every error code: decided here and nowhere else. */
const statusOf: Record<WardErrorCode, number> = {
  ERR_CONFIG_INVALID: 500,
  ERR_NOT_INITIALIZED: 503,
  ERR_ALREADY_INITIALIZED: 409,
  ERR_KEY_UNAVAILABLE: 503,
  ERR_KEY_INVALID: 500,
  ERR_DATA_KEY_DESTROYED: 410,
  ERR_RECORD_UNREADABLE: 500,
  ERR_PATIENT_NOT_FOUND: 404,
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
  ERR_AUTHORITY_EXISTS: 409,
  ERR_AUTHORITY_NOT_FOUND: 404,
  ERR_CSR_INVALID: 400,
  ERR_CSR_SIGNATURE_INVALID: 400,
  ERR_KEY_ALGORITHM_UNSUPPORTED: 400,
  ERR_CERTIFICATE_INVALID: 400,
  ERR_CERTIFICATE_UNTRUSTED: 401,
  ERR_CERTIFICATE_UNKNOWN: 401,
  ERR_CERTIFICATE_EXPIRED: 401,
  ERR_CERTIFICATE_REVOKED: 403,
  ERR_CERTIFICATE_SUSPENDED: 403,
  ERR_CRL_INVALID: 400,
  ERR_CRL_ROLLBACK: 409,
  ERR_SIGNATURE_INVALID: 401,
  ERR_INPUT_INVALID: 400,
  ERR_READING_REJECTED: 422,
  ERR_DEVICE_NOT_FOUND: 404,
  ERR_DEVICE_MODEL_NOT_FOUND: 404,
  ERR_DEVICE_EXISTS: 409,
  ERR_DEVICE_STATE: 409,
  ERR_ENROLLMENT_REFUSED: 403,
  ERR_COMMAND_NOT_FOUND: 404,
  ERR_ROLLOUT_NOT_FOUND: 404,
  ERR_ROLLOUT_STATE: 409,
  ERR_PAYLOAD_INVALID: 400,
  ERR_NOT_FOUND: 404,
  ERR_CARE_TEAM_EXISTS: 409,
  ERR_REVIEW_CLOSED: 409,
  ERR_LIMIT_REACHED: 409,
  ERR_UNAUTHENTICATED: 401,
  ERR_ACCESS_DENIED: 403,
  ERR_RATE_LIMITED: 429,
  ERR_PAYLOAD_TOO_LARGE: 413,
  ERR_STORE_UNAVAILABLE: 503,
  ERR_UPDATE_METADATA_INVALID: 400,
  ERR_UPDATE_REPOSITORY_NOT_FOUND: 404,
  ERR_RELEASE_NOT_FOUND: 404,
  ERR_RELEASE_WITHDRAWN: 409,
  ERR_UPDATE_REFUSED: 422,
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

/**
 * The `Retry-After` header value, in seconds, for an error that says when to try again: every
 * `ERR_RATE_LIMITED` does, in `details.retryAfterSeconds` (a rate limit's window, a sign-in
 * throttle's block). Undefined for any other error.
 */
export function retryAfterOf(error: unknown): string | undefined {
  if (!isWardError(error, 'ERR_RATE_LIMITED')) return undefined
  const seconds = error.details['retryAfterSeconds']
  return typeof seconds === 'number' && Number.isFinite(seconds)
    ? String(Math.max(1, Math.ceil(seconds)))
    : undefined
}

function titleOf(status: number): string {
  const titles: Record<number, string> = {
    400: 'Bad Request',
    401: 'Unauthorized',
    403: 'Forbidden',
    404: 'Not Found',
    409: 'Conflict',
    410: 'Gone',
    413: 'Content Too Large',
    422: 'Unprocessable Content',
    429: 'Too Many Requests',
    500: 'Internal Server Error',
    503: 'Service Unavailable',
  }
  return titles[status] ?? 'Error'
}

/**
 * Turns the web framework's own errors into Ward's: a body over the limit, a media type no
 * parser accepts, a body that is not JSON, and any other client error. Anything else passes
 * through unchanged, for {@link toProblem} to hide.
 */
export function translateFrameworkError(error: unknown): unknown {
  if (error instanceof WardError) return error
  const framework = error as { code?: string; statusCode?: number }
  switch (framework.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new WardError('ERR_PAYLOAD_TOO_LARGE', 'request body is larger than allowed')
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new WardError(
        'ERR_PAYLOAD_INVALID',
        'request body must be JSON (application/json or application/fhir+json)',
      )
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new WardError('ERR_PAYLOAD_INVALID', 'request body is empty; send JSON')
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new WardError('ERR_PAYLOAD_INVALID', 'request body is not valid JSON')
  }
  if (framework.statusCode === 429) return new WardError('ERR_RATE_LIMITED', 'too many requests')
  if (
    framework.statusCode !== undefined &&
    framework.statusCode >= 400 &&
    framework.statusCode < 500
  ) {
    return new WardError('ERR_INPUT_INVALID', 'request is malformed')
  }
  return error
}

/**
 * What the service log keeps of an unexpected error: its type, its code (a SQLSTATE, a Node
 * error code) and where it was thrown — not its message, which may quote data.
 */
export function errorSummary(error: unknown): Record<string, string> {
  if (error instanceof WardError) return { code: error.code, message: error.message }
  if (!(error instanceof Error)) return { type: typeof error }
  const frames = (error.stack ?? '')
    .split('\n')
    .slice(1, 6)
    .map((line) => line.trim())
  const code = (error as { code?: unknown }).code
  return {
    type: error.name,
    ...(typeof code === 'string' ? { code } : {}),
    stack: frames.join(' | '),
  }
}

/**
 * Answers a request Node's HTTP parser refused before the framework saw it (headers too large,
 * malformed) with problem details, then closes the connection.
 */
export function answerClientError(error: Error, socket: Duplex): void {
  const tooLarge = (error as { code?: string }).code === 'HPE_HEADER_OVERFLOW'
  const status = tooLarge ? 431 : 400
  const title = tooLarge ? 'Request Header Fields Too Large' : 'Bad Request'
  const body = JSON.stringify({
    type: 'urn:ward:error:ERR_INPUT_INVALID',
    title,
    status,
    detail: tooLarge ? 'request headers are larger than allowed' : 'request is malformed',
    code: 'ERR_INPUT_INVALID',
  })
  if (socket.writable) {
    socket.end(
      `HTTP/1.1 ${status} ${title}\r\ncontent-type: application/problem+json\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    )
  }
}

/**
 * Answers what the router refuses before any hook runs — a URL that does not decode, a path
 * segment longer than any id Ward issues — as problem details with the headers every answer
 * carries, after the per-address rate limit, and logs one line for it by route, never by URL
 * (a path may hold a pseudonym). A segment too long to be an id names nothing: 404, as any
 * unknown resource.
 */
export function frameworkErrorHandler(
  rateLimit: AddressRateLimit,
): (error: Error, request: FastifyRequest, reply: FastifyReply) => void {
  return (error, request, reply) => {
    let answer: WardError
    try {
      rateLimit.take(request.ip)
      answer =
        (error as { code?: string }).code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? new WardError('ERR_NOT_FOUND', 'no such resource')
          : new WardError('ERR_INPUT_INVALID', 'the URL is malformed')
    } catch (limited) {
      answer = limited as WardError
      reply.header('retry-after', String(answer.details['retryAfterSeconds']))
    }
    const problem = toProblem(answer, request.id)
    request.log.info(
      { method: request.method, route: '(unmatched)', status: problem.status },
      'request',
    )
    void reply
      .code(problem.status)
      .header('x-request-id', request.id)
      .header('strict-transport-security', 'max-age=63072000')
      .header('x-content-type-options', 'nosniff')
      .header('cache-control', 'no-store')
      .type('application/problem+json')
      .send(problem)
  }
}
