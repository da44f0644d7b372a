export { foldLoginName, type User } from './accounts.js'
export {
  authenticateRequest,
  csrfCookieName,
  csrfHeaderName,
  presentedCredential,
  requestSession,
  sessionCookieName,
  type PresentedCredential,
} from './authenticate.js'
export {
  checkNewPassword,
  maximumPasswordLength,
  minimumPasswordLength,
} from './password-policy.js'
export {
  People,
  type Caller,
  type Clock,
  type MfaEnrolled,
  type SessionState,
  type SignInResult,
} from './people.js'
export {
  isRole,
  privilegedRoles,
  roles,
  type AuthenticationMethod,
  type Principal,
  type Role,
  type RoleGrant,
} from './principal.js'
export type { ApiTokenRecord } from './scoped-api-tokens.js'
export type { Session, SessionLimits, SessionStage } from './sessions.js'
