import { privilegedRoles, type Principal, type Role } from './principal.js'

/**
 * Ward's access policy: one pure function, {@link decide}, that every request under access
 * control goes through. It denies by default, and every answer names the rule that decided, so
 * the audit event of an allowed operation and the service log line of a refused one say why.
 */

/** Everything a person can ask to do through the API, by stable name. */
export const actions = [
  'organization.list',
  'device-model.list',
  'device-model.create',
  'device.list',
  'device.create',
  'device.assign',
  'device.suspend',
  'device.reinstate',
  'device.revoke',
  'enrollment-token.create',
  'patient.list',
  'patient.create',
  'care-team.list',
  'care-team.read',
  'care-team.create',
  'care-team.manage',
  'break-glass.open',
  'break-glass.review',
  'observation.read',
  'audit-log.read',
  // The FHIR API (http/routes/fhir.ts). Reads and searches of one resource type share an
  // action: a search names one patient, so it is decided on that patient as a read is.
  'fhir.patient.read',
  'fhir.patient.identity',
  'fhir.observation.read',
  'fhir.device.read',
  'fhir.audit-event.search',
  // People administration, firmware rollouts and the device lifecycle.
  'person.list',
  'person.create',
  'person.manage',
  'organization.first-admin',
  'release.list',
  'rollout.list',
  'rollout.read',
  'rollout.create',
  'rollout.manage',
  'device.wipe',
  'device.decommission',
  'wipe-certificate.list',
  'manufacturer-crl.upload',
] as const

export type Action = (typeof actions)[number]

/**
 * HL7 v3 PurposeOfUse codes Ward accepts on a request. Others are refused as input errors
 * rather than silently mapped.
 */
export const purposesOfUse = [
  'TREAT',
  'ETREAT',
  'CAREMGT',
  'HOPERAT',
  'HSYSADMIN',
  'PATRQT',
  'HPAYMT',
  'HRESCH',
  'PUBHLTH',
] as const

export type PurposeOfUse = (typeof purposesOfUse)[number]

export function isPurposeOfUse(value: unknown): value is PurposeOfUse {
  return typeof value === 'string' && (purposesOfUse as readonly string[]).includes(value)
}

/** What kind of thing an action is about. */
export type ResourceType =
  | 'platform'
  | 'organization'
  | 'device'
  | 'patient'
  | 'care-team'
  | 'break-glass-grant'
  | 'audit-log'

/** The thing an action is about, as far as the policy needs to know it. */
export interface Resource {
  readonly type: ResourceType
  /** The organization the resource belongs to; null for platform resources. */
  readonly organizationId: string | null
  /** When the resource belongs to a patient: that patient's pseudonym. */
  readonly patientPseudonym?: string
  /** For a care team: its id, matched against the principal's own care teams. */
  readonly careTeamId?: string
}

/**
 * Facts about the principal that the policy cannot know by itself, looked up for this request
 * only. Each set is about the resource at hand; an empty set means "no".
 */
export interface AccessFacts {
  /** Pseudonyms of patients on a care team the principal is a member of. */
  readonly careTeamPatients: ReadonlySet<string>
  /** Ids of the care teams the principal is a member of. */
  readonly careTeams: ReadonlySet<string>
  /** Pseudonyms of patients the principal holds an open, unexpired emergency grant for. */
  readonly emergencyAccess: ReadonlySet<string>
}

export const noFacts: AccessFacts = {
  careTeamPatients: new Set(),
  careTeams: new Set(),
  emergencyAccess: new Set(),
}

/** One question to the policy. */
export interface AccessRequest {
  readonly principal: Principal | undefined
  readonly action: Action
  readonly resource: Resource
  readonly purposeOfUse: PurposeOfUse
  readonly facts: AccessFacts
  /**
   * The `WARD_AUTH_MFA` setting. `required`: a privileged role acts only on a credential that
   * passed a second factor. `off` (development only; production refuses to start with it)
   * waives that, and every decision it changes says so in its rule.
   */
  readonly mfa: 'required' | 'off'
}

/** Appended to the rule of an allowed decision that needed MFA waived by `WARD_AUTH_MFA=off`. */
export const mfaWaivedSuffix = '+mfa-waived-by-configuration'

/** The policy's answer: allowed or not, the rule that decided, and the role it was decided on. */
export interface AccessDecision {
  readonly allowed: boolean
  /** Stable name of the deciding rule, e.g. `clinician.care-team` or `deny.no-grant`. */
  readonly rule: string
  /** The role whose rule allowed the action; absent on denials. */
  readonly role?: Role
}

