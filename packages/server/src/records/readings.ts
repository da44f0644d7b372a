import { sql } from 'kysely'

import { WardError, isWardError } from '@ward/core'

import type { DataKey, Keyring } from '../keys/index.js'
import type { Transaction } from '../store/index.js'
import { openObservation, type Observation } from './observations.js'
import type { Patient } from './patients.js'

/**
 * Effective times a page of readings covers: `from` inclusive, `to` exclusive, both UTC
 * ISO 8601 as `Date.toISOString` writes them, either absent for an open end.
 */
export interface EffectiveRange {
  readonly from?: string
  readonly to?: string
}

/** Which way a page runs through effective time. */
export type ReadingOrder = 'oldest-first' | 'newest-first'

/** One page of a patient's readings, opened, with the cursor of the next page if any. */
export interface ReadingPage {
  readonly readings: readonly Observation[]
  /**
   * Ids of the page's rows left out because they do not open as their row: altered in the
   * database (a clear column or the sealed bytes changed) or moved from another row.
   */
  readonly withheld: readonly string[]
  /** Pass back as `cursor` for the page after this one; absent on the last page. */
  readonly next?: string
}

/** What a page asks for, already checked (see {@link checkPageQuery}). */
export interface PageQuery {
  readonly range: EffectiveRange
  /** Stored codes (`system|code` or a bare LOINC code), any of which matches; empty: all. */
  readonly codes: readonly string[]
  readonly order: ReadingOrder
  readonly limit: number
  readonly cursor?: string
}

/** Most readings one page may hold. */
export const maxReadingPage = 1000

/** Readings per page when the caller names no limit. */
export const defaultReadingPage = 100

/** Most codes one query may name. */
export const maxQueryCodes = 20

/** Most characters the codes of one query may add up to, commas between them included. */
export const maxQueryCodesText = 1000

const cursorPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/**
 * One page of `patient`'s readings in `query.range`, matching `query.codes`, in the order
 * asked, opened under the patient's data key. The patient's data key is opened once for the
 * page, after the store confirms it was not destroyed; the page is one index range scan of
 * `observations (organization_id, patient_id, effective_at, id)` that reads at most
 * `limit + 1` rows when no code filter applies, so the cost follows the page, not the
 * patient's history. Throws `ERR_DATA_KEY_DESTROYED` once the patient was crypto-shredded
 * and `ERR_INPUT_INVALID` for a cursor that names no reading of this patient.
 *
 * A row that does not open as itself — its code, times, device or message id changed in the
 * database, or sealed bytes moved from another row — is left out and listed in `withheld`,
 * for the caller to record as a security alert and to tell the reader: one altered row does
 * not hide the good readings around it, and is never served as what its columns claim.
 *
 * A code filter is applied to the rows of the range as they are scanned, so a filter that
 * matches few of a patient's readings reads more rows than it returns; an index that leads
 * with the code would serve such queries directly, at the price of one more index to write on
 * every ingested reading.
 */
export async function readReadingPage(
  tx: Transaction,
  keyring: Keyring,
  patient: Patient,
  query: PageQuery,
): Promise<ReadingPage> {
  const dataKey = await openPatientKey(tx, keyring, patient)
  const after = query.cursor === undefined ? undefined : await cursorRow(tx, patient, query.cursor)

  const rows = await pageSelect(tx, patient, query, after).execute()

  const page = rows.slice(0, query.limit)
  const readings: Observation[] = []
  const withheld: string[] = []
  for (const row of page) {
    try {
      readings.push(openObservation(dataKey, row))
    } catch (error) {
      if (!isWardError(error, 'ERR_RECORD_UNREADABLE')) throw error
      withheld.push(row.id)
    }
  }
  const last = page[page.length - 1]
  return rows.length > query.limit && last !== undefined
    ? { readings, withheld, next: last.id }
    : { readings, withheld }
}

/**
 * One reading of the organization by its id, opened, with its patient's id; `undefined` when
 * the organization has none by that id. The caller looks the patient up and passes its data
 * key (see {@link openPatientKey}) through `open`.
 */
export async function findReadingRow(
  tx: Transaction,
  organizationId: string,
  id: string,
): Promise<
  | {
      readonly patientId: string
      open(dataKey: DataKey): Observation
    }
  | undefined
> {
  if (!cursorPattern.test(id)) return undefined
  const row = await tx
    .selectFrom('observations')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('id', '=', id)
    .executeTakeFirst()
  if (row === undefined) return undefined
  return {
    patientId: row.patient_id,
    open: (dataKey) => openObservation(dataKey, row),
  }
}

/**
 * The patient's data key, opened once for a whole read after the store confirms it was not
 * destroyed. A crypto-shredded patient reads as gone: `ERR_DATA_KEY_DESTROYED`, with a
 * message that says so and names no key.
 */
export async function openPatientKey(
  tx: Transaction,
  keyring: Keyring,
  patient: Patient,
): Promise<DataKey> {
  try {
    return await keyring.dataKey(
      tx,
      { organizationId: patient.organizationId, dataKeyId: patient.dataKeyId },
      { recheck: true },
    )
  } catch (error) {
    if (error instanceof WardError && error.code === 'ERR_DATA_KEY_DESTROYED') {
      throw patientGone(error)
    }
    throw error
  }
}

