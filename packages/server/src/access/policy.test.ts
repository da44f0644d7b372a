import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import {
  actionScope,
  actions,
  credentialRefusal,
  decide,
  noFacts,
  permissionTable,
  purposesOfUse,
  type AccessFacts,
  type Action,
  type PurposeOfUse,
  type Resource,
} from './policy.js'
import { privilegedRoles, roles, type Principal, type Role } from './principal.js'

const orgA = 'org-a'
const orgB = 'org-b'
const self = 'pt-selfselfselfselfself'
const ownPatient = 'pt-ownownownownownownow'
const otherPatient = 'pt-otherotherotherother'
const emergencyPatient = 'pt-emergencyemergencyem'
const ownTeam = 'team-own'
const otherTeam = 'team-other'

/** Every kind of resource the policy tells apart, with the facts that go with it. */
const situations = {
  platform: { resource: { type: 'platform', organizationId: null }, facts: noFacts },
  'audit-log-platform': { resource: { type: 'audit-log', organizationId: null }, facts: noFacts },
  organization: { resource: { type: 'organization', organizationId: orgA }, facts: noFacts },
  'audit-log': { resource: { type: 'audit-log', organizationId: orgA }, facts: noFacts },
  grant: {
    resource: { type: 'break-glass-grant', organizationId: orgA, patientPseudonym: otherPatient },
    facts: noFacts,
  },
  'other-organization': {
    resource: { type: 'organization', organizationId: orgB },
    facts: noFacts,
  },
  device: { resource: { type: 'device', organizationId: orgA }, facts: noFacts },
  // Devices assigned to a patient, as the FHIR Device read resolves them.
  'care-team-device': {
    resource: { type: 'device', organizationId: orgA, patientPseudonym: ownPatient },
    facts: facts({ careTeamPatients: [ownPatient], careTeams: [ownTeam] }),
  },
  'self-device': {
    resource: { type: 'device', organizationId: orgA, patientPseudonym: self },
    facts: noFacts,
  },
  'care-team-patient': {
    resource: { type: 'patient', organizationId: orgA, patientPseudonym: ownPatient },
    facts: facts({ careTeamPatients: [ownPatient], careTeams: [ownTeam] }),
  },
  'other-patient': {
    resource: { type: 'patient', organizationId: orgA, patientPseudonym: otherPatient },
    facts: facts({ careTeams: [ownTeam] }),
  },
  'emergency-patient': {
    resource: { type: 'patient', organizationId: orgA, patientPseudonym: emergencyPatient },
    facts: facts({ emergencyAccess: [emergencyPatient] }),
  },
  self: {
    resource: { type: 'patient', organizationId: orgA, patientPseudonym: self },
    facts: noFacts,
  },
  'own-team': {
    resource: { type: 'care-team', organizationId: orgA, careTeamId: ownTeam },
    facts: facts({ careTeams: [ownTeam] }),
  },
  'other-team': {
    resource: { type: 'care-team', organizationId: orgA, careTeamId: otherTeam },
    facts: facts({ careTeams: [ownTeam] }),
  },
  // Facts that would allow, for a resource of another organization: they must not.
  'other-organization-patient': {
    resource: { type: 'patient', organizationId: orgB, patientPseudonym: ownPatient },
    facts: facts({ careTeamPatients: [ownPatient], emergencyAccess: [ownPatient] }),
  },
} satisfies Record<string, { resource: Resource; facts: AccessFacts }>

type Situation = keyof typeof situations
const allSituations = Object.keys(situations) as Situation[]

/** Situations by the kind of resource, inside organization A. */
const org: Situation[] = ['organization']
const device: Situation[] = ['device', 'care-team-device', 'self-device']
const admin: PurposeOfUse[] = ['HSYSADMIN', 'HOPERAT']
const patients: Situation[] = ['care-team-patient', 'other-patient', 'emergency-patient', 'self']
const fhirClinical: Action[] = [
  'fhir.patient.read',
  'fhir.patient.identity',
  'fhir.observation.read',
  'fhir.device.read',
]