/** What each action is about; a request naming another kind of resource is refused. */
const resourceTypes: Readonly<Record<Action, readonly ResourceType[]>> = {
  'organization.list': ['platform'],
  'device-model.list': ['organization'],
  'device-model.create': ['organization'],
  'device.list': ['organization'],
  'device.create': ['organization'],
  'device.assign': ['device'],
  'device.suspend': ['device'],
  'device.reinstate': ['device'],
  'device.revoke': ['device'],
  'enrollment-token.create': ['device'],
  'patient.list': ['organization'],
  'patient.create': ['organization'],
  'care-team.list': ['organization'],
  'care-team.read': ['care-team'],
  'care-team.create': ['organization'],
  'care-team.manage': ['care-team'],
  'break-glass.open': ['patient'],
  'break-glass.review': ['organization', 'break-glass-grant'],
  'observation.read': ['patient'],
  'audit-log.read': ['audit-log'],
  'fhir.patient.read': ['patient'],
  'fhir.patient.identity': ['patient'],
  'fhir.observation.read': ['patient'],
  'fhir.device.read': ['device', 'patient'],
  'fhir.audit-event.search': ['audit-log'],
  'person.list': ['organization'],
  'person.create': ['organization'],
  'person.manage': ['organization'],
  'organization.first-admin': ['platform'],
  'release.list': ['organization'],
  'rollout.list': ['organization'],
  'rollout.read': ['organization'],
  'rollout.create': ['organization'],
  'rollout.manage': ['organization'],
  'device.wipe': ['device'],
  'device.decommission': ['device'],
  'wipe-certificate.list': ['device'],
  'manufacturer-crl.upload': ['organization'],
}

/**
 * API token scopes that stand for several actions, besides each action's own scope (see
 * {@link actionScope}): an EHR integration holds `fhir:read` rather than one scope per
 * resource.
 */
const tokenScopes: Readonly<Partial<Record<Action, readonly string[]>>> = {
  'fhir.patient.read': ['fhir:read'],
  'fhir.patient.identity': ['fhir:read'],
  'fhir.observation.read': ['fhir:read'],
  'fhir.device.read': ['fhir:read'],
  'fhir.audit-event.search': ['fhir:audit'],
}

/** The API token scope that grants `action`: its name with colons, e.g. `observation:read`. */
export function actionScope(action: Action): string {
  return action.replaceAll('.', ':')
}

/** Every scope an API token may be issued with. */
export const tokenScopeNames: ReadonlySet<string> = new Set([
  ...actions.map(actionScope),
  ...Object.values(tokenScopes).flat(),
])

function tokenMayDo(scopes: readonly string[], action: Action): boolean {
  return (
    scopes.includes(actionScope(action)) ||
    (tokenScopes[action] ?? []).some((s) => scopes.includes(s))
  )
}

/** Purposes of use that administrative actions are done for. */
const administration: readonly PurposeOfUse[] = ['HSYSADMIN', 'HOPERAT']

/**
 * How one role may do one action. `organization` allows it on any resource of the role's own
 * organization; `platform` on platform resources only; the others look at the patient or care
 * team the resource belongs to.
 */
type Scope =
  | 'organization'
  | 'platform'
  | 'self'
  | 'care-team-patient'
  | 'outside-care-teams'
  | 'emergency-grant'
  | 'care-team-member'

interface Permission {
  readonly scope: Scope
  readonly purposes: readonly PurposeOfUse[]
  /** Rule name when this permission allows; `<role>.<name>`. */
  readonly name: string
}

const fleet = (name: string): Permission => ({
  scope: 'organization',
  purposes: administration,
  name,
})

const fhirCare = (purposes: readonly PurposeOfUse[]): readonly Permission[] => [
  { scope: 'care-team-patient', purposes, name: 'care-team' },
]
const fhirEmergency: Permission = {
  scope: 'emergency-grant',
  purposes: ['ETREAT'],
  name: 'emergency-access',
}
const fhirSelf: Permission = { scope: 'self', purposes: ['PATRQT'], name: 'own-record' }

/**
 * The FHIR API's permissions, merged into {@link permissions}. Clinicians and care
 * coordinators read their care teams' patients, identity included, clinicians also a patient
 * under an open emergency grant; a patient reads themself; support reads devices and
 * pseudonymous Patients (never identity or Observations); auditors and privacy officers
 * search AuditEvent and read nothing clinical.
 */
const fhirPermissions: Readonly<
  Partial<Record<Role, Partial<Record<Action, readonly Permission[]>>>>
