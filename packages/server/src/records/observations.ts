import { randomUUID } from 'node:crypto'

import { CompiledQuery, type Insertable } from 'kysely'

import { WardError, canonicalize, utf8Decode } from '@ward/core'

import type { DataKey, Keyring, RecordPlace } from '../keys/index.js'
import type { Dialect, Transaction } from '../store/index.js'
import { findPatient, patientNotFound } from './patients.js'
import type { ObservationTable } from './tables.js'

/** A FHIR R4 Observation resource, as JSON. Ward stores it whole, sealed. */
export interface FhirObservation {
  readonly resourceType: 'Observation'
  readonly [field: string]: unknown
}

/** One reading to store: where it comes from, what it is, and the resource itself. */
export interface ObservationInput {
  readonly organizationId: string
  /** The patient the device is assigned to, never one the device names itself. */
  readonly patientId: string
  readonly deviceId: string
  /** The device's own id for the message; a device stores a message once. */
  readonly messageId: string
  /**
   * What was measured: a LOINC code, e.g. `8867-4` for heart rate, or any coding in FHIR token
   * form `system|code`, e.g. `urn:iso:std:iso:11073:10101|150456` for an MDC-coded SpO2.
   */
  readonly code: string
  /** ISO 8601 date and time with a zone offset, e.g. `2026-03-01T08:30:00+01:00`. */
  readonly effectiveAt: string
  readonly resource: FhirObservation
  /**
   * `resource` as `JSON.stringify` writes it, when the caller has already serialized it (to
   * check its size, say): it is then stored as given instead of being serialized again.
   */
  readonly resourceJson?: string
}

/** What happened to one input row. */
export interface InsertedObservation {
  /** The stored observation's id: the new one, or the one stored before under this message. */
  readonly id: string
  /** True when stored now; false when the device's message was stored before. */
  readonly created: boolean
  /**
   * True when the message was stored before, or earlier in this call, as a different reading:
   * for another patient, or with another resource (compared as RFC 8785 canonical JSON, so a
   * resend whose keys come in another order is the same reading). The stored one is kept.
   */
  readonly conflicting: boolean
}

/** A stored reading, opened. */
export interface Observation {
  readonly id: string
  readonly patientId: string
  readonly deviceId: string
  readonly messageId: string
  readonly code: string
  /** Effective time in UTC, as stored for range queries; the resource keeps the original. */
  readonly effectiveAt: string
  readonly receivedAt: string
  readonly resource: FhirObservation
}

interface CheckedObservation {
  readonly effectiveAt: string
  readonly resource: Uint8Array
}

type ObservationRow = Insertable<ObservationTable>

/** The table observations are sealed for. */
export const observationTable = 'observations'

/** Largest Observation stored, as JSON bytes. */
export const maxObservationBytes = 65_536

const loincPattern = /^\d{1,7}-\d$/
// A FHIR token: an absolute URI for the code system, a bar, and the code.
const tokenPattern = /^[a-z][a-z0-9+.-]*:[^\s|]{1,200}\|[^\s|]{1,64}$/
const dateTimePattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/
// Nine values a row: a thousand rows stay far below both databases' limits on bound values.
const rowsPerStatement = 1000
const observationColumns = [
  'id',
  'organization_id',
  'patient_id',
  'device_id',
  'message_id',
  'code',
  'effective_at',
  'received_at',
  'sealed_resource',
] as const satisfies readonly (keyof ObservationRow)[]
// Insert statements by dialect and row count. Built by Kysely, the same statement would be
// assembled and compiled again for every batch, one node per bound value; its text depends
// only on these two. Bounded: batches come in a few sizes, and a full cache starts over.
const insertStatements = new Map<string, string>()

/**
 * Stores readings, each sealed under its patient's data key, with only ids, code and
 * times in clear. Idempotent by `(deviceId, messageId)` within the organization: a message
 * stored before — by an earlier call, or earlier in this one — is reported `created: false`
 * with the stored id and is not overwritten. Results follow the input's order. Rows are
 * checked before anything is written; `ERR_INPUT_INVALID` and `ERR_PATIENT_NOT_FOUND` name
 * the row at fault by its index.
 *
 * Built for ingest: one unwrap per patient, a thousand rows per statement, whose text is built
 * once per size and dialect.
 */