/** The error for a crypto-shredded patient: gone for good, in every copy of the store. */
export function patientGone(cause?: unknown): WardError {
  return new WardError(
    'ERR_DATA_KEY_DESTROYED',
    "this patient's records were destroyed (crypto-shredded) and can no longer be read",
    { cause, details: { reason: 'crypto-shredded' } },
  )
}

/**
 * Checks a page query's limit, codes and cursor; throws `ERR_INPUT_INVALID` naming the field
 * (by `names`, so a FHIR search can name its own parameters) and what is allowed.
 */
export function checkPageQuery(
  query: {
    readonly range: EffectiveRange
    readonly codes?: readonly string[]
    readonly order?: ReadingOrder
    readonly limit?: number
    readonly cursor?: string
  },
  names: { readonly limit: string; readonly codes: string; readonly cursor: string } = {
    limit: 'limit',
    codes: 'codes',
    cursor: 'cursor',
  },
): PageQuery {
  const limit = query.limit ?? defaultReadingPage
  if (!Number.isInteger(limit) || limit < 1 || limit > maxReadingPage) {
    throw invalid(names.limit, `must be an integer 1–${maxReadingPage}`)
  }
  const codes = query.codes ?? []
  if (codes.length > maxQueryCodes) {
    throw invalid(names.codes, `may name at most ${maxQueryCodes} codes`)
  }
  for (const code of codes) {
    if (typeof code !== 'string' || code.length === 0 || code.length > 300) {
      throw invalid(names.codes, 'must each be a code of 1–300 characters, as system|code')
    }
  }
  // The audit event records the codes; together they must fit one of its detail values.
  if (codes.join(',').length > maxQueryCodesText) {
    throw invalid(names.codes, `must together be at most ${maxQueryCodesText} characters`)
  }
  if (query.cursor !== undefined && !cursorPattern.test(query.cursor)) {
    throw invalid(names.cursor, 'must be the cursor a previous page returned')
  }
  const { from, to } = query.range
  if (from !== undefined && to !== undefined && from >= to) {
    throw invalid('range', 'must end after it starts')
  }
  return {
    range: query.range,
    codes,
    order: query.order ?? 'oldest-first',
    limit,
    ...(query.cursor === undefined ? {} : { cursor: query.cursor }),
  }
}

/**
 * The query of one page: `limit + 1` rows so that a next page shows itself, seeking the
 * patient-and-time index to the row after the cursor. Exported for the test that checks the
 * databases' plans for it.
 */
export function pageSelect(
  tx: Transaction,
  patient: Pick<Patient, 'id' | 'organizationId'>,
  query: PageQuery,
  after?: { readonly id: string; readonly effectiveAt: string },
) {
  const newestFirst = query.order === 'newest-first'
  let { from, to } = query.range
  // The cursor's own time bounds the range too, so the index is sought to the cursor itself
  // rather than to the range's start; the row value then skips the cursor's ties up to it.
  if (after !== undefined && !newestFirst && (from === undefined || after.effectiveAt > from)) {
    from = after.effectiveAt
  }
  if (after !== undefined && newestFirst && (to === undefined || after.effectiveAt < to)) {
    to = after.effectiveAt
  }
  let select = tx
    .selectFrom('observations')
    .selectAll()
    .where('organization_id', '=', patient.organizationId)
    .where('patient_id', '=', patient.id)
  if (from !== undefined) select = select.where('effective_at', '>=', from)
  if (to !== undefined) {
    // Up to and including the cursor's time when it is the bound; the row value excludes it.
    select = select.where('effective_at', to === after?.effectiveAt ? '<=' : '<', to)
  }
  if (query.codes.length > 0) select = select.where('code', 'in', [...query.codes])
  if (after !== undefined) {
    select = newestFirst
      ? select.where(sql<boolean>`(effective_at, id) < (${after.effectiveAt}, ${after.id})`)
      : select.where(sql<boolean>`(effective_at, id) > (${after.effectiveAt}, ${after.id})`)
  }
  return select
    .orderBy('effective_at', newestFirst ? 'desc' : 'asc')
    .orderBy('id', newestFirst ? 'desc' : 'asc')
    .limit(query.limit + 1)
}

async function cursorRow(
  tx: Transaction,
  patient: Patient,
  cursor: string,
): Promise<{ id: string; effectiveAt: string }> {
  const row = await tx
    .selectFrom('observations')
    .select(['id', 'effective_at'])
    .where('organization_id', '=', patient.organizationId)
    .where('patient_id', '=', patient.id)
    .where('id', '=', cursor)
    .executeTakeFirst()
  if (row === undefined) throw invalid('cursor', 'must be the cursor a previous page returned')
  return { id: row.id, effectiveAt: row.effective_at }
}

function invalid(field: string, rule: string): WardError {
  return new WardError('ERR_INPUT_INVALID', `${field} ${rule}`, { details: { field } })
}
