import { WardError } from '@ward/core'

import type { OperationContext } from '../context.js'
import {
  AuditedReads,
  patientReadEvent,
  withheldReadingsEvent,
  type RecordsServices,
} from './audited-reads.js'
import type { Observation } from './observations.js'
import { findPatientByPseudonym, type Patient } from './patients.js'
import { checkPageQuery, readReadingPage, type ReadingOrder } from './readings.js'

/** A read of one patient's readings over a time range. */
export interface ReadingsQuery {
  /** The patient's pseudonym. */
  readonly patient: string
  /** ISO 8601 date and time with a zone: the first effective time included. */
  readonly from: string
  /** ISO 8601 date and time with a zone: the first effective time no longer included. */
  readonly to: string
  /** Stored codes (`system|code`, or a bare LOINC code); any matches. Absent: every code. */
  readonly codes?: readonly string[]
  /** Default `oldest-first`. */
  readonly order?: ReadingOrder
  /** Readings per page, 1–1000; default 100. */
  readonly limit?: number
  /** The `next` of the previous page. */
  readonly cursor?: string
}

/** One page of a patient's readings. */
export interface PatientReadings {
  readonly patient: string
  readonly readings: readonly Observation[]
  /** Give back as `cursor` for the next page; absent on the last one. */
  readonly next?: string
  /**
   * Ids of readings of this page left out because their stored rows were altered in the
   * database; each read that withholds any records a security alert. Absent when none.
   */
  readonly withheld?: readonly string[]
}

/** Widest time range one read may cover. */
export const maxRangeDays = 366

/** The purpose of use of a patient reading their own records (HL7 v3 PurposeOfUse). */
export const patientRequest = 'PATRQT'

const dateTimePattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/

/**
 * The PHI read paths over a patient's readings: each read opens the patient's data key once,
 * reads one bounded page through the patient-and-time index, and records one audit event for
 * the patient in the same transaction, carrying the pseudonym, the time range, the codes, the
 * page size and how many readings were returned — never a value.
 *
 * Who may read is decided before: the context's `policyRule` and `purposeOfUse` are the
 * access policy's decision, recorded as given. {@link patientAccessFacts} is what that
 * decision looks up first.
 */
export class PatientReadingsReader {
  readonly #reads: AuditedReads

  constructor(services: RecordsServices) {
    this.#reads = AuditedReads.for(services)
  }

  /**
   * One page of the patient's readings over `[from, to)`, for a member of the workforce
   * (a clinician, a care coordinator) acting for the context's organization. A patient of
   * another organization is `ERR_PATIENT_NOT_FOUND`, exactly as one that does not exist; a
   * crypto-shredded one is `ERR_DATA_KEY_DESTROYED`; a range that is malformed, empty or
   * wider than {@link maxRangeDays} days, a bad limit, codes or cursor are
   * `ERR_INPUT_INVALID` naming the field.
   */
  readReadings(context: OperationContext, query: ReadingsQuery): Promise<PatientReadings> {
    return this.#read(context, query, 'observation.read')
  }

  /**
   * The same read for the patient themself: recorded with purpose of use `PATRQT` whatever
   * the context says, as the patient's access to their own records.
   */
  readOwnReadings(context: OperationContext, query: ReadingsQuery): Promise<PatientReadings> {
    return this.#read({ ...context, purposeOfUse: patientRequest }, query, 'observation.read-own')
  }

  async #read(
    context: OperationContext,
    query: ReadingsQuery,
    operation: string,
  ): Promise<PatientReadings> {
    const range = checkRange(query.from, query.to)
    const page = checkPageQuery({
      range,
      ...(query.codes === undefined ? {} : { codes: query.codes }),
      ...(query.order === undefined ? {} : { order: query.order }),
      ...(query.limit === undefined ? {} : { limit: query.limit }),
      ...(query.cursor === undefined ? {} : { cursor: query.cursor }),
    })

    return this.#reads.run(context, operation, async (tx, organizationId) => {
      const patient = await findPatientByPseudonym(tx, organizationId, query.patient)
      const result = await readReadingPage(tx, this.#reads.keyring, patient, page)
      const event = patientReadEvent(operation, patient, {
        from: range.from,
        to: range.to,
        ...(page.codes.length === 0 ? {} : { codes: page.codes.join(',') }),
        order: page.order,
        limit: page.limit,
        ...(page.cursor === undefined ? {} : { after: page.cursor }),
        count: result.readings.length,
      })
      const answer: PatientReadings = {
        patient: patient.pseudonym,
        readings: result.readings,
        ...(result.next === undefined ? {} : { next: result.next }),
        ...(result.withheld.length === 0 ? {} : { withheld: result.withheld }),
      }
      if (result.withheld.length === 0) return [answer, [event]]
      return [answer, [event, withheldReadingsEvent(operation, patient, result.withheld)]]
    })
  }
}

/**
 * What an access decision about reading a patient needs to know first: that the patient
 * exists in the organization, and their ids. `ERR_PATIENT_NOT_FOUND` otherwise, the same for
 * another organization's patient as for none. Runs outside any transaction.
 */
export async function patientAccessFacts(
  services: Pick<RecordsServices, 'store'>,
  organizationId: string,
  pseudonym: string,
): Promise<Pick<Patient, 'id' | 'organizationId' | 'pseudonym'>> {
  const patient = await findPatientByPseudonym(services.store.db, organizationId, pseudonym)
  return { id: patient.id, organizationId: patient.organizationId, pseudonym: patient.pseudonym }
}

function checkRange(from: string, to: string): { from: string; to: string } {
  const start = utc(from, 'from')
  const end = utc(to, 'to')
  if (start >= end) {
    throw new WardError('ERR_INPUT_INVALID', 'to must be later than from', {
      details: { field: 'to' },
    })
  }
  if (Date.parse(end) - Date.parse(start) > maxRangeDays * 86_400_000) {
    throw new WardError('ERR_INPUT_INVALID', `the range may span at most ${maxRangeDays} days`, {
      details: { field: 'to', limit: maxRangeDays },
    })
  }
  return { from: start, to: end }
}

function utc(text: string, field: string): string {
  const time = typeof text === 'string' && dateTimePattern.test(text) ? Date.parse(text) : NaN
  if (Number.isNaN(time) || time < Date.UTC(1900, 0, 1) || time >= Date.UTC(3000, 0, 1)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `${field} must be an ISO 8601 date and time with a zone, years 1900–2999`,
      { details: { field } },
    )
  }
  return new Date(time).toISOString()
}
