/**
 * The people side of Ward's access layer: the roles a person can hold and the principal an
 * authenticated request carries. Authentication (accounts, passwords, MFA, sessions, API
 * tokens) produces a {@link Principal}; the policy decides what a principal may do.
 */

/** Every role Ward knows. A person may hold several, each within one organization. */
export const roles = [
  'patient',
  'clinician',
  'care-coordinator',
  'support',
  'device-engineer',
  'privacy-officer',
  'security-officer',
  'org-admin',
  'auditor',
  'platform-operator',
] as const

export type Role = (typeof roles)[number]

/**
 * Roles that may change configuration, keys, people or devices, or read audit evidence. Each
 * of them requires a second factor: a person holding one cannot act until MFA is enrolled.
 * Only `WARD_AUTH_MFA=off`, which production refuses to start with, waives that, and the
 * policy names the waiver in the rule of every decision it changes.
 */
export const privilegedRoles: ReadonlySet<Role> = new Set<Role>([
  'org-admin',
  'privacy-officer',
  'security-officer',
  'device-engineer',
  'platform-operator',
  'auditor',
])

/**
 * True when the person is a patient: linked to a patient record or holding the `patient` role
 * (which needs the link, and which a link outlives when revoked). Audit events never record a
 * patient's network address, whatever role they act in.
 */
export function isPatientPerson(person: {
  readonly patientPseudonym?: string | null
  readonly grants?: readonly RoleGrant[]
}): boolean {
  return (
    (person.patientPseudonym !== undefined && person.patientPseudonym !== null) ||
    (person.grants ?? []).some((grant) => grant.role === 'patient')
  )
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (roles as readonly string[]).includes(value)
}

/** One role held in one organization; `platform-operator` is held with `organizationId` null. */
export interface RoleGrant {
  readonly role: Role
  readonly organizationId: string | null
}

/** How the principal proved who it is on this request. */
export type AuthenticationMethod = 'session' | 'api-token'

/**
 * Who an authenticated request acts as. Built by authentication, read by the policy; it holds
 * ids only, never names or other PHI.
 */
export interface Principal {
  readonly userId: string
  /** The organization the person belongs to; null for platform operators. */
  readonly organizationId: string | null
  readonly grants: readonly RoleGrant[]
  /** For a person holding the `patient` role: the pseudonym of the patient they are. */
  readonly patientPseudonym?: string
  readonly method: AuthenticationMethod
  /** True once this session passed a second factor (always false for API tokens). */
  readonly mfaVerified: boolean
  /**
   * True for a session that must enroll a second factor before anything else (sign-in stage
   * `mfa-enrollment`): signed in with a password, so known, but refused everything by the
   * policy (`deny.mfa-required`) until it enrolls one.
   */
  readonly mfaEnrollmentPending?: boolean
  /** For API tokens: the actions the token was issued for; absent for sessions. */
  readonly scopes?: readonly string[]
  /** Session or token id, to end it or to name it in the audit event. */
  readonly credentialId: string
}