export async function insertObservations(
  tx: Transaction,
  dialect: Dialect,
  keyring: Keyring,
  rows: readonly ObservationInput[],
): Promise<InsertedObservation[]> {
  if (rows.length === 0) return []

  const checked = rows.map((row, index) => checkObservation(row, index))
  const dataKeys = await dataKeysOf(tx, keyring, rows)

  const receivedAt = new Date().toISOString()
  // A message repeated within the call is stored once, from its first row.
  const firstRow = new Map<string, number>()
  const values: ObservationRow[] = []
  const valueOf = new Map<string, ObservationRow>()
  rows.forEach((row, index) => {
    const message = messageKey(row)
    if (firstRow.has(message)) return
    firstRow.set(message, index)
    const id = timeOrderedId()
    const { effectiveAt, resource } = checked[index] as CheckedObservation
    const dataKey = dataKeys.get(patientKey(row)) as DataKey
    const clear = {
      id,
      organization_id: row.organizationId,
      patient_id: row.patientId,
      device_id: row.deviceId,
      message_id: row.messageId,
      code: row.code,
      effective_at: effectiveAt,
      received_at: receivedAt,
    }
    const value: ObservationRow = {
      ...clear,
      sealed_resource: dataKey.seal(observationPlace(clear), resource),
    }
    values.push(value)
    valueOf.set(message, value)
  })

  const created = new Set<string>()
  for (let start = 0; start < values.length; start += rowsPerStatement) {
    const chunk = values.slice(start, start + rowsPerStatement)
    const parameters: unknown[] = []
    for (const value of chunk)
      for (const column of observationColumns) parameters.push(value[column])
    const inserted = await tx.executeQuery(
      CompiledQuery.raw(insertStatement(dialect, chunk.length), parameters),
    )
    // Usually every row is new. Only when some message was stored before are the new ones
    // looked up, by the ids just made, which no earlier row can hold.
    if (Number(inserted.numAffectedRows) === chunk.length) {
      for (const value of chunk) created.add(value.id)
    } else {
      const ids = chunk.map((value) => value.id)
      for (const id of await insertedIds(tx, ids)) created.add(id)
    }
  }
  const storedBefore = await storedRows(
    tx,
    values.filter((value) => !created.has(value.id)),
  )

  return rows.map((row, index) => {
    const message = messageKey(row)
    const value = valueOf.get(message) as ObservationRow
    const resource = (checked[index] as CheckedObservation).resource
    if (created.has(value.id)) {
      const first = firstRow.get(message) === index
      const conflicting =
        !first &&
        !sameReading(
          value,
          (checked[firstRow.get(message)!] as CheckedObservation).resource,
          row,
          resource,
        )
      return { id: value.id, created: first, conflicting }
    }
    const stored = storedBefore.get(message)
    if (stored === undefined) {
      // Stored and gone between the insert and the look-up: only a deletion does that.
      throw new WardError('ERR_INTERNAL', `observation ${index} was neither stored nor found`)
    }
    const conflicting = !sameStoredReading(stored, dataKeys.get(patientKey(row)), row, resource)
    return { id: stored.id, created: false, conflicting }
  })
}

/** Whether `row` with JSON `resource` is the reading `kept`, whose JSON is `keptResource`. */
function sameReading(
  kept: Pick<ObservationRow, 'patient_id'>,
  keptResource: Uint8Array,
  row: ObservationInput,
  resource: Uint8Array,
): boolean {
  if (kept.patient_id !== row.patientId) return false
  if (Buffer.compare(keptResource, resource) === 0) return true
  return canonicalize(JSON.parse(utf8Decode(keptResource))) === canonicalize(row.resource)
}

/**
 * Whether `row` is the reading stored before under its message. A stored row that does not
 * open under the patient's key — changed in the database — is not the same reading.
 */
function sameStoredReading(
  stored: ObservationRow,
  dataKey: DataKey | undefined,
  row: ObservationInput,
  resource: Uint8Array,
): boolean {
  if (stored.patient_id !== row.patientId || dataKey === undefined) return false
  let opened: Uint8Array
  try {
    opened = dataKey.open(observationPlace(stored), stored.sealed_resource)
  } catch {
    return false
  }
  return sameReading(stored, opened, row, resource)
}

/**
 * The patient's readings with effective time in `[from, to)` (both optional, ISO 8601),
 * oldest first, opened. Throws `ERR_PATIENT_NOT_FOUND` for a patient this organization does
 * not have, `ERR_DATA_KEY_DESTROYED` once the patient's data key is destroyed, and
 * `ERR_RECORD_UNREADABLE` for a stored reading that is not this patient's — for instance one
 * moved over from another patient's row — or whose row was changed in the database. It fails
 * the whole read: the paged reads of `readings.ts` withhold such a row instead and say so.
 */
