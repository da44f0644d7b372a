import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { AccessFixture } from '../../test/access-fixture.js'
import { dialects } from '../../test/support.js'
import { destroyDataKey } from '../keys/index.js'
import { findPatient } from '../records/index.js'
import {
  closeBreakGlassReview,
  emergencyAccessFacts,
  listBreakGlassReviews,
  maxRunningGrantsPerPerson,
  openBreakGlass,
} from './break-glass.js'

for (const { dialect, skip } of dialects) {
  describe(`break-glass grants on ${dialect}`, { skip }, () => {
    const fixture = new AccessFixture()
    before(async () => {
      await fixture.start(dialect)
    })
    after(async () => {
      await fixture.stop()
    })
    const ward = () => fixture.running.ward
    const reviews = (organizationId: string, status: 'open' | 'closed' = 'open') =>
      ward().store.transaction((tx) =>
        listBreakGlassReviews(tx, ward().keyring, {
          organizationId,
          status,
          limit: 500,
          dataKeyOf: async (patientId) =>
            (await findPatient(tx, organizationId, patientId)).dataKeyId,
        }),
      )

    test('a grant lasts its time box, for its clinician and patient only', async () => {
      const opened = new Date('2026-05-01T10:00:00Z')
      const grant = await ward().store.transaction((tx) =>
        openBreakGlass(
          tx,
          ward().keyring,
          {
            userId: 'user-er',
            patient: fixture.other,
            reasonCode: 'care-team-unavailable',
            reason: 'night shift, team unreachable',
            durationMinutes: 15,
            maxDurationMinutes: 240,
          },
          opened,
        ),
      )
      assert.equal(grant.expiresAt, '2026-05-01T10:15:00.000Z')
      const at = (minutes: number) => new Date(opened.getTime() + minutes * 60_000)
      const facts = (userId: string, pseudonym: string, minutes: number) =>
        emergencyAccessFacts(ward().store.db, fixture.alpha.id, userId, pseudonym, at(minutes))
      assert.deepEqual(
        [...(await facts('user-er', fixture.other.pseudonym, 14))],
        [fixture.other.pseudonym],
      )
      assert.equal((await facts('user-er', fixture.other.pseudonym, 15)).size, 0)
      assert.equal((await facts('user-other', fixture.other.pseudonym, 1)).size, 0)
      assert.equal((await facts('user-er', fixture.own.pseudonym, 1)).size, 0)
      const wrongOrganization = await emergencyAccessFacts(
        ward().store.db,
        fixture.beta.id,
        'user-er',
        fixture.other.pseudonym,
        at(1),
      )
      assert.equal(wrongOrganization.size, 0)
    })

    test('refuses a duration past the maximum and names the limit', async () => {
      await assert.rejects(
        ward().store.transaction((tx) =>
          openBreakGlass(tx, ward().keyring, {
            userId: 'user-er',
            patient: fixture.other,
            reasonCode: 'other',
            reason: 'long enough reason',
            durationMinutes: 61,
            maxDurationMinutes: 60,
          }),
        ),
        { code: 'ERR_INPUT_INVALID', message: /from 1 to 60/ },
      )
    })

    test('a sealed reason moved onto another grant does not open', async () => {
      const first = await fixture.grant(fixture.other, 'user-move-a')
      const second = await fixture.grant(fixture.other, 'user-move-b')
      const db = ward().store.db
      const row = await db
        .selectFrom('break_glass_grants')
        .select('sealed_reason')
        .where('id', '=', first.id)
        .executeTakeFirstOrThrow()
      await db
        .updateTable('break_glass_grants')
        .set({ sealed_reason: row.sealed_reason })
        .where('id', '=', second.id)
        .execute()
      await assert.rejects(reviews(fixture.alpha.id), { code: 'ERR_RECORD_UNREADABLE' })
      // Put things back for the tests after this one.
      await ward().store.transaction((tx) =>
        closeBreakGlassReview(tx, second, { reviewerUserId: 'user-po', outcome: 'unjustified' }),
      )
      await db.deleteFrom('break_glass_grants').where('id', '=', second.id).execute()
    })

    test('the queue lists open grants oldest first; closed ones move to the closed list', async () => {
      const grant = await fixture.grant(fixture.own, 'user-queue')
      const open = await reviews(fixture.alpha.id)
      assert.ok(
        open.some((item) => item.id === grant.id && item.reason === 'fixture emergency reason'),
      )
      const times = open.map((item) => item.openedAt)
      assert.deepEqual(times, [...times].sort())
      assert.equal(
        (await reviews(fixture.beta.id)).some((item) => item.id === grant.id),
        false,
      )

      const closed = await ward().store.transaction((tx) =>
        closeBreakGlassReview(tx, grant, { reviewerUserId: 'user-po', outcome: 'justified' }),
      )
      assert.equal(closed.reviewStatus, 'closed')
      assert.ok(closed.expiresAt <= new Date().toISOString())
      assert.equal(
        (await reviews(fixture.alpha.id)).some((item) => item.id === grant.id),
        false,
      )
      assert.ok((await reviews(fixture.alpha.id, 'closed')).some((item) => item.id === grant.id))
      await assert.rejects(
        ward().store.transaction((tx) =>
          closeBreakGlassReview(tx, grant, { reviewerUserId: 'user-po', outcome: 'justified' }),
        ),
        { code: 'ERR_REVIEW_CLOSED' },
      )
      await assert.rejects(
        ward().store.transaction((tx) =>
          closeBreakGlassReview(tx, grant, { reviewerUserId: 'user-po', outcome: 'maybe' }),
        ),
        { code: 'ERR_INPUT_INVALID', message: /outcome/ },
      )
    })

    test('one running grant per patient, a few per person, and never reviewed by its opener', async () => {
      const opener = 'user-limits'
      const first = await fixture.grant(fixture.other, opener)
      await assert.rejects(fixture.grant(fixture.other, opener), {
        code: 'ERR_LIMIT_REACHED',
        message: /already open/,
      })
      await assert.rejects(
        ward().store.transaction((tx) =>
          closeBreakGlassReview(tx, first, { reviewerUserId: opener, outcome: 'justified' }),
        ),
        { code: 'ERR_ACCESS_DENIED', message: /someone other than/ },
      )
      for (let index = 1; index < maxRunningGrantsPerPerson; index += 1) {
        await fixture.grant(await fixture.createPatient('alpha'), opener)
      }
      await assert.rejects(fixture.grant(await fixture.createPatient('alpha'), opener), {
        code: 'ERR_LIMIT_REACHED',
        message: new RegExp(`at most ${maxRunningGrantsPerPerson}`),
      })
    })

    test('destroying the patient’s data key shreds the reason with the records', async () => {
      const patient = await fixture.createPatient('alpha')
      const grant = await fixture.grant(patient, 'user-shred')
      await ward().store.transaction((tx) =>
        destroyDataKey(tx, ward().keyring, {
          organizationId: fixture.alpha.id,
          dataKeyId: patient.dataKeyId,
          reason: 'right-to-delete',
        }),
      )
      const item = (await reviews(fixture.alpha.id)).find((entry) => entry.id === grant.id)
      assert.ok(item)
      assert.equal(item.reason, null)
      assert.equal(item.reasonCode, 'emergency-treatment')
    })
  })
}