/** The FHIR API's rows of {@link expected}, per role. */
const fhirExpected: Partial<Record<Role, Allowance[]>> = {
  patient: [
    [fhirClinical, ['PATRQT'], ['self']],
    [['fhir.device.read'], ['PATRQT'], ['self-device']],
  ],
  clinician: [
    [fhirClinical, ['TREAT'], ['care-team-patient']],
    [fhirClinical, ['ETREAT'], ['emergency-patient']],
    [['fhir.device.read'], ['TREAT'], ['care-team-device']],
  ],
  'care-coordinator': [
    [fhirClinical, ['TREAT', 'CAREMGT'], ['care-team-patient']],
    [['fhir.device.read'], ['TREAT', 'CAREMGT'], ['care-team-device']],
  ],
  support: [
    [['fhir.patient.read', 'fhir.device.read'], admin, patients],
    [['fhir.device.read'], admin, device],
  ],
  'privacy-officer': [[['fhir.audit-event.search'], ['HOPERAT'], ['audit-log']]],
  auditor: [[['fhir.audit-event.search'], ['HOPERAT'], ['audit-log']]],
}

/** [actions, purposes, situations]: what a role may do, for which purposes, where. */
type Allowance = [readonly Action[], readonly PurposeOfUse[], readonly Situation[]]

/**
 * The role/action table as the README states it, written out independently of the policy's
 * own table: every (role, action, purpose, situation) not listed here must be denied.
 */
const expected: Record<Role, Allowance[]> = {
  patient: [[['observation.read'], ['PATRQT'], ['self']]],
  clinician: [
    [['observation.read'], ['TREAT'], ['care-team-patient']],
    [['observation.read'], ['ETREAT'], ['emergency-patient']],
    [['break-glass.open'], ['ETREAT'], ['other-patient', 'emergency-patient', 'self']],
    [['care-team.list'], ['TREAT', 'HOPERAT'], org],
    [['care-team.read'], ['TREAT', 'HOPERAT'], ['own-team']],
  ],
  'care-coordinator': [
    [['observation.read'], ['TREAT', 'CAREMGT'], ['care-team-patient']],
    [['care-team.list'], ['CAREMGT', 'HOPERAT'], org],
    [['care-team.read'], ['CAREMGT', 'HOPERAT'], ['own-team']],
    [['patient.create'], admin, org],
  ],
  support: [
    [['device-model.list', 'device.list', 'patient.list'], admin, org],
    [['device.assign', 'device.suspend', 'device.reinstate'], admin, device],
    [['rollout.list', 'rollout.read'], admin, org],
  ],
  'device-engineer': [
    [['device-model.list', 'device-model.create', 'device.list', 'device.create'], admin, org],
    [
      ['device.suspend', 'device.reinstate', 'device.revoke', 'enrollment-token.create'],
      admin,
      device,
    ],
    [
      ['release.list', 'rollout.list', 'rollout.read', 'rollout.create', 'rollout.manage'],
      admin,
      org,
    ],
    [['device.wipe', 'device.decommission', 'wipe-certificate.list'], admin, device],
    [['manufacturer-crl.upload'], admin, org],
  ],
  'privacy-officer': [
    [['break-glass.review'], ['HOPERAT'], ['organization', 'grant']],
    [['audit-log.read'], ['HOPERAT'], ['audit-log']],
  ],
  'security-officer': [
    [['device.list'], admin, org],
    [['device.suspend', 'device.reinstate', 'device.revoke'], admin, device],
    [['device.wipe', 'wipe-certificate.list'], admin, device],
    [['manufacturer-crl.upload'], admin, org],
    [['audit-log.read'], ['HOPERAT'], ['audit-log']],
  ],
  'org-admin': [
    [
      [
        'device-model.list',
        'device-model.create',
        'device.list',
        'device.create',
        'patient.list',
        'patient.create',
        'care-team.list',
        'care-team.create',
      ],
      admin,
      org,
    ],
    [['device.assign', 'device.suspend', 'device.reinstate', 'device.revoke'], admin, device],
    [['enrollment-token.create'], admin, device],
    [['care-team.read', 'care-team.manage'], admin, ['own-team', 'other-team']],
    [['person.list', 'person.create', 'person.manage'], admin, org],
    [
      ['release.list', 'rollout.list', 'rollout.read', 'rollout.create', 'rollout.manage'],
      admin,
      org,
    ],
    [['device.wipe', 'device.decommission', 'wipe-certificate.list'], admin, device],
    [['manufacturer-crl.upload'], admin, org],
  ],
  auditor: [[['audit-log.read'], ['HOPERAT'], ['audit-log']]],
  'platform-operator': [
    [['organization.list'], admin, ['platform']],
    [['audit-log.read'], admin, ['audit-log-platform']],
    [['organization.first-admin'], admin, ['platform']],
  ],
}

