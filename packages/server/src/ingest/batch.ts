import { WardError, maxReadingDepth } from '@ward/core'

/** One reading's fate, in the order it came. */
export type EntryOutcome =
  | { readonly status: 'created'; readonly messageId: string }
  | { readonly status: 'duplicate'; readonly messageId: string }
  | { readonly status: 'conflict'; readonly reason: string; readonly messageId: string }
  | { readonly status: 'rejected'; readonly reason: string; readonly messageId?: string }

/**
 * A batch entry refused for what surrounds its resource, such as a `request` other than
 * `POST Observation`; it is answered, in its place, with this reason.
 */
export class RefusedEntry {
  constructor(readonly reason: string) {}
}

/**
 * The readings in a request body: one FHIR Observation, or the resources of a `batch` Bundle.
 * Throws `ERR_PAYLOAD_INVALID` for anything else, for a Bundle nesting deeper than
 * `maxReadingDepth` outside its entries' resources, and `ERR_PAYLOAD_TOO_LARGE` past
 * `maxEntries`. Entries that are not Observations are kept, to be rejected one by one with a
 * reason; an entry whose `request` is not `POST Observation` becomes a {@link RefusedEntry}.
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
  checkBundleDepth(body)
  return entries.map((entry, index) => {
    if (!isObject(entry)) return undefined
    const request = entry['request']
    if (
      request !== undefined &&
      !(isObject(request) && request['method'] === 'POST' && request['url'] === 'Observation')
    ) {
      return new RefusedEntry(
        `Bundle.entry[${index}].request must be absent or POST Observation: a device only adds readings`,
      )
    }
    return entry['resource']
  })
}

/**
 * Refuses a Bundle nested deeper than a reading may be, without recursion and without looking
 * into the entries' resources, whose depth is each reading's own check.
 */
function checkBundleDepth(bundle: Record<string, unknown>) {
  const entries = new Set(bundle['entry'] as unknown[])
  const pending: { value: unknown; depth: number }[] = [{ value: bundle, depth: 1 }]
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { value, depth } = next
    if (typeof value !== 'object' || value === null) continue
    if (depth > maxReadingDepth) {
      throw new WardError(
        'ERR_PAYLOAD_INVALID',
        `the Bundle nests deeper than the ${maxReadingDepth} levels allowed`,
        { details: { limit: maxReadingDepth } },
      )
    }
    for (const [key, item] of Object.entries(value)) {
      // An entry's resource is a reading, whose depth is checked on its own.
      if (key === 'resource' && entries.has(value)) continue
      pending.push({ value: item, depth: depth + 1 })
    }
  }
}

/**
 * The FHIR `batch-response` Bundle answering a batch: one entry per reading, in order, with
 * `201 Created`, `200 OK` (already stored under that message id), `409 Conflict` (that message
 * id already names a different reading) or `422`, the last two with an OperationOutcome saying
 * why.
 */
export function batchResponse(outcomes: readonly EntryOutcome[]): Record<string, unknown> {
  return {
    resourceType: 'Bundle',
    type: 'batch-response',
    entry: outcomes.map((outcome) => {
      if (outcome.status === 'rejected' || outcome.status === 'conflict') {
        const conflict = outcome.status === 'conflict'
        return {
          response: {
            status: conflict ? '409 Conflict' : '422 Unprocessable Entity',
            outcome: {
              resourceType: 'OperationOutcome',
              issue: [
                {
                  severity: 'error',
                  code: conflict ? 'conflict' : 'business-rule',
                  diagnostics: outcome.reason,
                },
              ],
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
