import { isWardError } from '@ward/core'

import { auditEventTypes } from './audit/index.js'
import type { OperationContext } from './context.js'
import { readObservations, type Observation, type Patient } from './records/index.js'
import type { Organization } from './tenancy/index.js'
import type { Ward } from './ward.js'

/** A time range and a count limit for reading a patient's observations. */
export interface ReadingQuery {
  /** ISO 8601 date and time with a zone; inclusive. */
  readonly from?: string
  /** ISO 8601 date and time with a zone; exclusive. */
  readonly to?: string
  readonly limit: number
}

/**
 * Reads one patient's readings over a time range, opened, with the read recorded as a Patient
 * Record audit event in the same transaction: the patient's pseudonym, the query's range and
 * limit, and how many readings were returned — never their values. A stored reading whose row
 * was altered in the database fails the whole read with `ERR_RECORD_UNREADABLE`, recorded as a
 * security alert naming the row.
 *
 * This wraps the records domain's `readObservations`. When that domain offers its own audited
 * read (with FHIR R4 mapping and Bundles), the routes call that instead and this file goes.
 */
export async function readPatientReadings(
  ward: Ward,
  context: OperationContext,
  organization: Organization,
  patient: Patient,
  query: ReadingQuery,
): Promise<Observation[]> {
  try {
    return await readAndAudit(ward, context, organization, patient, query)
  } catch (error) {
    if (!isWardError(error, 'ERR_RECORD_UNREADABLE')) throw error
    // A stored reading altered in the database fails the read; the failure is a security alert.
    await ward.store.transaction((tx) =>
      ward.audit(
        tx,
        organization.slug,
        { ...context, organizationId: organization.id },
        {
          type: auditEventTypes.securityAlert,
          operation: 'observation.read',
          action: 'R',
          outcome: '8',
          outcomeDescription: error.code,
          entity: [{ type: 'Observation', what: String(error.details['record'] ?? '') }],
        },
      ),
    )
    throw error
  }
}

function readAndAudit(
  ward: Ward,
  context: OperationContext,
  organization: Organization,
  patient: Patient,
  query: ReadingQuery,
): Promise<Observation[]> {
  return ward.store.transaction(async (tx) => {
    const observations = await readObservations(tx, ward.keyring, {
      organizationId: organization.id,
      patientId: patient.id,
      ...(query.from === undefined ? {} : { from: query.from }),
      ...(query.to === undefined ? {} : { to: query.to }),
      limit: query.limit,
    })
    await ward.audit(
      tx,
      organization.slug,
      { ...context, organizationId: organization.id },
      {
        type: auditEventTypes.patientRecord,
        operation: 'observation.read',
        action: 'R',
        entity: [
          {
            type: 'Patient',
            what: patient.id,
            patient: patient.pseudonym,
            detail: {
              ...(query.from === undefined ? {} : { from: query.from }),
              ...(query.to === undefined ? {} : { to: query.to }),
              limit: query.limit,
              count: observations.length,
            },
          },
        ],
      },
    )
    return observations
  })
}
