// The access domain's door: the policy, care teams, break-glass, and the principal that
// authentication hands to the policy.
export { Access } from './access.js'
export { OperatorToken } from './api-token.js'
export {
  breakGlassReasonCodes,
  breakGlassReasonLength,
  breakGlassReviewOutcomes,
  closeBreakGlassReview,
  emergencyAccessFacts,
  findBreakGlassGrant,
  listBreakGlassReviews,
  openBreakGlass,
  type BreakGlassGrant,
  type BreakGlassReasonCode,
  type BreakGlassReviewItem,
  type BreakGlassReviewOutcome,
} from './break-glass.js'
export {
  addCareTeamMember,
  addCareTeamPatient,
  careTeamDetail,
  careTeamFacts,
  createCareTeam,
  findCareTeam,
  listCareTeams,
  maxCareTeamMembers,
  maxCareTeamPatients,
  maxCareTeamsPerOrganization,
  removeCareTeamMember,
  removeCareTeamPatient,
  type CareTeam,
  type CareTeamDetail,
} from './care-teams.js'
export {
  actions,
  credentialRefusal,
  decide,
  isPurposeOfUse,
  mfaWaivedSuffix,
  noFacts,
  permissionTable,
  purposesOfUse,
  type AccessDecision,
  type AccessFacts,
  type AccessRequest,
  type Action,
  type PurposeOfUse,
  type Resource,
  type ResourceType,
} from './policy.js'
export {
  isPatientPerson,
  isRole,
  privilegedRoles,
  roles,
  type AuthenticationMethod,
  type Principal,
  type Role,
  type RoleGrant,
} from './principal.js'
export { foldLoginName, type User } from './accounts.js'
export {
  grantableRoles,
  maxPeoplePerPage,
  PeopleAdministration,
  type PersonSummary,
  type SetupIssued,
} from './people-admin.js'
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
export type { ApiTokenRecord } from './scoped-api-tokens.js'
export type { Session, SessionLimits, SessionStage } from './sessions.js'