export async function readObservations(
  tx: Transaction,
  keyring: Keyring,
  query: {
    readonly organizationId: string
    readonly patientId: string
    readonly from?: string
    readonly to?: string
    readonly limit?: number
  },
): Promise<Observation[]> {
  const from = query.from === undefined ? undefined : utcTime(query.from, 'from')
  const to = query.to === undefined ? undefined : utcTime(query.to, 'to')
  const patient = await findPatient(tx, query.organizationId, query.patientId)
  const dataKey = await keyring.dataKey(
    tx,
    { organizationId: patient.organizationId, dataKeyId: patient.dataKeyId },
    { recheck: true },
  )

  let select = tx
    .selectFrom('observations')
    .selectAll()
    .where('organization_id', '=', patient.organizationId)
    .where('patient_id', '=', patient.id)
    .orderBy('effective_at')
    .orderBy('id')
  if (from !== undefined) select = select.where('effective_at', '>=', from)
  if (to !== undefined) select = select.where('effective_at', '<', to)
  if (query.limit !== undefined) select = select.limit(checkLimit(query.limit))
  const rows = await select.execute()

  return rows.map((row) => openObservation(dataKey, row))
}

/** The clear columns of a reading's row. */
export type ObservationColumns = Omit<ObservationTable, 'sealed_resource'>

/**
 * Where a reading's resource is sealed: its row, with every clear column bound in, so that
 * a row whose patient, device, message id, code or times were changed in the database does
 * not open. Checking costs nothing beyond the opening itself: the columns are authenticated
 * data of the same AES-GCM operation, not a second comparison of the opened resource.
 */
export function observationPlace(row: ObservationColumns): RecordPlace {
  return {
    organizationId: row.organization_id,
    table: observationTable,
    recordId: row.id,
    clearColumns: [
      row.patient_id,
      row.device_id,
      row.message_id,
      row.code,
      row.effective_at,
      row.received_at,
    ],
  }
}

/**
 * Opens a stored reading's row under its patient's data key. Throws `ERR_RECORD_UNREADABLE`
 * (naming the row, never its content) for a row altered in the database or sealed for another.
 */
export function openObservation(dataKey: DataKey, row: ObservationTable): Observation {
  return {
    id: row.id,
    patientId: row.patient_id,
    deviceId: row.device_id,
    messageId: row.message_id,
    code: row.code,
    effectiveAt: row.effective_at,
    receivedAt: row.received_at,
    resource: JSON.parse(
      utf8Decode(dataKey.open(observationPlace(row), row.sealed_resource)),
    ) as FhirObservation,
  }
}

/** Checks one input row; returns its effective time in UTC and its resource as JSON bytes. */
function checkObservation(row: ObservationInput, index: number): CheckedObservation {
  for (const field of ['organizationId', 'patientId', 'deviceId', 'messageId'] as const) {
    const value: unknown = row[field]
    if (typeof value !== 'string' || value.length === 0 || value.length > 200) {
      throw rowInvalid(index, field, 'must be 1–200 characters')
    }
  }
  if (
    typeof row.code !== 'string' ||
    !(loincPattern.test(row.code) || tokenPattern.test(row.code))
  ) {
    throw rowInvalid(index, 'code', 'must be a LOINC code such as 8867-4, or system|code')
  }
  const resource: unknown = row.resource
  if (
    typeof resource !== 'object' ||
    resource === null ||
    Array.isArray(resource) ||
    (resource as { resourceType?: unknown }).resourceType !== 'Observation'
  ) {
    throw rowInvalid(index, 'resource', 'must be a FHIR Observation object')
  }
  // JSON.stringify escapes lone surrogates, so its output always encodes to UTF-8 as it is.
  const json = Buffer.from(row.resourceJson ?? JSON.stringify(resource), 'utf8')
  if (json.length > maxObservationBytes) {
    throw rowInvalid(index, 'resource', `must be at most ${maxObservationBytes} bytes as JSON`)
  }
  let effectiveAt: string
  try {
    effectiveAt = utcTime(row.effectiveAt, 'effectiveAt')
  } catch {
    throw rowInvalid(index, 'effectiveAt', 'must be an ISO 8601 date and time with a zone')
  }
  return { effectiveAt, resource: json }
}

/**
 * The text of an insert of `count` observations that skips messages stored before; `?`
 * placeholders on SQLite, `$1…` on PostgreSQL.
 */
function insertStatement(dialect: Dialect, count: number): string {
  const key = `${dialect} ${count}`
  let text = insertStatements.get(key)
  if (text === undefined) {
    let parameter = 0
    const placeholder = dialect === 'postgres' ? () => `$${(parameter += 1)}` : () => '?'
    const tuples = Array.from(
      { length: count },
      () => `(${observationColumns.map(placeholder).join(', ')})`,
    )
    text =
      `insert into observations (${observationColumns.join(', ')}) values ${tuples.join(', ')} ` +
      'on conflict (organization_id, device_id, message_id) do nothing'
    if (insertStatements.size >= 64) insertStatements.clear()
    insertStatements.set(key, text)
  }
  return text
}

