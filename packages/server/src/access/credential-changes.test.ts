import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { Secret, TOTP } from 'otpauth'

import { isWardError, type WardErrorCode } from '@ward/core'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  testConfig,
  type TestDatabase,
} from '../../test/support.js'
import { systemContext } from '../context.js'
import type { Organization } from '../tenancy/index.js'
import { Ward, initializeWard } from '../ward.js'
import { People, type Caller, type SessionState } from './people.js'
import { SoftwareAuthenticator } from './test-support.js'

const password = 'amber meadow shutter softly'

async function rejectsWith(promise: Promise<unknown>, code: WardErrorCode): Promise<void> {
  try {
    await promise
  } catch (error) {
    assert.ok(isWardError(error, code), `expected ${code}, got ${String(error)}`)
    return
  }
  assert.fail(`expected ${code}, but it succeeded`)
}

function totpCode(secret: string, at: Date): string {
  const totp = new TOTP({
    algorithm: 'SHA1',
    digits: 6,
    period: 30,
    secret: Secret.fromBase32(secret),
  })
  return totp.generate({ timestamp: at.getTime() })
}

for (const { dialect, skip } of dialects) {
  describe(`credential changes on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let ward: Ward
    let people: People
    let clinic: Organization
    let now = new Date('2026-05-04T08:00:00.000Z')
    const admin = systemContext('test-admin')
    let counter = 0
    const caller = (): Caller => ({ address: '192.0.2.40', requestId: `r-${(counter += 1)}` })
    const advance = (ms: number) => {
      now = new Date(now.getTime() + ms)
    }

    async function person(login: string): Promise<string> {
      const created = await people.createUser(admin, {
        organizationId: clinic.id,
        loginName: login,
        roles: ['clinician'],
      })
      await people.completeSetup(caller(), created.setupToken, password)
      return created.user.id
    }

    async function state(token: string): Promise<SessionState> {
      const resumed = await people.resumeSession(token)
      assert.ok(resumed !== undefined, 'the session should be live')
      return resumed
    }

    async function auditBodies(): Promise<string[]> {
      const rows = await ward.store.db.selectFrom('audit_entries').select('body').execute()
      return rows.map((row) => Buffer.from(row.body).toString('utf8'))
    }

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      const config = testConfig(join(directory.path, 'home'), database.url)
      await initializeWard(config, systemContext('test'))
      ward = await Ward.open(config)
      people = new People(ward, { clock: () => now })
      clinic = await ward.createOrganization(admin, { slug: 'clinic', name: 'Clinic' })
    })

    after(async () => {
      await ward?.close()
      await database?.drop()
      directory?.remove()
    })

    /** A person with TOTP enrolled and their recovery codes; the clock moves past the step. */
    async function withTotp(login: string) {
      await person(login)
      const signed = await people.signIn(caller(), login, password)
      const enrollment = await people.startTotpEnrollment(caller(), await state(signed.token))
      const enrolled = await people.confirmTotp(
        caller(),
        await state(signed.token),
        totpCode(enrollment.secret, now),
      )
      advance(31_000)
      return { token: signed.token, secret: enrollment.secret, codes: enrolled.recoveryCodes ?? [] }
    }

    async function fullySignedIn(login: string, secret: string): Promise<string> {
      const signed = await people.signIn(caller(), login, password)
      assert.equal(signed.stage, 'second-factor')
      const rotated = await people.verifyTotp(
        caller(),
        await state(signed.token),
        totpCode(secret, now),
      )
      advance(31_000)
      return rotated.token
    }

    test('a session alone cannot replace an enrolled TOTP; password and current code can', async () => {
      const owner = await withTotp('totp.owner')
      const other = await fullySignedIn('totp.owner', owner.secret)
      const thief = await fullySignedIn('totp.owner', owner.secret)

      const stolen = await people.startTotpEnrollment(caller(), await state(thief))
      await rejectsWith(
        people.confirmTotp(caller(), await state(thief), totpCode(stolen.secret, now)),
        'ERR_INPUT_INVALID',
      )
      await rejectsWith(
        people.confirmTotp(caller(), await state(thief), totpCode(stolen.secret, now), {
          password: 'not the password at all',
          totpCode: totpCode(owner.secret, now),
        }),
        'ERR_UNAUTHENTICATED',
      )
      await rejectsWith(
        people.confirmTotp(caller(), await state(thief), totpCode(stolen.secret, now), {
          password,
        }),
        'ERR_INPUT_INVALID',
      )
      await rejectsWith(
        people.confirmTotp(caller(), await state(thief), totpCode(stolen.secret, now), {
          password,
          totpCode: totpCode(stolen.secret, now),
        }),
        'ERR_UNAUTHENTICATED',
      )
      advance(31_000)
      // The owner's authenticator still signs in.
      const check = await people.signIn(caller(), 'totp.owner', password)
      await people.verifyTotp(caller(), await state(check.token), totpCode(owner.secret, now))
      advance(31_000)

      const replacement = await people.startTotpEnrollment(caller(), await state(owner.token))
      const result = await people.confirmTotp(
        caller(),
        await state(owner.token),
        totpCode(replacement.secret, now),
        { password, totpCode: totpCode(owner.secret, now) },
      )
      assert.equal(result.recoveryCodes, undefined)
      assert.ok((await people.resumeSession(owner.token)) !== undefined)
      assert.equal(await people.resumeSession(other), undefined, 'other sessions end')
      assert.equal(await people.resumeSession(thief), undefined)
      assert.equal(await people.resumeSession(check.token), undefined)
      const bodies = await auditBodies()
      assert.ok(bodies.some((body) => body.includes('enrollment proof refused')))
      assert.ok(bodies.some((body) => body.includes('password totp')))
      assert.ok(!bodies.some((body) => body.includes(password)))
    })

    test('a security key is added beside TOTP only on the password and a current code', async () => {
      const owner = await withTotp('key.beside')
      const other = await fullySignedIn('key.beside', owner.secret)
      const key = new SoftwareAuthenticator()
      const origin = people.party.origin
      const options = await people.startWebauthnRegistration(await state(owner.token))
      await rejectsWith(
        people.finishWebauthnRegistration(
          caller(),
          await state(owner.token),
          key.register(options as never, origin),
        ),
        'ERR_INPUT_INVALID',
      )
      const retry = await people.startWebauthnRegistration(await state(owner.token))
      const added = await people.finishWebauthnRegistration(
        caller(),
        await state(owner.token),
        key.register(retry as never, origin),
        { password, totpCode: totpCode(owner.secret, now) },
      )
      assert.equal(added.recoveryCodes, undefined)
      assert.equal(await people.resumeSession(other), undefined)
      const signed = await people.signIn(caller(), 'key.beside', password)
      assert.deepEqual(signed.secondFactors, ['totp', 'webauthn', 'recovery-code'])
    })

    test('recovery codes are regenerated only on the password and a current second factor', async () => {
      const owner = await withTotp('codes.owner')
      const session = await state(owner.token)
      await rejectsWith(people.replaceRecoveryCodes(caller(), session), 'ERR_INPUT_INVALID')
      await rejectsWith(
        people.replaceRecoveryCodes(caller(), session, {
          password,
          recoveryCode: 'AAAA-BBBB-CCCC-DDDD',
        }),
        'ERR_UNAUTHENTICATED',
      )
      const other = await fullySignedIn('codes.owner', owner.secret)
      const fresh = await people.replaceRecoveryCodes(caller(), await state(owner.token), {
        password,
        recoveryCode: owner.codes[0] as string,
      })
      assert.equal(fresh.length, owner.codes.length)
      assert.equal(await people.resumeSession(other), undefined)
      // The old codes are gone, the new ones work.
      const signed = await people.signIn(caller(), 'codes.owner', password)
      await rejectsWith(
        people.redeemRecoveryCode(caller(), await state(signed.token), owner.codes[1] as string),
        'ERR_UNAUTHENTICATED',
      )
      await people.redeemRecoveryCode(caller(), await state(signed.token), fresh[0] as string)
    })

    test('passing the second factor or enrolling a first one rotates the session tokens', async () => {
      const owner = await withTotp('rotate.owner')
      const signed = await people.signIn(caller(), 'rotate.owner', password)
      const rotated = await people.verifyTotp(
        caller(),
        await state(signed.token),
        totpCode(owner.secret, now),
      )
      assert.notEqual(rotated.token, signed.token)
      assert.notEqual(rotated.csrfToken, signed.csrfToken)
      assert.equal(await people.resumeSession(signed.token), undefined)
      const after = await state(rotated.token)
      assert.equal(after.stage, 'complete')
      assert.equal(after.mfaVerified, true)
      await assert.rejects(
        people.resumeSession(rotated.token, { required: true, token: signed.csrfToken }),
        (error) => isWardError(error, 'ERR_ACCESS_DENIED'),
      )
      assert.ok(
        (await people.resumeSession(rotated.token, {
          required: true,
          token: rotated.csrfToken,
        })) !== undefined,
      )

      // A privileged person's first enrollment completes the session under a new token.
      const created = await people.createUser(admin, {
        organizationId: clinic.id,
        loginName: 'rotate.admin',
        roles: ['org-admin'],
      })
      await people.completeSetup(caller(), created.setupToken, password)
      const enrolling = await people.signIn(caller(), 'rotate.admin', password)
      assert.equal(enrolling.stage, 'mfa-enrollment')
      const enrollment = await people.startTotpEnrollment(caller(), await state(enrolling.token))
      const enrolled = await people.confirmTotp(
        caller(),
        await state(enrolling.token),
        totpCode(enrollment.secret, now),
      )
      assert.ok(enrolled.session !== undefined)
      assert.equal(await people.resumeSession(enrolling.token), undefined)
      assert.equal((await state(enrolled.session.token)).stage, 'complete')
    })

    test('sign-out everywhere revokes the API tokens too, audited', async () => {
      await person('tokens.everywhere')
      const signed = await people.signIn(caller(), 'tokens.everywhere', password)
      const issued = await people.issueApiToken(caller(), await state(signed.token), {
        label: 'script',
        scopes: ['observation:read'],
        days: 5,
      })
      assert.ok((await people.resolveApiToken(issued.token)) !== undefined)
      await people.signOutEverywhere(caller(), await state(signed.token))
      assert.equal(await people.resolveApiToken(issued.token), undefined)
      assert.ok((await auditBodies()).some((body) => body.includes('api-token.revoke-all')))
    })

    test('a setup token reissued to a person with a password ends their sessions, as a security alert', async () => {
      const userId = await person('sessions.reset')
      const first = await people.signIn(caller(), 'sessions.reset', password)
      const second = await people.signIn(caller(), 'sessions.reset', password)
      await people.reissueSetupToken(admin, userId)
      assert.equal(await people.resumeSession(first.token), undefined)
      assert.equal(await people.resumeSession(second.token), undefined)
      // The password still works until the new token is used.
      assert.ok(
        (await people.resumeSession(
          (await people.signIn(caller(), 'sessions.reset', password)).token,
        )) !== undefined,
      )

      const reset = (await auditBodies())
        .map(
          (body) =>
            JSON.parse(body) as {
              subtype: { code: string }
              type: { code: string }
              entity: { what: string; detail?: Record<string, string> }[]
            },
        )
        .filter(
          (event) =>
            event.subtype.code === 'user.setup-token.issue' && event.entity[0]?.what === userId,
        )
      assert.equal(reset.length, 1)
      assert.equal(reset[0]?.type.code, '110113')
      assert.deepEqual(reset[0]?.entity[0]?.detail, { endedSessions: '2', passwordSet: 'true' })
    })

    test('a password set through a reissued setup token revokes the API tokens', async () => {
      const userId = await person('tokens.recovered')
      const signed = await people.signIn(caller(), 'tokens.recovered', password)
      const issued = await people.issueApiToken(caller(), await state(signed.token), {
        label: 'script',
        scopes: ['observation:read'],
        days: 5,
      })
      const setup = await people.reissueSetupToken(admin, userId)
      await people.completeSetup(caller(), setup.token, 'a brand new recovered passphrase')
      assert.equal(await people.resolveApiToken(issued.token), undefined)
      assert.equal(await people.resumeSession(signed.token), undefined)
    })
  })
}
