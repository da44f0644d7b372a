import { WardError } from '@ward/core'

/** The identifier system under which a device names each of its readings. */
export const messageIdSystem = 'urn:ward:device-message-id'

/** A FHIR R4 Identifier, as much of it as the device agent reads. */
export interface Identifier {
  system?: string
  value?: string
  [element: string]: unknown
}

/**
 * A FHIR R4 Observation as a device sends it. Only the elements the agent itself touches are
 * typed; every other element passes through untouched.
 */
export interface Observation {
  resourceType: 'Observation'
  identifier?: Identifier[]
  effectiveDateTime?: string
  effectivePeriod?: { start?: string; end?: string; [element: string]: unknown }
  [element: string]: unknown
}

/** One entry of a batch Bundle, as the device endpoint expects it. */
export interface BatchEntry {
  resource: Observation
  request: { method: 'POST'; url: 'Observation' }
}

/** A FHIR batch Bundle of Observations. */
export interface BatchBundle {
  resourceType: 'Bundle'
  type: 'batch'
  entry: BatchEntry[]
}

/** What Ward answered for one entry of a batch: the HTTP status and, when refused, why. */
export interface EntryAnswer {
  status: number
  reason?: string
}

/** True when `value` is a JSON object whose `resourceType` is `Observation`. */
export function isObservation(value: unknown): value is Observation {
  return isRecord(value) && value['resourceType'] === 'Observation'
}

/**
 * Returns a copy of `observation` whose identifiers hold exactly one device message id,
 * `messageId`; any message id it carried before is replaced, other identifiers are kept.
 */
export function withMessageId(observation: Observation, messageId: string): Observation {
  const others = (observation.identifier ?? []).filter(
    (identifier) => identifier.system !== messageIdSystem,
  )
  return { ...observation, identifier: [...others, { system: messageIdSystem, value: messageId }] }
}

/** The device message id an Observation carries, if it carries one. */
export function messageIdOf(observation: Observation): string | undefined {
  const found = observation.identifier?.find((identifier) => identifier.system === messageIdSystem)
  return typeof found?.value === 'string' ? found.value : undefined
}

/**
 * The Observations in a JSON document: the document itself when it is one, the entries of a
 * Bundle (of any type) in order, or the members of an array. Throws `ERR_INPUT_INVALID` naming
 * the first entry that is not an Observation, or when there is none at all.
 */
export function observationsIn(document: unknown): Observation[] {
  let candidates: unknown[]
  if (Array.isArray(document)) {
    candidates = document
  } else if (isRecord(document) && document['resourceType'] === 'Bundle') {
    const entries = Array.isArray(document['entry']) ? document['entry'] : []
    candidates = entries.map((entry: unknown) => (isRecord(entry) ? entry['resource'] : undefined))
  } else {
    candidates = [document]
  }

  if (candidates.length === 0) {
    throw new WardError('ERR_INPUT_INVALID', 'the document holds no Observation')
  }
  candidates.forEach((candidate, index) => {
    if (!isObservation(candidate)) {
      throw new WardError('ERR_INPUT_INVALID', `entry ${index} is not a FHIR Observation`, {
        details: { field: 'resourceType', index },
      })
    }
  })
  return candidates as Observation[]
}

/** A batch Bundle posting each Observation, in the order given. */
export function batchBundle(observations: readonly Observation[]): BatchBundle {
  return {
    resourceType: 'Bundle',
    type: 'batch',
    entry: observations.map((resource) => ({
      resource,
      request: { method: 'POST', url: 'Observation' },
    })),
  }
}

/**
 * Reads a `batch-response` Bundle answering a batch of `expected` entries: one answer per entry,
 * in order. Throws `ERR_INPUT_INVALID` when the answer is not such a Bundle or has a different
 * number of entries, because then nothing can be said about any single reading.
 */
export function readBatchResponse(body: unknown, expected: number): EntryAnswer[] {
  if (!isRecord(body) || body['resourceType'] !== 'Bundle' || body['type'] !== 'batch-response') {
    throw malformedAnswer('the answer is not a batch-response Bundle', 'type')
  }
  const entries = Array.isArray(body['entry']) ? body['entry'] : []
  if (entries.length !== expected) {
    throw malformedAnswer(
      `the batch-response has ${entries.length} entries for ${expected} readings`,
      'entry',
    )
  }

  return entries.map((entry: unknown, index): EntryAnswer => {
    const response = isRecord(entry) ? entry['response'] : undefined
    const status = isRecord(response) ? response['status'] : undefined
    const code = typeof status === 'string' ? Number.parseInt(status, 10) : Number.NaN
    if (!Number.isInteger(code)) {
      throw malformedAnswer(`entry ${index} has no response status`, 'entry.response.status')
    }
    const reason = isRecord(response) ? outcomeText(response['outcome']) : undefined
    return reason === undefined ? { status: code } : { status: code, reason }
  })
}

/** The issues of an OperationOutcome as one short line, or undefined when there are none. */
export function outcomeText(outcome: unknown): string | undefined {
  if (!isRecord(outcome) || !Array.isArray(outcome['issue'])) return undefined
  const parts = outcome['issue'].flatMap((issue: unknown) => {
    if (!isRecord(issue)) return []
    const details = isRecord(issue['details']) ? issue['details']['text'] : undefined
    const text = issue['diagnostics'] ?? details
    const code = typeof issue['code'] === 'string' ? issue['code'] : 'issue'
    return [typeof text === 'string' ? `${code}: ${text}` : code]
  })
  return parts.length === 0 ? undefined : parts.join('; ')
}

/** True for a plain JSON object (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function malformedAnswer(message: string, field: string): WardError {
  return new WardError('ERR_INPUT_INVALID', message, { details: { field } })
}
