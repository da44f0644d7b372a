import { WardError } from '@ward/core'

/** One reading's fate, in the order it came. */
export type EntryOutcome =
  | { readonly status: 'created'; readonly messageId: string }
  | { readonly status: 'duplicate'; readonly messageId: string }
  | { readonly status: 'rejected'; readonly reason: string; readonly messageId?: string }

/**
 * The readings in a request body: one FHIR Observation, or the resources of a `batch` Bundle.
 * Throws `ERR_PAYLOAD_INVALID` for anything else and `ERR_PAYLOAD_TOO_LARGE` past `maxEntries`;
 * entries that are not Observations are kept, to be rejected one by one with a reason.
 */
export function readingsOf(body: unknown, maxEntries: number): unknown[] {
  if (!isObject(body)) {
    throw new WardError('ERR_PAYLOAD_INVALID', 'body must be a FHIR Observation or a batch Bundle')
  }
  if (body['resourceType'] === 'Observation') return [body]
  if (body['resourceType'] !== 'Bundle' || body['type'] !== 'batch') {
    throw new WardError(
      'ERR_PAYLOAD_INVALID',
      'body must be a FHIR Observation or a Bundle of type batch',
    )
  }
  const entries = body['entry']
  if (!Array.isArray(entries) || entries.length === 0) {
    throw new WardError('ERR_PAYLOAD_INVALID', 'Bundle.entry must list at least one reading')
  }
  if (entries.length > maxEntries) {
    throw new WardError(
      'ERR_PAYLOAD_TOO_LARGE',
      `a batch may hold at most ${maxEntries} readings; this one holds ${entries.length}`,
      { details: { limit: maxEntries, entries: entries.length } },
    )
  }
  return entries.map((entry) => (isObject(entry) ? entry['resource'] : undefined))
}

/**
 * The FHIR `batch-response` Bundle answering a batch: one entry per reading, in order, with
 * `201 Created`, `200 OK` (already stored under that message id) or `422` and an
 * OperationOutcome saying why.
 */
export function batchResponse(outcomes: readonly EntryOutcome[]): Record<string, unknown> {
  return {
    resourceType: 'Bundle',
    type: 'batch-response',
    entry: outcomes.map((outcome) => {
      if (outcome.status === 'rejected') {
        return {
          response: {
            status: '422 Unprocessable Entity',
            outcome: {
              resourceType: 'OperationOutcome',
              issue: [{ severity: 'error', code: 'business-rule', diagnostics: outcome.reason }],
            },
          },
        }
      }
      return { response: { status: outcome.status === 'created' ? '201 Created' : '200 OK' } }
    }),
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
