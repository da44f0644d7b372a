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
