export * from './audit/index.js'
export * from './config/index.js'
export * from './devices/index.js'
export { Fleet, type Enrollment, type EnrollmentProof } from './fleet.js'
export type { PatientIdentity } from './records/index.js'
export * from './keys/index.js'
export * from './logging/index.js'
export * from './store/index.js'
export * from './tenancy/index.js'
export { OperatorToken } from './access/api-token.js'
export {
  People,
  privilegedRoles,
  roles,
  type Principal,
  type Role,
  type RoleGrant,
  type User,
} from './access/index.js'
export { systemContext, type Actor, type OperationContext } from './context.js'
export { Ward, homePaths, initializeWard, isInitialized, type InitializeResult } from './ward.js'
