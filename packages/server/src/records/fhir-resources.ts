import { isWardError } from '@ward/core'

import type { AuditEvent } from '../audit/index.js'
import type { Device } from '../devices/index.js'
import { pseudonymSystem } from './fhir-search.js'
import type { FhirObservation, Observation } from './observations.js'
import type { PatientIdentity } from './patient-identity.js'
import type { Patient } from './patients.js'

/** A FHIR R4 resource, as JSON. */
export interface FhirResource {
  readonly resourceType: string
  readonly id?: string
  readonly [field: string]: unknown
}

/** A FHIR R4 `searchset` Bundle. */
export interface SearchBundle {
  readonly resourceType: 'Bundle'
  readonly type: 'searchset'
  readonly link: readonly { readonly relation: 'self' | 'next'; readonly url: string }[]
  /** The matches; after them, when some were withheld, an OperationOutcome saying so. */
  readonly entry: readonly {
    readonly fullUrl?: string
    readonly resource: FhirResource
    readonly search: { readonly mode: 'match' | 'outcome' }
  }[]
}

/** A FHIR R4 OperationOutcome. */
export interface OperationOutcome {
  readonly resourceType: 'OperationOutcome'
  readonly issue: readonly {
    readonly severity: 'error' | 'warning'
    readonly code: string
    readonly diagnostics: string
    readonly expression?: readonly string[]
  }[]
}

const medicalRecordNumberType = {
  coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }],
}
const patientRole = {
  system: 'http://terminology.hl7.org/CodeSystem/object-role',
  code: '1',
  display: 'Patient',
}

/**
 * A FHIR Patient named by its pseudonym. With `identity` (which the caller opens only when
 * its access decision allows), the direct identifiers from the vault are added: name, birth
 * date, medical record number, address, phone and email.
 */
export function patientResource(patient: Patient, identity?: PatientIdentity): FhirResource {
  const pseudonym = { system: pseudonymSystem, value: patient.pseudonym }
  if (identity === undefined) {
    return {
      resourceType: 'Patient',
      id: patient.pseudonym,
      meta: { lastUpdated: patient.createdAt },
      identifier: [pseudonym],
    }
  }
  const telecom = [
    ...(identity.phone === undefined ? [] : [{ system: 'phone', value: identity.phone }]),
    ...(identity.email === undefined ? [] : [{ system: 'email', value: identity.email }]),
  ]
  return {
    resourceType: 'Patient',
    id: patient.pseudonym,
    meta: { lastUpdated: patient.createdAt },
    identifier: [
      pseudonym,
      ...(identity.medicalRecordNumber === undefined
        ? []
        : [{ type: medicalRecordNumberType, value: identity.medicalRecordNumber }]),
    ],
    name: [{ family: identity.name.family, given: [...(identity.name.given ?? [])] }],
    ...(telecom.length === 0 ? {} : { telecom }),
    birthDate: identity.birthDate,
    ...(identity.address === undefined ? {} : { address: [{ ...identity.address }] }),
  }
}

/**
 * A stored reading as FHIR: the Observation the device sent, with Ward's id, its received time
 * as `meta.lastUpdated`, the patient by pseudonym and the device by Ward's id — what Ward
 * attributed the reading to, whatever the device wrote there.
 */
export function observationResource(reading: Observation, patient: Patient): FhirObservation {
  return {
    ...reading.resource,
    resourceType: 'Observation',
    id: reading.id,
    meta: { lastUpdated: reading.receivedAt },
    subject: { reference: `Patient/${patient.pseudonym}` },
    device: { reference: `Device/${reading.deviceId}` },
  }
}

/** A device as FHIR R4 Device: Ward's id, serial, status, its model and its patient. */
export function deviceResource(device: Device, patientPseudonym?: string): FhirResource {
  return {
    resourceType: 'Device',
    id: device.id,
    identifier: [{ system: 'urn:ward:device-serial', value: device.serial }],
    definition: { reference: `DeviceDefinition/${device.modelId}` },
    status: device.status === 'active' ? 'active' : 'inactive',
    ...(patientPseudonym === undefined
      ? {}
      : { patient: { reference: `Patient/${patientPseudonym}` } }),
  }
}

/**
 * An audit event as FHIR R4 AuditEvent. Ward's references become `entity.what` identifiers,
 * each patient pseudonym an entity of its own in the Patient role, and the request id and the
 * policy rule entity details of an entity for the request.
 */
