/** The records domain's tables, as Kysely sees them; see `store/schema.ts` for conventions. */
export interface RecordsTables {
  patients: PatientTable
  patient_identities: PatientIdentityTable
  observations: ObservationTable
}

/**
 * records: a patient as Ward knows them — an organization, a random pseudonym and the data key
 * that seals everything about them. No identifier from outside Ward is stored in clear.
 */
export interface PatientTable {
  id: string
  organization_id: string
  pseudonym: string
  data_key_id: string
  created_at: string
}

/**
 * records: the identity vault. One sealed record per patient holding every direct identifier
 * (name, birth date, medical record number, address, phone, email), sealed under the
 * patient's data key and bound to this table and the patient's id.
 */
export interface PatientIdentityTable {
  patient_id: string
  organization_id: string
  sealed_identity: Uint8Array
  updated_at: string
}

/**
 * records: one reading. The FHIR Observation itself is sealed under the patient's data key;
 * only what is needed to find it — ids, code, effective and received times — is clear.
 * `(organization_id, device_id, message_id)` is unique: a device's message is stored once.
 */
export interface ObservationTable {
  id: string
  organization_id: string
  patient_id: string
  device_id: string
  message_id: string
  code: string
  effective_at: string
  received_at: string
  sealed_resource: Uint8Array
}
