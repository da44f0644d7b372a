import { WardError, isWardError } from '@ward/core'

import { auditEventTypes, searchAuditEvents, type AuditEventInput } from '../audit/index.js'
import type { OperationContext } from '../context.js'
import { findDevice, listPatientDevices, type Device } from '../devices/index.js'
import type { Transaction } from '../store/index.js'
import {
  AuditedReads,
  emptySearchEvent,
  patientReadEvent,
  withheldReadingsEvent,
  type QueryDetail,
  type RecordsServices,
} from './audited-reads.js'
import {
  auditEventResource,
  deviceResource,
  observationResource,
  patientResource,
  searchBundle,
  type FhirResource,
  type SearchBundle,
} from './fhir-resources.js'
import {
  defaultSearchCount,
  parseSearch,
  storedCodes,
  type ParsedSearch,
  type SearchInput,
  type SearchSpec,
} from './fhir-search.js'
import type { FhirObservation } from './observations.js'
import {
  findPatient,
  findPatientByPseudonym,
  readPatientIdentity,
  type Patient,
} from './patients.js'
import { checkPageQuery, findReadingRow, openPatientKey, readReadingPage } from './readings.js'

/** Whether a Patient read may open the identity vault: the access policy's decision. */
export interface PatientReadOptions {
  /** True to add name, birth date and the other direct identifiers from the sealed vault. */
  readonly includeIdentity: boolean
}

const patientSearch: SearchSpec = {
  _id: 'id',
  identifier: 'pseudonym-identifier',
  _count: 'count',
}
const observationSearch: SearchSpec = {
  patient: 'patient',
  date: 'date',
  code: 'token',
  _count: 'count',
  _sort: 'sort',
  _cursor: 'cursor',
}
const deviceSearch: SearchSpec = { patient: 'patient', _count: 'count' }
const auditEventSearch: SearchSpec = {
  date: 'date',
  patient: 'patient',
  entity: 'reference',
  _count: 'count',
  _sort: 'sort',
  _cursor: 'cursor',
}

/**
 * Ward's FHIR R4 read and search subset: `Patient` (read; search by `_id` or `identifier`),
 * `Observation` (read; search by `patient`, `date`, `code`, with `_count`, `_sort` and paging),
 * `Device` (read; search by `patient`) and `AuditEvent` (search by `date`, `patient`,
 * `entity`, for auditors). Every read and search runs in one transaction with its audit event
 * in the organization's log — one event per patient read, carrying the patient's pseudonym
 * and the search's parameters and count, never values. Patients of other organizations read
 * exactly as patients that do not exist; crypto-shredded ones as gone
 * (`ERR_DATA_KEY_DESTROYED`).
 *
 * Authorization is the caller's: the context's policy rule and purpose of use are recorded
 * as given, and whether a Patient read may include identity is passed in, not decided here.
 */
export class FhirReads {
  readonly #reads: AuditedReads

  constructor(services: RecordsServices) {
    this.#reads = AuditedReads.for(services)
  }