function facts(sets: {
  careTeamPatients?: string[]
  careTeams?: string[]
  emergencyAccess?: string[]
}): AccessFacts {
  return {
    careTeamPatients: new Set(sets.careTeamPatients ?? []),
    careTeams: new Set(sets.careTeams ?? []),
    emergencyAccess: new Set(sets.emergencyAccess ?? []),
  }
}

function principal(granted: Role | Role[], extra: Partial<Principal> = {}): Principal {
  const list = Array.isArray(granted) ? granted : [granted]
  const platform = list.includes('platform-operator')
  const organizationId = platform ? null : orgA
  return {
    userId: 'user-1',
    organizationId,
    grants: list.map((role) => ({ role, organizationId })),
    ...(list.includes('patient') ? { patientPseudonym: self } : {}),
    method: 'session',
    mfaVerified: true,
    credentialId: 'session-1',
    ...extra,
  }
}

function isExpected(role: Role, action: Action, purpose: PurposeOfUse, situation: Situation) {
  return [...expected[role], ...(fhirExpected[role] ?? [])].some(
    ([allowedActions, purposes, places]) =>
      allowedActions.includes(action) && purposes.includes(purpose) && places.includes(situation),
  )
}

function ask(
  who: Principal | undefined,
  action: Action,
  purposeOfUse: PurposeOfUse,
  situation: Situation,
  mfa: 'required' | 'off' = 'required',
) {
  const { resource, facts } = situations[situation]
  return decide({ principal: who, action, resource, purposeOfUse, facts, mfa })
}

