import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { isWardError, type WardErrorCode } from '@ward/core'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  testConfig,
  type TestDatabase,
} from '../../test/support.js'
import type { OperationContext } from '../context.js'
import { systemContext } from '../context.js'
import type { Patient } from '../records/index.js'
import type { Organization } from '../tenancy/index.js'
import { Ward, initializeWard } from '../ward.js'
import { PeopleAdministration, grantableRoles } from './people-admin.js'
import { roles } from './principal.js'

async function rejectsWith(promise: Promise<unknown>, code: WardErrorCode): Promise<WardErrorCode> {
  try {
    await promise
  } catch (error) {
    assert.ok(isWardError(error, code), `expected ${code}, got ${String(error)}`)
    return code
  }
  assert.fail(`expected ${code}, but it succeeded`)
}

const password = 'copper lighthouse evening slowly'

for (const { dialect, skip } of dialects) {
  describe(`people administration on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let ward: Ward
    let admin: PeopleAdministration
    let clinic: Organization
    let other: Organization
    let patient: Patient
    let otherPatient: Patient
    const system = systemContext('test')
    /** The org admin acting, as the route's context names them. */
    const as = (userId: string): OperationContext => ({
      ...systemContext('test'),
      actor: { type: 'user', id: userId, role: 'org-admin' },
    })

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      const config = testConfig(join(directory.path, 'home'), database.url)
      await initializeWard(config, system)
      ward = await Ward.open(config)
      admin = new PeopleAdministration(ward)
      clinic = await ward.createOrganization(system, { slug: 'clinic', name: 'Clinic' })
      other = await ward.createOrganization(system, { slug: 'other', name: 'Other' })
      const identity = { name: { family: 'Testpatient', given: ['Una'] }, birthDate: '1960-05-05' }
      patient = await ward.fleet.createPatient(system, 'clinic', identity)
      otherPatient = await ward.fleet.createPatient(system, 'other', identity)
    })

    after(async () => {
      await ward?.close()
      await database?.drop()
      directory?.remove()
    })

    test('an org admin grants every role of an organization but platform-operator', () => {
      assert.deepEqual(
        roles.filter((role) => !(grantableRoles['org-admin'] ?? []).includes(role)),
        ['platform-operator'],
      )
      assert.deepEqual(grantableRoles['platform-operator'], ['org-admin'])
      assert.equal(grantableRoles['clinician'], undefined)
    })

    test('the first org admin: once per organization; again only before they set a password', async () => {
      const first = await admin.createFirstAdmin(system, clinic, 'Clinic.Admin')
      assert.equal(first.person.loginName, 'clinic.admin')
      assert.deepEqual(first.person.roles, ['org-admin'])
      assert.equal(first.person.passwordSet, false)
      // Asked again before setup: a new token, the old one spent.
      const again = await admin.createFirstAdmin(system, clinic, 'clinic.admin')
      assert.equal(again.person.id, first.person.id)
      assert.notEqual(again.setupToken, first.setupToken)
      await ward.people.completeSetup(
        { address: '127.0.0.1', requestId: 'r' },
        again.setupToken,
        password,
      )
      await rejectsWith(
        admin.createFirstAdmin(system, clinic, 'clinic.admin'),
        'ERR_ALREADY_INITIALIZED',
      )
      await rejectsWith(
        admin.createFirstAdmin(system, clinic, 'second.admin'),
        'ERR_ALREADY_INITIALIZED',
      )
    })

    test('creates, lists, grants, revokes, disables and reissues, within the organization only', async () => {
      const actor = (await admin.list(clinic)).find((person) => person.loginName === 'clinic.admin')
      assert.ok(actor)
      const context = as(actor.id)

      await rejectsWith(
        admin.create(context, clinic, 'org-admin', {
          loginName: 'op.two',
          roles: ['platform-operator'],
        }),
        'ERR_ACCESS_DENIED',
      )
      await rejectsWith(
        admin.create(context, clinic, 'platform-operator', {
          loginName: 'dr.one',
          roles: ['clinician'],
        }),
        'ERR_ACCESS_DENIED',
      )
      const doctor = await admin.create(context, clinic, 'org-admin', {
        loginName: 'dr.one',
        roles: ['clinician'],
      })
      assert.match(doctor.setupToken, /^ward_setup_/)

      // The patient role links a patient of this organization, and only such.
      await rejectsWith(
        admin.grant(
          context,
          clinic,
          'org-admin',
          doctor.person.id,
          'patient',
          otherPatient.pseudonym,
        ),
        'ERR_INPUT_INVALID',
      )
      await rejectsWith(
        admin.grant(context, clinic, 'org-admin', doctor.person.id, 'patient'),
        'ERR_INPUT_INVALID',
      )
      const linked = await admin.grant(
        context,
        clinic,
        'org-admin',
        doctor.person.id,
        'patient',
        patient.pseudonym,
      )
      assert.deepEqual(linked.roles, ['clinician', 'patient'])
      assert.equal(linked.patient, patient.pseudonym)
      await rejectsWith(
        admin.grant(context, clinic, 'org-admin', doctor.person.id, 'org-admin', patient.pseudonym),
        'ERR_INPUT_INVALID',
      )

      const revoked = await admin.revoke(context, clinic, 'org-admin', doctor.person.id, 'patient')
      assert.deepEqual(revoked.roles, ['clinician'])
      await rejectsWith(
        admin.revoke(context, clinic, 'org-admin', actor.id, 'org-admin'),
        'ERR_INPUT_INVALID',
      )
      await rejectsWith(admin.disable(context, clinic, actor.id), 'ERR_INPUT_INVALID')
      // Not even a role an org admin may grant others: no clinician or reviewer on one's own say.
      await rejectsWith(
        admin.grant(context, clinic, 'org-admin', actor.id, 'clinician'),
        'ERR_ACCESS_DENIED',
      )
      await rejectsWith(
        admin.grant(context, clinic, 'org-admin', actor.id, 'privacy-officer'),
        'ERR_ACCESS_DENIED',
      )

      const listed = await admin.list(clinic)
      assert.deepEqual(
        listed.map((person) => person.loginName),
        ['clinic.admin', 'dr.one'],
      )
      assert.deepEqual(
        (await admin.list(clinic, { limit: 1, after: 'clinic.admin' })).map((p) => p.loginName),
        ['dr.one'],
      )
      await rejectsWith(admin.list(clinic, { limit: 0 }), 'ERR_INPUT_INVALID')
      assert.equal(JSON.stringify(listed).includes('ward_setup_'), false)

      // Another organization's admin finds none of clinic's people.
      await rejectsWith(admin.disable(context, other, doctor.person.id), 'ERR_NOT_FOUND')
      await rejectsWith(admin.reissueSetupToken(context, other, doctor.person.id), 'ERR_NOT_FOUND')
      await rejectsWith(
        admin.grant(context, other, 'org-admin', doctor.person.id, 'auditor'),
        'ERR_NOT_FOUND',
      )

      const reissued = await admin.reissueSetupToken(context, clinic, doctor.person.id)
      assert.notEqual(reissued.setupToken, doctor.setupToken)
      const disabled = await admin.disable(context, clinic, doctor.person.id)
      assert.equal(disabled.status, 'disabled')
      await rejectsWith(
        admin.reissueSetupToken(context, clinic, doctor.person.id),
        'ERR_INPUT_INVALID',
      )

      // Each change is in clinic's log, with ids and roles, never a token.
      const rows = await ward.store.db
        .selectFrom('audit_entries')
        .innerJoin('audit_logs', 'audit_logs.id', 'audit_entries.log_id')
        .select('audit_entries.body')
        .where('audit_logs.name', '=', 'clinic')
        .execute()
      const bodies = rows.map((row) => Buffer.from(row.body).toString('utf8'))
      const operations = bodies.map(
        (body) => (JSON.parse(body) as { subtype: { code: string } }).subtype.code,
      )
      for (const operation of [
        'user.create',
        'user.role.grant',
        'user.role.revoke',
        'user.setup-token.issue',
        'user.disable',
      ]) {
        assert.ok(operations.includes(operation), operation)
      }
      const all = bodies.join('\n')
      assert.equal(all.includes(doctor.setupToken), false)
      assert.equal(all.includes(reissued.setupToken), false)
    })
  })
}
