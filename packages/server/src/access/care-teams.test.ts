import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { AccessFixture } from '../../test/access-fixture.js'
import { dialects } from '../../test/support.js'
import { systemContext } from '../context.js'
import {
  addCareTeamMember,
  addCareTeamPatient,
  careTeamFacts,
  createCareTeam,
  findCareTeam,
  listCareTeams,
  maxCareTeamMembers,
  removeCareTeamMember,
} from './care-teams.js'

for (const { dialect, skip } of dialects) {
  describe(`care teams on ${dialect}`, { skip }, () => {
    const fixture = new AccessFixture()
    before(async () => {
      await fixture.start(dialect)
    })
    after(async () => {
      await fixture.stop()
    })
    const db = () => fixture.running.ward.store.db
    const transaction = <T>(
      work: Parameters<typeof fixture.running.ward.store.transaction<T>>[0],
    ) => fixture.running.ward.store.transaction(work)

    test('a team is found only in its own organization', async () => {
      const team = await transaction((tx) =>
        createCareTeam(tx, { organizationId: fixture.alpha.id, name: 'Dermatology' }),
      )
      assert.equal((await findCareTeam(db(), fixture.alpha.id, team.id)).name, 'Dermatology')
      await assert.rejects(findCareTeam(db(), fixture.beta.id, team.id), {
        code: 'ERR_NOT_FOUND',
        message: 'no such care team in this organization',
      })
      // The same name is free in another organization, taken in this one.
      await transaction((tx) =>
        createCareTeam(tx, { organizationId: fixture.beta.id, name: 'Dermatology' }),
      )
      await assert.rejects(
        transaction((tx) =>
          createCareTeam(tx, { organizationId: fixture.alpha.id, name: 'Dermatology' }),
        ),
        { code: 'ERR_CARE_TEAM_EXISTS' },
      )
    })

    test('refuses a bad name and a bad user id, naming the field', async () => {
      await assert.rejects(
        transaction((tx) => createCareTeam(tx, { organizationId: fixture.alpha.id, name: ' x' })),
        { code: 'ERR_INPUT_INVALID', message: /care team name/ },
      )
      await assert.rejects(
        transaction((tx) => addCareTeamMember(tx, fixture.team, 'no spaces allowed')),
        { code: 'ERR_INPUT_INVALID', message: /user id/ },
      )
    })

    test('facts say which teams a person is on and whether they have the patient', async () => {
      const clinician = await careTeamFacts(
        db(),
        fixture.alpha.id,
        'user-clinician',
        fixture.own.pseudonym,
      )
      assert.ok(clinician.careTeams.has(fixture.team.id))
      assert.deepEqual([...clinician.careTeamPatients], [fixture.own.pseudonym])
      const other = await careTeamFacts(
        db(),
        fixture.alpha.id,
        'user-clinician',
        fixture.other.pseudonym,
      )
      assert.equal(other.careTeamPatients.size, 0)
      // Membership in one organization says nothing in another.
      const elsewhere = await careTeamFacts(
        db(),
        fixture.beta.id,
        'user-clinician',
        fixture.betaPatient.pseudonym,
      )
      assert.equal(elsewhere.careTeams.size, 0)
      assert.equal(elsewhere.careTeamPatients.size, 0)
      assert.deepEqual(
        (await listCareTeams(db(), fixture.alpha.id, { memberUserId: 'user-clinician' })).map(
          (team) => team.id,
        ),
        [fixture.team.id],
      )
    })

    test('a patient of another organization cannot join a team', async () => {
      await assert.rejects(
        transaction((tx) => addCareTeamPatient(tx, fixture.team, fixture.betaPatient)),
        { code: 'ERR_PATIENT_NOT_FOUND' },
      )
      // Nor by writing the row directly: the foreign key ties the patient to the team's organization.
      await assert.rejects(
        db()
          .insertInto('care_team_patients')
          .values({
            care_team_id: fixture.team.id,
            organization_id: fixture.alpha.id,
            patient_id: fixture.betaPatient.id,
            patient_pseudonym: fixture.betaPatient.pseudonym,
            added_at: new Date().toISOString(),
          })
          .execute(),
      )
    })

    test('only a clinician or care coordinator of the same organization can join a team', async () => {
      await fixture.person(fixture.beta, 'user-of-beta')
      await fixture.person(null, 'user-operator-person', null)
      for (const stranger of ['user-of-beta', 'user-operator-person', 'user-nobody-has']) {
        await assert.rejects(
          transaction((tx) => addCareTeamMember(tx, fixture.team, stranger)),
          { code: 'ERR_NOT_FOUND', message: 'no such user' },
          stranger,
        )
      }
      // Nor anyone of it who holds neither care role: a care team serves clinicians' work.
      await fixture.person(fixture.alpha, 'user-only-support', 'support')
      await assert.rejects(
        transaction((tx) => addCareTeamMember(tx, fixture.team, 'user-only-support')),
        {
          code: 'ERR_INPUT_INVALID',
          message:
            'only a clinician or a care coordinator can be on a care team: grant the role first',
        },
      )
      const members = await db()
        .selectFrom('care_team_members')
        .select('user_id')
        .where('care_team_id', '=', fixture.team.id)
        .execute()
      assert.deepEqual(members.map((row) => row.user_id).sort(), [
        'user-care-coordinator',
        'user-clinician',
      ])
    })

    test('adding twice changes nothing; a team holds a bounded number of members', async () => {
      const team = await fixture.careTeam(fixture.alpha)
      await fixture.person(fixture.alpha, 'user-a')
      await fixture.person(fixture.alpha, 'user-one-too-many')
      for (let index = 0; index < maxCareTeamMembers; index += 1) {
        await fixture.person(fixture.alpha, `user-${index}`)
      }
      assert.equal(await transaction((tx) => addCareTeamMember(tx, team, 'user-a')), true)
      assert.equal(await transaction((tx) => addCareTeamMember(tx, team, 'user-a')), false)
      assert.equal(await transaction((tx) => removeCareTeamMember(tx, team, 'user-a')), true)
      assert.equal(await transaction((tx) => removeCareTeamMember(tx, team, 'user-a')), false)
      await transaction(async (tx) => {
        for (let index = 0; index < maxCareTeamMembers; index += 1) {
          await addCareTeamMember(tx, team, `user-${index}`)
        }
      })
      await assert.rejects(
        transaction((tx) => addCareTeamMember(tx, team, 'user-one-too-many')),
        { code: 'ERR_LIMIT_REACHED', message: new RegExp(`${maxCareTeamMembers} members`) },
      )
    })

    test('each change is audited in the organization log; an unchanged one is not', async () => {
      await fixture.person(fixture.alpha, 'user-new')
      const before = (await fixture.auditEvents('alpha')).length
      const context = systemContext('test')
      assert.equal(
        await fixture.access.addMember(context, fixture.alpha, fixture.team, 'user-new'),
        true,
      )
      assert.equal(
        await fixture.access.addMember(context, fixture.alpha, fixture.team, 'user-new'),
        false,
      )
      const events = await fixture.auditEvents('alpha')
      assert.equal(events.length, before + 1)
      const event = events.at(-1)
      assert.equal(event?.subtype.code, 'care-team.member-add')
      assert.deepEqual(event?.entity, [
        { detail: { user: 'user-new' }, type: 'CareTeam', what: fixture.team.id },
      ])
    })
  })
}
