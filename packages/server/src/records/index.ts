export {
  insertObservations,
  maxObservationBytes,
  observationTable,
  readObservations,
  type FhirObservation,
  type InsertedObservation,
  type Observation,
  type ObservationInput,
} from './observations.js'
export {
  PatientIdentitySchema,
  checkPatientIdentity,
  type PatientIdentity,
} from './patient-identity.js'
export {
  createPatient,
  findPatient,
  findPatientByPseudonym,
  identityTable,
  listPatients,
  readPatientIdentity,
  type Patient,
} from './patients.js'
export { AuditedReads, type RecordsServices } from './audited-reads.js'
export { FhirReads, type PatientReadOptions } from './fhir-reads.js'
export {
  toOperationOutcome,
  type FhirResource,
  type OperationOutcome,
  type SearchBundle,
} from './fhir-resources.js'
export {
  defaultSearchCount,
  maxSearchCount,
  pseudonymSystem,
  type SearchInput,
} from './fhir-search.js'
export {
  PatientReadingsReader,
  maxRangeDays,
  patientAccessFacts,
  patientRequest,
  type PatientReadings,
  type ReadingsQuery,
} from './patient-readings.js'
export { defaultReadingPage, maxReadingPage, type ReadingOrder } from './readings.js'