export function auditEventResource(event: AuditEvent): FhirResource {
  const patients = [
    ...new Set(event.entity.flatMap((e) => (e.patient === undefined ? [] : [e.patient]))),
  ]
  return {
    resourceType: 'AuditEvent',
    id: event.id,
    type: event.type,
    subtype: [event.subtype],
    action: event.action,
    recorded: event.recorded,
    outcome: event.outcome,
    ...(event.outcomeDescription === undefined ? {} : { outcomeDesc: event.outcomeDescription }),
    purposeOfEvent: event.purposeOfUse.map((code) => ({
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code }],
    })),
    agent: event.agent.map((agent) => ({
      type: { text: agent.type },
      ...(agent.role === undefined ? {} : { role: [{ text: agent.role }] }),
      who: { identifier: { value: agent.who } },
      requestor: agent.requestor,
      ...(agent.network === undefined
        ? {}
        : { network: { address: agent.network.address, type: '2' } }),
    })),
    source: { site: event.source.site, observer: { display: event.source.observer } },
    entity: [
      ...event.entity.map((entity) => ({
        what: { identifier: { value: entity.what } },
        type: { system: 'urn:ward:audit-entity-type', code: entity.type },
        ...(entity.role === undefined ? {} : { role: { code: entity.role } }),
        ...(entity.detail === undefined
          ? {}
          : {
              detail: Object.entries(entity.detail).map(([type, value]) => ({
                type,
                valueString: String(value),
              })),
            }),
      })),
      ...patients.map((pseudonym) => ({
        what: { reference: `Patient/${pseudonym}` },
        role: patientRole,
      })),
      {
        what: { identifier: { value: event.requestId } },
        type: { system: 'urn:ward:audit-entity-type', code: 'request' },
        detail: [
          { type: 'policyDecision', valueString: event.policy.decision },
          { type: 'policyRule', valueString: event.policy.rule },
        ],
      },
    ],
  }
}

/**
 * A `searchset` Bundle of `resources` with a `self` link and, when there is a next page, a
 * `next` link. Links are relative to the FHIR base (`Observation?patient=…`); a route that
 * serves them under an absolute base resolves them against it.
 */
export function searchBundle(
  resources: readonly FhirResource[],
  self: string,
  next?: string,
  withheld = 0,
): SearchBundle {
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    link: [
      { relation: 'self', url: self },
      ...(next === undefined ? [] : [{ relation: 'next' as const, url: next }]),
    ],
    entry: [
      ...resources.map((resource) => ({
        fullUrl: `${resource.resourceType}/${resource.id ?? ''}`,
        resource,
        search: { mode: 'match' as const },
      })),
      ...(withheld === 0 ? [] : [withheldOutcome(withheld)]),
    ],
  }
}

/** The searchset entry saying that `count` matches were withheld as altered in the database. */
function withheldOutcome(count: number) {
  const resource: OperationOutcome & FhirResource = {
    resourceType: 'OperationOutcome',
    issue: [
      {
        severity: 'warning',
        code: 'processing',
        diagnostics:
          `${count} matching reading${count === 1 ? ' was' : 's were'} withheld: ` +
          'the stored record was altered (ERR_RECORD_UNREADABLE); a security alert was recorded',
      },
    ],
  }
  return { resource, search: { mode: 'outcome' as const } }
}

/**
 * The OperationOutcome for an error of a FHIR read: Ward's message as diagnostics (it never
 * holds PHI), the search parameter at fault as expression, and the FHIR issue type its code
 * means. Errors not Ward's own are reported without their message, which may quote data.
 */
export function toOperationOutcome(error: unknown): OperationOutcome {
  if (!isWardError(error)) {
    return {
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'exception', diagnostics: 'internal error' }],
    }
  }
  const parameter = error.details['parameter']
  const code =
    error.code === 'ERR_INPUT_INVALID'
      ? 'invalid'
      : error.code === 'ERR_PATIENT_NOT_FOUND' ||
          error.code === 'ERR_NOT_FOUND' ||
          error.code === 'ERR_DEVICE_NOT_FOUND'
        ? 'not-found'
        : error.code === 'ERR_DATA_KEY_DESTROYED'
          ? 'deleted'
          : error.code === 'ERR_ACCESS_DENIED'
            ? 'forbidden'
            : 'exception'
  return {
    resourceType: 'OperationOutcome',
    issue: [
      {
        severity: 'error',
        code,
        diagnostics: `${error.code}: ${error.message}`,
        ...(typeof parameter === 'string' ? { expression: [parameter] } : {}),
      },
    ],
  }
}