> = {
  patient: {
    'fhir.patient.read': [fhirSelf],
    'fhir.patient.identity': [fhirSelf],
    'fhir.observation.read': [fhirSelf],
    'fhir.device.read': [fhirSelf],
  },
  clinician: {
    'fhir.patient.read': [...fhirCare(['TREAT']), fhirEmergency],
    'fhir.patient.identity': [...fhirCare(['TREAT']), fhirEmergency],
    'fhir.observation.read': [...fhirCare(['TREAT']), fhirEmergency],
    'fhir.device.read': [...fhirCare(['TREAT']), fhirEmergency],
  },
  'care-coordinator': {
    'fhir.patient.read': fhirCare(['TREAT', 'CAREMGT']),
    'fhir.patient.identity': fhirCare(['TREAT', 'CAREMGT']),
    'fhir.observation.read': fhirCare(['TREAT', 'CAREMGT']),
    'fhir.device.read': fhirCare(['TREAT', 'CAREMGT']),
  },
  support: {
    'fhir.patient.read': [fleet('device-support')],
    'fhir.device.read': [fleet('device-support')],
  },
  'privacy-officer': {
    'fhir.audit-event.search': [
      { scope: 'organization', purposes: ['HOPERAT'], name: 'audit-review' },
    ],
  },
  auditor: {
    'fhir.audit-event.search': [
      { scope: 'organization', purposes: ['HOPERAT'], name: 'audit-evidence' },
    ],
  },
}

/**
 * The role/action table (README, "Roles and access"). Anything not listed is denied. A role's
 * permissions for one action are tried in order; the first that holds allows.
 */
const basePermissions: Readonly<Record<Role, Partial<Record<Action, readonly Permission[]>>>> = {
  patient: {
    'observation.read': [{ scope: 'self', purposes: ['PATRQT'], name: 'own-record' }],
  },
  clinician: {
    'observation.read': [
      { scope: 'care-team-patient', purposes: ['TREAT'], name: 'care-team' },
      { scope: 'emergency-grant', purposes: ['ETREAT'], name: 'emergency-access' },
    ],
    'break-glass.open': [
      { scope: 'outside-care-teams', purposes: ['ETREAT'], name: 'break-glass' },
    ],
    'care-team.list': [
      { scope: 'organization', purposes: ['TREAT', 'HOPERAT'], name: 'own-teams' },
    ],
    'care-team.read': [
      { scope: 'care-team-member', purposes: ['TREAT', 'HOPERAT'], name: 'team-member' },
    ],
  },
  'care-coordinator': {
    'observation.read': [
      { scope: 'care-team-patient', purposes: ['TREAT', 'CAREMGT'], name: 'care-team' },
    ],
    'care-team.list': [
      { scope: 'organization', purposes: ['CAREMGT', 'HOPERAT'], name: 'own-teams' },
    ],
    'care-team.read': [
      { scope: 'care-team-member', purposes: ['CAREMGT', 'HOPERAT'], name: 'team-member' },
    ],
    'patient.create': [fleet('register-patient')],
  },
  support: {
    'device-model.list': [fleet('device-support')],
    'device.list': [fleet('device-support')],
    'device.assign': [fleet('device-support')],
    'device.suspend': [fleet('device-support')],
    'device.reinstate': [fleet('device-support')],
    'patient.list': [fleet('device-support')],
    'rollout.list': [fleet('device-support')],
    'rollout.read': [fleet('device-support')],
  },
  'device-engineer': {
    'device-model.list': [fleet('device-engineering')],
    'device-model.create': [fleet('device-engineering')],
    'device.list': [fleet('device-engineering')],
    'device.create': [fleet('device-engineering')],
    'device.suspend': [fleet('device-engineering')],
    'device.reinstate': [fleet('device-engineering')],
    'device.revoke': [fleet('device-engineering')],
    'enrollment-token.create': [fleet('device-engineering')],
    'release.list': [fleet('device-engineering')],
    'rollout.list': [fleet('device-engineering')],
    'rollout.read': [fleet('device-engineering')],
    'rollout.create': [fleet('device-engineering')],
    'rollout.manage': [fleet('device-engineering')],
    'device.wipe': [fleet('device-engineering')],
    'device.decommission': [fleet('device-engineering')],
    'wipe-certificate.list': [fleet('device-engineering')],
    'manufacturer-crl.upload': [fleet('device-engineering')],
  },
  'privacy-officer': {
    'break-glass.review': [{ scope: 'organization', purposes: ['HOPERAT'], name: 'review' }],
    'audit-log.read': [{ scope: 'organization', purposes: ['HOPERAT'], name: 'audit-review' }],
  },
  'security-officer': {
    'device.list': [fleet('incident-response')],
    'device.suspend': [fleet('incident-response')],
    'device.reinstate': [fleet('incident-response')],
    'device.revoke': [fleet('incident-response')],
    'device.wipe': [fleet('incident-response')],
    'wipe-certificate.list': [fleet('incident-response')],
    'manufacturer-crl.upload': [fleet('incident-response')],
    'audit-log.read': [{ scope: 'organization', purposes: ['HOPERAT'], name: 'audit-review' }],
  },
  'org-admin': {
    'device-model.list': [fleet('administration')],
    'device-model.create': [fleet('administration')],
    'device.list': [fleet('administration')],
    'device.create': [fleet('administration')],
    'device.assign': [fleet('administration')],
    'device.suspend': [fleet('administration')],
    'device.reinstate': [fleet('administration')],
    'device.revoke': [fleet('administration')],
    'enrollment-token.create': [fleet('administration')],
    'patient.list': [fleet('administration')],
    'patient.create': [fleet('administration')],
    'care-team.list': [fleet('administration')],
    'care-team.read': [fleet('administration')],
    'care-team.create': [fleet('administration')],
    'care-team.manage': [fleet('administration')],
    'person.list': [fleet('people-administration')],
    'person.create': [fleet('people-administration')],
    'person.manage': [fleet('people-administration')],
    'release.list': [fleet('administration')],
    'rollout.list': [fleet('administration')],
    'rollout.read': [fleet('administration')],
    'rollout.create': [fleet('administration')],
    'rollout.manage': [fleet('administration')],
    'device.wipe': [fleet('administration')],
    'device.decommission': [fleet('administration')],
    'wipe-certificate.list': [fleet('administration')],
    'manufacturer-crl.upload': [fleet('administration')],
  },
  auditor: {
    'audit-log.read': [{ scope: 'organization', purposes: ['HOPERAT'], name: 'audit-evidence' }],
  },
  'platform-operator': {
    'organization.list': [{ scope: 'platform', purposes: administration, name: 'platform' }],
    'audit-log.read': [{ scope: 'platform', purposes: administration, name: 'platform-log' }],
    'organization.first-admin': [
      { scope: 'platform', purposes: administration, name: 'first-admin' },
    ],
  },
}

