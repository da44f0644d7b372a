/**
 * Stable machine-readable error codes. A code never changes meaning once published: clients,
 * operators' alert rules and tests match on it. HTTP status for each code is decided in one
 * place, in the server's error mapping.
 */
export type WardErrorCode =
  | 'ERR_CONFIG_INVALID'
  | 'ERR_NOT_INITIALIZED'
  | 'ERR_ALREADY_INITIALIZED'
  | 'ERR_KEY_UNAVAILABLE'
  | 'ERR_KEY_INVALID'
  | 'ERR_DATA_KEY_DESTROYED'
  | 'ERR_RECORD_UNREADABLE'
  | 'ERR_PATIENT_NOT_FOUND'
  | 'ERR_JSON_NOT_CANONICAL'
  | 'ERR_ENCODING_INVALID'
  | 'ERR_NOTE_MALFORMED'
  | 'ERR_NOTE_UNVERIFIED'
  | 'ERR_VERIFIER_KEY_INVALID'
  | 'ERR_CHECKPOINT_MALFORMED'
  | 'ERR_PROOF_INVALID'
  | 'ERR_PROOF_RANGE'
  | 'ERR_LOG_INVALID'
  | 'ERR_AUDIT_EVENT_INVALID'
  | 'ERR_AUDIT_LOG_NOT_FOUND'
  | 'ERR_ORGANIZATION_EXISTS'
  | 'ERR_ORGANIZATION_NOT_FOUND'
  | 'ERR_AUTHORITY_EXISTS'
  | 'ERR_AUTHORITY_NOT_FOUND'
  | 'ERR_CSR_INVALID'
  | 'ERR_CSR_SIGNATURE_INVALID'
  | 'ERR_KEY_ALGORITHM_UNSUPPORTED'
  | 'ERR_CERTIFICATE_INVALID'
  | 'ERR_CERTIFICATE_UNTRUSTED'
  | 'ERR_CERTIFICATE_UNKNOWN'
  | 'ERR_CERTIFICATE_EXPIRED'
  | 'ERR_CERTIFICATE_REVOKED'
  | 'ERR_CERTIFICATE_SUSPENDED'
  | 'ERR_CRL_INVALID'
  | 'ERR_CRL_ROLLBACK'
  | 'ERR_SIGNATURE_INVALID'
  | 'ERR_INPUT_INVALID'
  | 'ERR_READING_REJECTED'
  | 'ERR_DEVICE_NOT_FOUND'
  | 'ERR_DEVICE_MODEL_NOT_FOUND'
  | 'ERR_DEVICE_EXISTS'
  | 'ERR_DEVICE_STATE'
  | 'ERR_ENROLLMENT_REFUSED'
  | 'ERR_COMMAND_NOT_FOUND'
  | 'ERR_ROLLOUT_NOT_FOUND'
  | 'ERR_ROLLOUT_STATE'
  | 'ERR_PAYLOAD_INVALID'
  | 'ERR_NOT_FOUND'
  | 'ERR_CARE_TEAM_EXISTS'
  | 'ERR_REVIEW_CLOSED'
  | 'ERR_LIMIT_REACHED'
  | 'ERR_UNAUTHENTICATED'
  | 'ERR_ACCESS_DENIED'
  | 'ERR_RATE_LIMITED'
  | 'ERR_PAYLOAD_TOO_LARGE'
  | 'ERR_STORE_UNAVAILABLE'
  | 'ERR_UPDATE_METADATA_INVALID'
  | 'ERR_UPDATE_REPOSITORY_NOT_FOUND'
  | 'ERR_RELEASE_NOT_FOUND'
  | 'ERR_RELEASE_WITHDRAWN'
  | 'ERR_UPDATE_REFUSED'
  | 'ERR_INTERNAL'

/** Structured, PHI-free facts about an error: field names, limits, indexes, paths. */
export type WardErrorDetails = Readonly<Record<string, string | number | boolean | null>>

/**
 * The one error type Ward throws on purpose. `message` is short and names the field or rule
 * at fault; it must never contain PHI, secrets or key material, because it may be shown to a
 * caller or written to a log.
 */
export class WardError extends Error {
  readonly code: WardErrorCode
  readonly details: WardErrorDetails

  constructor(
    code: WardErrorCode,
    message: string,
    options: { cause?: unknown; details?: WardErrorDetails } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'WardError'
    this.code = code
    this.details = options.details ?? {}
  }
}

/** True when `error` is a {@link WardError}, optionally with the given code. */
export function isWardError(error: unknown, code?: WardErrorCode): error is WardError {
  return error instanceof WardError && (code === undefined || error.code === code)
}

/**
 * `word` with its indefinite article, for messages naming a state: `an active device`, `a
 * suspended device`. Ward's states are plain English words, so the first letter decides.
 */
export function withArticle(word: string): string {
  return `${/^[aeiou]/i.test(word) ? 'an' : 'a'} ${word}`
}
