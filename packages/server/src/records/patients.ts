import { randomBytes, randomUUID } from 'node:crypto'

import { WardError, utf8Decode, utf8Encode } from '@ward/core'

import { createDataKey, openRecord, type Keyring } from '../keys/index.js'
import type { Transaction } from '../store/index.js'
import { checkPatientIdentity, type PatientIdentity } from './patient-identity.js'

/** A patient as Ward refers to them: ids and a pseudonym, never an identifier from outside. */
export interface Patient {
  readonly id: string
  readonly organizationId: string
  /** Random, `pt-` and 20 base32 characters; what audit events and URLs name the patient by. */
  readonly pseudonym: string
  /** The data key sealing the patient's identity and readings; destroying it shreds them. */
  readonly dataKeyId: string
  readonly createdAt: string
}

/** The table the identity vault's records are sealed for. */
export const identityTable = 'patient_identities'

const base32 = 'abcdefghijklmnopqrstuvwxyz234567'
const pseudonymPattern = /^pt-[a-z2-7]{20}$/

/**
 * Creates a patient of `organizationId` with a new random pseudonym and a data key of their
 * own, and seals `identity` under that key as the patient's one record in the identity vault.
 * Throws `ERR_INPUT_INVALID` naming the identity field at fault, and `ERR_KEY_UNAVAILABLE`
 * when the organization has no key-encryption key (or does not exist).
 */
export async function createPatient(
  tx: Transaction,
  keyring: Keyring,
  input: { readonly organizationId: string; readonly identity: PatientIdentity },
): Promise<Patient> {
  checkPatientIdentity(input.identity)
  const id = randomUUID()
  const dataKey = await createDataKey(tx, keyring, {
    organizationId: input.organizationId,
    ownerType: 'patient',
    ownerId: id,
  })
  const patient: Patient = {
    id,
    organizationId: input.organizationId,
    pseudonym: newPseudonym(),
    dataKeyId: dataKey.id,
    createdAt: dataKey.createdAt,
  }

  await tx
    .insertInto('patients')
    .values({
      id: patient.id,
      organization_id: patient.organizationId,
      pseudonym: patient.pseudonym,
      data_key_id: patient.dataKeyId,
      created_at: patient.createdAt,
    })
    .execute()

  const key = await keyring.dataKey(tx, {
    organizationId: patient.organizationId,
    dataKeyId: patient.dataKeyId,
  })
  const sealed = key.seal(
    { organizationId: patient.organizationId, table: identityTable, recordId: patient.id },
    utf8Encode(JSON.stringify(input.identity)),
  )
  await tx
    .insertInto('patient_identities')
    .values({
      patient_id: patient.id,
      organization_id: patient.organizationId,
      sealed_identity: sealed,
      updated_at: patient.createdAt,
    })
    .execute()
  return patient
}

/**
 * The patient of `organizationId` with id `patientId`. Throws `ERR_PATIENT_NOT_FOUND` when
 * there is none — including when the id belongs to another organization's patient, which is
 * reported exactly like one that never existed.
 */
export async function findPatient(
  tx: Transaction,
  organizationId: string,
  patientId: string,
): Promise<Patient> {
  const row = await tx
    .selectFrom('patients')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('id', '=', patientId)
    .executeTakeFirst()
  if (row === undefined) throw patientNotFound(organizationId)
  return toPatient(row)
}

/**
 * The patient of `organizationId` known by `pseudonym`; `ERR_PATIENT_NOT_FOUND` otherwise,
 * the same whether the pseudonym is another organization's, unknown or malformed.
 */
export async function findPatientByPseudonym(
  tx: Transaction,
  organizationId: string,
  pseudonym: string,
): Promise<Patient> {
  if (!pseudonymPattern.test(pseudonym)) throw patientNotFound(organizationId)
  const row = await tx
    .selectFrom('patients')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('pseudonym', '=', pseudonym)
    .executeTakeFirst()
  if (row === undefined) throw patientNotFound(organizationId)
  return toPatient(row)
}

/** Every patient of `organizationId`, oldest first: pseudonyms and ids, no identity. */
export async function listPatients(tx: Transaction, organizationId: string): Promise<Patient[]> {
  const rows = await tx
    .selectFrom('patients')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .orderBy('created_at')
    .orderBy('id')
    .execute()
  return rows.map(toPatient)
}

/**
 * Opens the patient's record in the identity vault. Throws `ERR_PATIENT_NOT_FOUND` as
 * {@link findPatient} does, `ERR_DATA_KEY_DESTROYED` once the patient's data key has been
 * destroyed, and `ERR_RECORD_UNREADABLE` when the stored record is not this patient's.
 */
export async function readPatientIdentity(
  tx: Transaction,
  keyring: Keyring,
  organizationId: string,
  patientId: string,
): Promise<PatientIdentity> {
  const patient = await findPatient(tx, organizationId, patientId)
  const row = await tx
    .selectFrom('patient_identities')
    .select('sealed_identity')
    .where('organization_id', '=', organizationId)
    .where('patient_id', '=', patient.id)
    .executeTakeFirst()
  if (row === undefined) throw patientNotFound(organizationId)

  const opened = await openRecord(
    tx,
    keyring,
    {
      organizationId,
      table: identityTable,
      recordId: patient.id,
      dataKeyId: patient.dataKeyId,
    },
    row.sealed_identity,
  )
  return JSON.parse(utf8Decode(opened)) as PatientIdentity
}

/** The error for a patient this organization does not have; it never says more than that. */
export function patientNotFound(organizationId: string): WardError {
  return new WardError('ERR_PATIENT_NOT_FOUND', 'no such patient in this organization', {
    details: { organization: organizationId },
  })
}

function newPseudonym(): string {
  // 256 is a multiple of 32, so every character is uniform: 100 random bits in all.
  let pseudonym = 'pt-'
  for (const byte of randomBytes(20)) pseudonym += base32[byte % 32]
  return pseudonym
}

function toPatient(row: {
  id: string
  organization_id: string
  pseudonym: string
  data_key_id: string
  created_at: string
}): Patient {
  return {
    id: row.id,
    organizationId: row.organization_id,
    pseudonym: row.pseudonym,
    dataKeyId: row.data_key_id,
    createdAt: row.created_at,
  }
}