const permissions: Readonly<Record<Role, Partial<Record<Action, readonly Permission[]>>>> =
  Object.fromEntries(
    Object.entries(basePermissions).map(([role, byAction]) => [
      role,
      { ...byAction, ...fhirPermissions[role as Role] },
    ]),
  ) as Record<Role, Partial<Record<Action, readonly Permission[]>>>

/**
 * Decides whether `request.principal` may do `request.action` on `request.resource` for
 * `request.purposeOfUse`. Deny by default; the checks run in this order and the first that
 * fails names the rule:
 *
 * 1. `deny.unauthenticated` — no principal.
 * 2. `deny.mfa-required` — a session that must enroll a second factor before anything else;
 *    or the principal holds a privileged role (in any organization) and this credential has
 *    not passed a second factor. API tokens never have, so a token acting
 *    for a person with a privileged role is refused everything here. With `mfa: 'off'` this
 *    check is waived, and an allowed decision it would have refused names its rule with
 *    {@link mfaWaivedSuffix} (`org-admin.administration+mfa-waived-by-configuration`), so the
 *    audit trail shows every action taken without the second factor.
 * 3. `deny.token-scope` — an API token whose scopes include neither the action nor a scope
 *    standing for it (`fhir:read`, `fhir:audit`).
 *
 *    These three look at the credential alone: {@link credentialRefusal}, which routes ask
 *    before they look the resource up.
 * 4. `deny.no-grant` — no role in the resource's organization (or, for platform resources, no
 *    platform role). Callers answer this one as "not found", since the resource is not theirs
 *    to know of.
 * 5. `deny.resource-type` — the resource is not the kind the action is about (a route that
 *    resolves the wrong thing is refused rather than trusted).
 * 6. `deny.purpose-of-use` — a role may do the action, but not for this purpose.
 * 7. `deny.not-own-patient`, `deny.not-care-team`, `deny.not-team-member`: the action is the
 *    role's, but the resource is another patient's or another team's; `deny.care-team-covers`:
 *    break-glass for a patient the clinician's care teams already have.
 * 8. `deny.role` — none of the principal's roles there may do the action.
 *
 * An allowed decision names `<role>.<rule>`, e.g. `clinician.emergency-access`, followed by
 * {@link mfaWaivedSuffix} when the MFA requirement was waived for it.
 */