  /** `GET Patient/<pseudonym>`. `ERR_PATIENT_NOT_FOUND` for a patient this organization lacks. */
  async readPatient(
    context: OperationContext,
    pseudonym: string,
    options: PatientReadOptions,
  ): Promise<FhirResource> {
    return this.#reads.run(context, 'fhir.patient.read', async (tx, organizationId) => {
      const patient = await findPatientByPseudonym(tx, organizationId, pseudonym)
      const resource = await this.#patient(tx, patient, options)
      return [resource, [patientReadEvent('fhir.patient.read', patient, identityDetail(options))]]
    })
  }

  /** `GET Patient?_id=…` or `?identifier=urn:ward:pseudonym|…`: a Bundle of none or one. */
  async searchPatients(
    context: OperationContext,
    parameters: SearchInput,
    options: PatientReadOptions,
  ): Promise<SearchBundle> {
    const search = parseSearch('Patient', parameters, patientSearch)
    const wanted = search.id ?? search.patient
    if (wanted === undefined) throw required('Patient', '_id or identifier')
    if (search.id !== undefined && search.patient !== undefined && search.id !== search.patient) {
      // Both given and different: nothing can match both.
      return this.#reads.run(context, 'fhir.patient.search', async () => [
        searchBundle([], selfLink('Patient', parameters)),
        [emptySearchEvent('fhir.patient.search', 'Patient', {})],
      ])
    }

    return this.#reads.run(context, 'fhir.patient.search', async (tx, organizationId) => {
      const patient = await findPatientByPseudonym(tx, organizationId, wanted).catch(notFound)
      const self = selfLink('Patient', parameters)
      if (patient === undefined) {
        return [searchBundle([], self), [emptySearchEvent('fhir.patient.search', 'Patient', {})]]
      }
      const resource = await this.#patient(tx, patient, options)
      const event = patientReadEvent('fhir.patient.search', patient, {
        ...identityDetail(options),
        count: 1,
      })
      return [searchBundle([resource], self), [event]]
    })
  }

  /** `GET Observation/<id>`. `ERR_NOT_FOUND` for a reading this organization does not have. */
  async readObservation(context: OperationContext, id: string): Promise<FhirObservation> {
    return this.#reads.run(context, 'fhir.observation.read', async (tx, organizationId) => {
      const row = await findReadingRow(tx, organizationId, id)
      if (row === undefined) throw resourceNotFound('Observation')
      const patient = await findPatient(tx, organizationId, row.patientId)
      const reading = row.open(await openPatientKey(tx, this.#reads.keyring, patient))
      const event = patientReadEvent(
        'fhir.observation.read',
        patient,
        { count: 1 },
        { type: 'Observation', what: reading.id },
      )
      return [observationResource(reading, patient), [event]]
    })
  }

  /**
   * `GET Observation?patient=…`: one patient's readings, by `date` (ge, le, gt, lt, eq, at most
   * two bounds), `code` (`system|code`, alternatives by comma), `_sort` (`date`, `-date`) and
   * `_count` (1–1000, default 100), paged by a `next` link. `patient` is required: a search
   * reads one patient, under one access decision.
   */
  async searchObservations(
    context: OperationContext,
    parameters: SearchInput,
  ): Promise<SearchBundle> {
    const search = parseSearch('Observation', parameters, observationSearch)
    const pseudonym = search.patient
    if (pseudonym === undefined) throw required('Observation', 'patient')
    const page = checkPageQuery(
      {
        range: search.range ?? {},
        ...(search.codes === undefined ? {} : { codes: storedCodes(search.codes) }),
        ...(search.order === undefined ? {} : { order: search.order }),
        limit: search.count ?? defaultSearchCount,
        ...(search.cursor === undefined ? {} : { cursor: search.cursor }),
      },
      { limit: '_count', codes: 'code', cursor: '_cursor' },
    )

    return this.#reads.run(context, 'fhir.observation.search', async (tx, organizationId) => {
      const patient = await findPatientByPseudonym(tx, organizationId, pseudonym)
      const result = await readReadingPage(tx, this.#reads.keyring, patient, page)
      const resources = result.readings.map((reading) => observationResource(reading, patient))
      const bundle = searchBundle(
        resources,
        selfLink('Observation', parameters),
        result.next === undefined ? undefined : nextLink('Observation', parameters, result.next),
        result.withheld.length,
      )
      const event = patientReadEvent('fhir.observation.search', patient, {
        ...rangeDetail(search),
        ...(search.codes === undefined ? {} : { codes: search.codes.join(',') }),
        order: page.order,
        limit: page.limit,
        ...(page.cursor === undefined ? {} : { after: page.cursor }),
        count: resources.length,
      })
      if (result.withheld.length === 0) return [bundle, [event]]
      const alert = withheldReadingsEvent('fhir.observation.search', patient, result.withheld)
      return [bundle, [event, alert]]
    })
  }

  /** `GET Device/<id>`. `ERR_DEVICE_NOT_FOUND` for a device this organization does not have. */
  async readDevice(context: OperationContext, id: string): Promise<FhirResource> {
    return this.#reads.run(context, 'fhir.device.read', async (tx, organizationId) => {
      const device = await findDeviceById(tx, organizationId, id)
      if (device.patientId === null) {
        const event: AuditEventInput = {
          type: auditEventTypes.query,
          operation: 'fhir.device.read',
          action: 'R',
          entity: [{ type: 'Device', what: device.id }],
        }
        return [deviceResource(device), [event]]
      }
      const patient = await findPatient(tx, organizationId, device.patientId)
      await openPatientKey(tx, this.#reads.keyring, patient)
      const event = patientReadEvent(
        'fhir.device.read',
        patient,
        { count: 1 },
        { type: 'Device', what: device.id },
      )
      return [deviceResource(device, patient.pseudonym), [event]]
    })
  }

  /** `GET Device?patient=…`: the devices assigned to the patient now. */
  async searchDevices(context: OperationContext, parameters: SearchInput): Promise<SearchBundle> {
    const search = parseSearch('Device', parameters, deviceSearch)
    const pseudonym = search.patient
    if (pseudonym === undefined) throw required('Device', 'patient')
    const count = search.count ?? defaultSearchCount

    return this.#reads.run(context, 'fhir.device.search', async (tx, organizationId) => {
      const patient = await findPatientByPseudonym(tx, organizationId, pseudonym)
      await openPatientKey(tx, this.#reads.keyring, patient)
      const devices = (await listPatientDevices(tx, organizationId, patient.id)).slice(0, count)
      const bundle = searchBundle(
        devices.map((device) => deviceResource(device, patient.pseudonym)),
        selfLink('Device', parameters),
      )
      const event = patientReadEvent('fhir.device.search', patient, {
        limit: count,
        count: devices.length,
      })
      return [bundle, [event]]
    })
  }

  /**
   * `GET AuditEvent?…` over the organization's own log, for auditors: by `date` (recorded
   * time), `patient` (pseudonym), `entity` (a reference Ward recorded, `<Type>/<id>` or
   * `<id>`), `_sort` and `_count`, paged by a `next` link. A page filtered by patient or entity
   * may hold fewer events than `_count` and still have a next page (see `searchAuditEvents`).
   * Recorded as the use of the audit log, naming the patient when the search was for one.
   */
  async searchAuditEvents(
    context: OperationContext,
    parameters: SearchInput,
  ): Promise<SearchBundle> {
    const search = parseSearch('AuditEvent', parameters, auditEventSearch)
    if (search.cursor !== undefined && !/^[0-9]{1,15}$/.test(search.cursor)) {
      throw new WardError(
        'ERR_INPUT_INVALID',
        'AuditEvent search parameter _cursor must be the value a next link carried',
        { details: { parameter: '_cursor', allowed: 'the value of a next link' } },
      )
    }
    const limit = search.count ?? defaultSearchCount
    const order = search.order ?? 'oldest-first'

    return this.#reads.run(context, 'fhir.audit-event.search', async (tx, organizationId) => {
      const logName = await this.#reads.slugOf(tx, organizationId)
      let patient: Patient | undefined
      if (search.patient !== undefined) {
        patient = await findPatientByPseudonym(tx, organizationId, search.patient).catch(notFound)
      }
      const page = await searchAuditEvents(tx, logName, {
        ...search.range,
        ...(search.patient === undefined ? {} : { patient: search.patient }),
        ...(search.reference === undefined ? {} : { entity: search.reference }),
        order,
        limit,
        ...(search.cursor === undefined ? {} : { after: Number(search.cursor) }),
      })
      const bundle = searchBundle(
        page.events.map(({ event }) => auditEventResource(event)),
        selfLink('AuditEvent', parameters),
        page.next === undefined ? undefined : nextLink('AuditEvent', parameters, String(page.next)),
      )
      const detail: QueryDetail = {
        ...rangeDetail(search),
        ...(search.reference === undefined ? {} : { entity: search.reference }),
        order,
        limit,
        ...(search.cursor === undefined ? {} : { after: search.cursor }),
        count: page.events.length,
      }
      const event: AuditEventInput = {
        type: auditEventTypes.auditLogUsed,
        operation: 'fhir.audit-event.search',
        action: 'E',
        entity: [
          {
            type: 'audit-log',
            what: logName,
            ...(patient === undefined ? {} : { patient: patient.pseudonym }),
            detail,
          },
        ],
      }
      return [bundle, [event]]
    })
  }

  async #patient(
    tx: Transaction,
    patient: Patient,
    options: PatientReadOptions,
  ): Promise<FhirResource> {
    // Opened even without identity: a crypto-shredded patient reads as gone either way.
    await openPatientKey(tx, this.#reads.keyring, patient)
    if (!options.includeIdentity) return patientResource(patient)
    const identity = await readPatientIdentity(
      tx,
      this.#reads.keyring,
      patient.organizationId,
      patient.id,
    )
    return patientResource(patient, identity)
  }
}