/** Loads, once per patient, the data key of every row's patient, scoped by organization. */
async function dataKeysOf(
  tx: Transaction,
  keyring: Keyring,
  rows: readonly ObservationInput[],
): Promise<Map<string, DataKey>> {
  const byOrganization = new Map<string, Set<string>>()
  for (const row of rows) {
    const patients = byOrganization.get(row.organizationId) ?? new Set<string>()
    patients.add(row.patientId)
    byOrganization.set(row.organizationId, patients)
  }

  const dataKeys = new Map<string, DataKey>()
  for (const [organizationId, patients] of byOrganization) {
    const found = await tx
      .selectFrom('patients')
      .select(['id', 'data_key_id'])
      .where('organization_id', '=', organizationId)
      .where('id', 'in', [...patients])
      .execute()
    for (const patient of found) {
      const dataKey = await keyring.dataKey(tx, { organizationId, dataKeyId: patient.data_key_id })
      dataKeys.set(`${organizationId}\n${patient.id}`, dataKey)
    }
  }

  rows.forEach((row, index) => {
    if (!dataKeys.has(patientKey(row))) {
      const error = patientNotFound(row.organizationId)
      throw new WardError(error.code, `observation ${index}: ${error.message}`, {
        details: { ...error.details, row: index },
      })
    }
  })
  return dataKeys
}

/** Which of `ids`, made for rows just offered to the insert, it stored. */
async function insertedIds(tx: Transaction, ids: readonly string[]): Promise<string[]> {
  const found = await tx.selectFrom('observations').select('id').where('id', 'in', ids).execute()
  return found.map((row) => row.id)
}

/** The rows already stored for messages that this call did not insert, by message. */
async function storedRows(
  tx: Transaction,
  values: readonly { organization_id: string; device_id: string; message_id: string }[],
): Promise<Map<string, ObservationRow>> {
  const byDevice = new Map<string, { organizationId: string; deviceId: string; ids: string[] }>()
  for (const value of values) {
    const device = `${value.organization_id}\n${value.device_id}`
    const entry = byDevice.get(device) ?? {
      organizationId: value.organization_id,
      deviceId: value.device_id,
      ids: [],
    }
    entry.ids.push(value.message_id)
    byDevice.set(device, entry)
  }

  const stored = new Map<string, ObservationRow>()
  for (const { organizationId, deviceId, ids } of byDevice.values()) {
    for (let start = 0; start < ids.length; start += rowsPerStatement) {
      const rows = await tx
        .selectFrom('observations')
        .select(observationColumns)
        .where('organization_id', '=', organizationId)
        .where('device_id', '=', deviceId)
        .where('message_id', 'in', ids.slice(start, start + rowsPerStatement))
        .execute()
      for (const row of rows) {
        stored.set(`${organizationId}\n${deviceId}\n${row.message_id}`, row)
      }
    }
  }
  return stored
}

function messageKey(row: ObservationInput): string {
  return `${row.organizationId}\n${row.deviceId}\n${row.messageId}`
}

function patientKey(row: ObservationInput): string {
  return `${row.organizationId}\n${row.patientId}`
}

/**
 * A UUID version 7 (RFC 9562): milliseconds since 1970, then random bits. Ids of readings
 * arriving together sort together, so the primary key index grows at its end instead of being
 * written at random places; it says nothing the clear received time does not.
 *
 * The random bits are those of a version 4 UUID from `randomUUID`, which Node draws from the
 * CSPRNG in blocks rather than once per call: versions 4 and 7 lay out their random bits and
 * variant alike after the first 48 bits, so only the time and the version digit are replaced.
 */
function timeOrderedId(): string {
  const random = randomUUID()
  const time = Date.now().toString(16).padStart(12, '0')
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${random.slice(15)}`
}

function utcTime(text: string, field: string): string {
  const time = typeof text === 'string' && dateTimePattern.test(text) ? Date.parse(text) : NaN
  if (Number.isNaN(time)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `${field} must be an ISO 8601 date and time with a zone`,
      { details: { field } },
    )
  }
  return new Date(time).toISOString()
}

function checkLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1 || limit > 100_000) {
    throw new WardError('ERR_INPUT_INVALID', 'limit must be an integer 1–100000', {
      details: { field: 'limit' },
    })
  }
  return limit
}

function rowInvalid(index: number, field: string, rule: string): WardError {
  return new WardError('ERR_INPUT_INVALID', `observation ${index}: ${field} ${rule}`, {
    details: { row: index, field },
  })
}