export function decide(request: AccessRequest): AccessDecision {
  const { principal, action, resource, purposeOfUse, facts } = request
  if (principal === undefined) return deny('deny.unauthenticated')
  const refusal = credentialRefusal(principal, action, request.mfa)
  if (refusal !== undefined) return refusal
  const suffix = lacksMfa(principal) ? mfaWaivedSuffix : ''

  // Only grants in the principal's own organization count, and only there.
  const rolesHere = principal.grants
    .filter(
      (grant) =>
        grant.organizationId === principal.organizationId &&
        grant.organizationId === resource.organizationId,
    )
    .map((grant) => grant.role)
  if (rolesHere.length === 0) return deny('deny.no-grant')
  if (!resourceTypes[action].includes(resource.type)) return deny('deny.resource-type')

  // The most telling reason among the roles that came close, if none allows.
  let closest = 'deny.role'
  for (const role of rolesHere) {
    for (const permission of permissions[role][action] ?? []) {
      if (!permission.purposes.includes(purposeOfUse)) {
        if (closest === 'deny.role') closest = 'deny.purpose-of-use'
        continue
      }
      const scoped = inScope(permission.scope, principal, resource, facts)
      if (scoped === true) {
        return { allowed: true, rule: `${role}.${permission.name}${suffix}`, role }
      }
      closest = scoped
    }
  }
  return deny(closest)
}

/**
 * The checks of {@link decide} that look at the credential only, never at the resource —
 * `deny.unauthenticated`, `deny.mfa-required`, `deny.token-scope` — or undefined when they
 * pass. Routes ask this before they look the resource up, so that a credential refused here
 * learns nothing about what exists: a 403 for a resource that is there beside a 404 for one
 * that is not would tell it.
 */
export function credentialRefusal(
  principal: Principal | undefined,
  action: Action,
  mfa: AccessRequest['mfa'],
): AccessDecision | undefined {
  if (principal === undefined) return deny('deny.unauthenticated')
  if (principal.mfaEnrollmentPending === true) return deny('deny.mfa-required')
  if (lacksMfa(principal) && mfa !== 'off') return deny('deny.mfa-required')
  if (principal.method === 'api-token' && !tokenMayDo(principal.scopes ?? [], action)) {
    return deny('deny.token-scope')
  }
  return undefined
}

/** True when the principal holds a privileged role and this credential passed no second factor. */
function lacksMfa(principal: Principal): boolean {
  return !principal.mfaVerified && principal.grants.some((grant) => privilegedRoles.has(grant.role))
}

/** True when the resource is within `scope` for the principal, or the rule that says it is not. */
function inScope(
  scope: Scope,
  principal: Principal,
  resource: Resource,
  facts: AccessFacts,
): true | string {
  const patient = resource.patientPseudonym
  switch (scope) {
    case 'organization':
      return resource.organizationId !== null ? true : 'deny.role'
    case 'platform':
      return resource.organizationId === null ? true : 'deny.role'
    case 'self':
      return patient !== undefined &&
        principal.patientPseudonym === patient &&
        principal.organizationId === resource.organizationId
        ? true
        : 'deny.not-own-patient'
    case 'care-team-patient':
      return patient !== undefined && facts.careTeamPatients.has(patient)
        ? true
        : 'deny.not-care-team'
    case 'outside-care-teams':
      // Emergency access is for patients the clinician's care teams do not already cover.
      return patient !== undefined && !facts.careTeamPatients.has(patient)
        ? true
        : 'deny.care-team-covers'
    case 'emergency-grant':
      return patient !== undefined && facts.emergencyAccess.has(patient)
        ? true
        : 'deny.not-care-team'
    case 'care-team-member':
      return resource.careTeamId !== undefined && facts.careTeams.has(resource.careTeamId)
        ? true
        : 'deny.not-team-member'
  }
}

function deny(rule: string): AccessDecision {
  return { allowed: false, rule }
}

/** Every permission as `[role, action, rule]`, for the README table and its test. */
export function permissionTable(): [Role, Action, string, readonly PurposeOfUse[]][] {
  const rows: [Role, Action, string, readonly PurposeOfUse[]][] = []
  for (const [role, byAction] of Object.entries(permissions) as [
    Role,
    Partial<Record<Action, readonly Permission[]>>,
  ][]) {
    for (const [action, list] of Object.entries(byAction) as [Action, readonly Permission[]][]) {
      for (const permission of list) {
        rows.push([role, action, `${role}.${permission.name}`, permission.purposes])
      }
    }
  }
  return rows
}