async function findDeviceById(
  tx: Transaction,
  organizationId: string,
  id: string,
): Promise<Device> {
  // findDevice also takes serials; a FHIR read names the resource id only.
  const device = await findDevice(tx, organizationId, id)
  if (device.id !== id)
    throw new WardError('ERR_DEVICE_NOT_FOUND', 'no such device in this organization')
  return device
}

function notFound(error: unknown): undefined {
  if (isWardError(error, 'ERR_PATIENT_NOT_FOUND')) return undefined
  throw error
}

function required(resourceType: string, parameter: string): WardError {
  return new WardError(
    'ERR_INPUT_INVALID',
    `${resourceType} search needs the parameter ${parameter}`,
    { details: { parameter, allowed: `${parameter} is required` } },
  )
}

function resourceNotFound(resourceType: string): WardError {
  return new WardError('ERR_NOT_FOUND', `no such ${resourceType} in this organization`, {
    details: { resourceType },
  })
}

function identityDetail(options: PatientReadOptions): QueryDetail {
  return { identity: options.includeIdentity }
}

function rangeDetail(search: ParsedSearch): QueryDetail {
  return {
    ...(search.range?.from === undefined ? {} : { from: search.range.from }),
    ...(search.range?.to === undefined ? {} : { to: search.range.to }),
  }
}

function selfLink(resourceType: string, parameters: SearchInput): string {
  const query = new URLSearchParams(
    parameters instanceof URLSearchParams ? parameters : entries(parameters),
  ).toString()
  return query === '' ? resourceType : `${resourceType}?${query}`
}

function nextLink(resourceType: string, parameters: SearchInput, cursor: string): string {
  const query = new URLSearchParams(
    parameters instanceof URLSearchParams ? parameters : entries(parameters),
  )
  query.delete('_cursor')
  query.append('_cursor', cursor)
  return `${resourceType}?${query.toString()}`
}

function entries(
  parameters: Readonly<Record<string, string | readonly string[]>>,
): [string, string][] {
  return Object.entries(parameters).flatMap(([name, value]): [string, string][] =>
    typeof value === 'string' ? [[name, value]] : value.map((one): [string, string] => [name, one]),
  )
}