describe('access policy', () => {
  test('decides every role × action × purpose × situation as the role table says', () => {
    const wrong: string[] = []
    let allowed = 0
    for (const role of roles) {
      const who = principal(role)
      for (const action of actions) {
        for (const purpose of purposesOfUse) {
          for (const situation of allSituations) {
            const decision = ask(who, action, purpose, situation)
            const want = isExpected(role, action, purpose, situation)
            if (decision.allowed !== want) {
              wrong.push(`${role} ${action} ${purpose} ${situation}: ${decision.rule}`)
            }
            if (decision.allowed) {
              allowed += 1
              assert.equal(decision.role, role)
              assert.match(decision.rule, new RegExp(`^${role}\\.[a-z-]+$`))
            } else {
              assert.match(decision.rule, /^deny\.[a-z-]+$/)
              assert.equal(decision.role, undefined)
            }
          }
        }
      }
    }
    assert.deepEqual(wrong, [])
    const listed = [...Object.values(expected), ...Object.values(fhirExpected)]
      .flat()
      .reduce((sum, [a, p, places]) => sum + a.length * p.length * places.length, 0)
    assert.equal(allowed, listed, 'every listed allowance is allowed, once')
  })

  test('no role but patient, clinician and care coordinator ever reads readings', () => {
    for (const role of roles) {
      if (role === 'patient' || role === 'clinician' || role === 'care-coordinator') continue
      for (const purpose of purposesOfUse) {
        for (const situation of allSituations) {
          for (const action of ['observation.read', 'fhir.observation.read'] as const) {
            assert.equal(ask(principal(role), action, purpose, situation).allowed, false)
          }
          assert.equal(
            ask(principal(role), 'fhir.patient.identity', purpose, situation).allowed,
            false,
          )
        }
      }
    }
  })

  test('an API token reads FHIR with scope fhir:read, AuditEvent only with fhir:audit', () => {
    const token = (scopes: string[]) =>
      principal('clinician', { method: 'api-token', mfaVerified: false, scopes })
    const read = ask(token(['fhir:read']), 'fhir.observation.read', 'TREAT', 'care-team-patient')
    assert.equal(read.rule, 'clinician.care-team')
    for (const action of fhirClinical) {
      assert.equal(
        ask(token(['fhir:audit']), action, 'TREAT', 'care-team-patient').rule,
        'deny.token-scope',
      )
    }
    // A scope for one action covers that action only.
    assert.equal(
      ask(token(['fhir:device:read']), 'fhir.observation.read', 'TREAT', 'care-team-patient').rule,
      'deny.token-scope',
    )
    assert.equal(
      ask(token(['observation:read']), 'fhir.observation.read', 'TREAT', 'care-team-patient').rule,
      'deny.token-scope',
    )
  })

  test('nothing is allowed on another organization, whatever the facts say', () => {
    for (const role of roles) {
      for (const action of actions) {
        for (const purpose of purposesOfUse) {
          for (const situation of ['other-organization', 'other-organization-patient'] as const) {
            const decision = ask(principal(role), action, purpose, situation)
            assert.deepEqual(decision, { allowed: false, rule: 'deny.no-grant' })
          }
        }
      }
    }
  })

  test('denies a request without a principal', () => {
    for (const action of actions) {
      for (const situation of allSituations) {
        assert.deepEqual(ask(undefined, action, 'TREAT', situation), {
          allowed: false,
          rule: 'deny.unauthenticated',
        })
      }
    }
  })

  test('denies everything to a privileged role that has not passed a second factor', () => {
    for (const role of roles) {
      const unverified = principal(role, { mfaVerified: false })
      for (const action of actions) {
        for (const purpose of purposesOfUse) {
          for (const situation of allSituations) {
            const decision = ask(unverified, action, purpose, situation)
            if (privilegedRoles.has(role)) {
              assert.deepEqual(decision, { allowed: false, rule: 'deny.mfa-required' })
            } else {
              assert.deepEqual(decision, ask(principal(role), action, purpose, situation))
            }
          }
        }
      }
    }
    // Holding a privileged role anywhere blocks the unprivileged one too.
    const both = principal(['clinician', 'org-admin'], { mfaVerified: false })
    assert.equal(
      ask(both, 'observation.read', 'TREAT', 'care-team-patient').rule,
      'deny.mfa-required',
    )
  })

  test('a session that must enroll MFA first is refused everything, whatever its roles or the setting', () => {
    for (const role of roles) {
      const enrolling = principal(role, { mfaVerified: false, mfaEnrollmentPending: true })
      for (const action of actions) {
        for (const situation of allSituations) {
          for (const mfa of ['required', 'off'] as const) {
            assert.deepEqual(ask(enrolling, action, 'HSYSADMIN', situation, mfa), {
              allowed: false,
              rule: 'deny.mfa-required',
            })
          }
        }
      }
    }
  })

  test('the credential alone decides the first refusals, before any resource is known', () => {
    assert.deepEqual(credentialRefusal(undefined, 'device.list', 'required'), {
      allowed: false,
      rule: 'deny.unauthenticated',
    })
    const admin = principal('org-admin', { mfaVerified: false })
    assert.equal(credentialRefusal(admin, 'device.list', 'required')?.rule, 'deny.mfa-required')
    assert.equal(credentialRefusal(admin, 'device.list', 'off'), undefined)
    const token = principal('clinician', {
      method: 'api-token',
      mfaVerified: false,
      scopes: ['observation:read'],
    })
    assert.equal(credentialRefusal(token, 'device.list', 'required')?.rule, 'deny.token-scope')
    assert.equal(credentialRefusal(token, 'observation.read', 'required'), undefined)
    assert.equal(credentialRefusal(principal('clinician'), 'device.list', 'required'), undefined)
  })

  test('WARD_AUTH_MFA=off waives the second factor for privileged roles, naming the waiver in the rule', () => {
    for (const role of roles) {
      const unverified = principal(role, { mfaVerified: false })
      for (const action of actions) {
        for (const purpose of purposesOfUse) {
          for (const situation of allSituations) {
            const required = ask(principal(role), action, purpose, situation)
            const waived = ask(unverified, action, purpose, situation, 'off')
            if (privilegedRoles.has(role) && required.allowed) {
              assert.deepEqual(waived, {
                ...required,
                rule: `${required.rule}+mfa-waived-by-configuration`,
              })
            } else {
              // Refusals, and people no second factor is asked of, are decided as ever.
              assert.deepEqual(waived, required)
            }
            // A verified session needs no waiver, and the setting changes nothing for it.
            assert.deepEqual(ask(principal(role), action, purpose, situation, 'off'), required)
          }
        }
      }
    }
    const adminToken = principal('org-admin', {
      method: 'api-token',
      mfaVerified: false,
      scopes: ['device:list'],
    })
    assert.equal(
      ask(adminToken, 'device.list', 'HSYSADMIN', 'organization', 'off').rule,
      'org-admin.administration+mfa-waived-by-configuration',
    )
    assert.equal(
      ask(adminToken, 'device.list', 'HSYSADMIN', 'organization').rule,
      'deny.mfa-required',
    )
  })

  test('an API token is limited to its scopes, and refused for privileged roles', () => {
    const token = (scopes?: string[]) =>
      principal('clinician', {
        method: 'api-token',
        mfaVerified: false,
        ...(scopes === undefined ? {} : { scopes }),
      })
    assert.deepEqual(
      ask(token(['observation:read']), 'observation.read', 'TREAT', 'care-team-patient'),
      {
        allowed: true,
        rule: 'clinician.care-team',
        role: 'clinician',
      },
    )
    assert.equal(
      ask(token(['observation:read']), 'observation.read', 'TREAT', 'other-patient').rule,
      'deny.not-care-team',
    )
    for (const action of actions) {
      assert.equal(ask(token(), action, 'TREAT', 'care-team-patient').rule, 'deny.token-scope')
      assert.equal(ask(token([]), action, 'TREAT', 'care-team-patient').rule, 'deny.token-scope')
      if (action !== 'observation.read') {
        assert.equal(
          ask(token(['observation:read']), action, 'ETREAT', 'emergency-patient').rule,
          'deny.token-scope',
        )
      }
    }
    const adminToken = principal('org-admin', {
      method: 'api-token',
      mfaVerified: false,
      scopes: actions.map(actionScope),
    })
    assert.equal(
      ask(adminToken, 'device.list', 'HSYSADMIN', 'organization').rule,
      'deny.mfa-required',
    )
  })

  test('counts only grants in the principal’s own organization', () => {
    const stray: Principal = {
      ...principal('org-admin'),
      grants: [
        { role: 'org-admin', organizationId: orgB },
        { role: 'platform-operator', organizationId: null },
      ],
    }
    assert.equal(ask(stray, 'device.list', 'HSYSADMIN', 'organization').rule, 'deny.no-grant')
    assert.equal(ask(stray, 'organization.list', 'HSYSADMIN', 'platform').rule, 'deny.no-grant')
    assert.equal(
      ask(principal('org-admin'), 'device.suspend', 'HSYSADMIN', 'organization').rule,
      'deny.resource-type',
    )
    const misplaced: Principal = {
      ...principal('org-admin'),
      organizationId: null,
      grants: [{ role: 'org-admin', organizationId: null }],
    }
    assert.equal(ask(misplaced, 'organization.list', 'HSYSADMIN', 'platform').rule, 'deny.role')
  })

  test('a patient is themself only in their own organization', () => {
    const elsewhere: Principal = {
      ...principal('patient'),
      organizationId: orgB,
      grants: [{ role: 'patient', organizationId: orgB }],
    }
    assert.equal(ask(elsewhere, 'observation.read', 'PATRQT', 'self').rule, 'deny.no-grant')
    assert.equal(
      ask(principal('patient'), 'observation.read', 'PATRQT', 'other-patient').rule,
      'deny.not-own-patient',
    )
  })

  test('names the reason of a denial', () => {
    const clinician = principal('clinician')
    assert.equal(
      ask(clinician, 'observation.read', 'HSYSADMIN', 'care-team-patient').rule,
      'deny.purpose-of-use',
    )
    assert.equal(
      ask(clinician, 'observation.read', 'TREAT', 'other-patient').rule,
      'deny.not-care-team',
    )
    assert.equal(
      ask(clinician, 'observation.read', 'ETREAT', 'other-patient').rule,
      'deny.not-care-team',
    )
    assert.equal(
      ask(clinician, 'observation.read', 'TREAT', 'emergency-patient').rule,
      'deny.not-care-team',
    )
    assert.equal(
      ask(clinician, 'care-team.read', 'TREAT', 'other-team').rule,
      'deny.not-team-member',
    )
    assert.equal(ask(clinician, 'device.list', 'HSYSADMIN', 'organization').rule, 'deny.role')
    assert.equal(
      ask(clinician, 'break-glass.open', 'ETREAT', 'care-team-patient').rule,
      'deny.care-team-covers',
    )
    assert.equal(
      ask(principal('support'), 'observation.read', 'TREAT', 'care-team-patient').rule,
      'deny.role',
    )
  })

  test('a person with several roles is allowed by whichever role permits', () => {
    const both = principal(['clinician', 'org-admin'])
    assert.equal(
      ask(both, 'device.list', 'HSYSADMIN', 'organization').rule,
      'org-admin.administration',
    )
    assert.equal(
      ask(both, 'observation.read', 'TREAT', 'care-team-patient').rule,
      'clinician.care-team',
    )
    assert.equal(ask(both, 'observation.read', 'TREAT', 'other-patient').allowed, false)
  })

  test('the permission table lists each allowing rule once per role and action', () => {
    const rows = permissionTable()
    const names = rows.map(([role, action, rule]) => `${role} ${action} ${rule}`)
    assert.equal(new Set(names).size, names.length)
    for (const [role, action, rule, purposes] of rows) {
      assert.ok(rule.startsWith(`${role}.`))
      assert.ok(actions.includes(action))
      assert.ok(purposes.length > 0)
    }
  })
})
