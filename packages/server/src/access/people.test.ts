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
import { signInThrottlePolicy } from './sign-in-throttle.js'
import { SoftwareAuthenticator } from './test-support.js'

const password = 'violet harbour lantern quietly'
const origin = 'https://ward.test'

async function rejectsWith(promise: Promise<unknown>, code: WardErrorCode): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    assert.ok(isWardError(error, code), `expected ${code}, got ${String(error)}`)
    return error
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
  describe(`people on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let ward: Ward
    let people: People
    let clinic: Organization
    let now = new Date('2026-03-02T09:00:00.000Z')
    const admin = systemContext('test-admin')
    let addressCounter = 0
    let keyUserCodes: readonly string[] = []
    let totpSecret = ''
    const caller = (address = '192.0.2.10'): Caller => ({
      address,
      requestId: `r-${(addressCounter += 1)}`,
    })
    const advance = (ms: number) => {
      now = new Date(now.getTime() + ms)
    }

    /** Creates a user with `roles` and a password, returning their id. */
    async function person(login: string, roles: Parameters<People['createUser']>[1]['roles']) {
      const platform = roles.includes('platform-operator')
      const created = await people.createUser(admin, {
        organizationId: platform ? null : clinic.id,
        loginName: login,
        roles,
      })
      await people.completeSetup(caller(), created.setupToken, password)
      return created.user.id
    }

    async function signedIn(login: string, address?: string): Promise<SessionState> {
      const result = await people.signIn(caller(address), login, password)
      const state = await people.resumeSession(result.token)
      assert.ok(state !== undefined)
      return state
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

    test('a new person chooses a password with the setup token, once, then signs in', async () => {
      const created = await people.createUser(admin, {
        organizationId: clinic.id,
        loginName: 'Nurse.Ada',
        roles: ['clinician'],
      })
      assert.equal(created.user.loginName, 'nurse.ada')
      await rejectsWith(
        people.completeSetup(caller(), created.setupToken, 'short'),
        'ERR_INPUT_INVALID',
      )
      await people.completeSetup(caller(), created.setupToken, password)
      await rejectsWith(
        people.completeSetup(caller(), created.setupToken, password),
        'ERR_UNAUTHENTICATED',
      )

      const result = await people.signIn(caller(), 'NURSE.ADA', password)
      assert.equal(result.stage, 'complete')
      const state = await people.resumeSession(result.token)
      const principal = state === undefined ? undefined : people.principalOf(state)
      assert.equal(principal?.userId, created.user.id)
      assert.equal(principal?.organizationId, clinic.id)
      assert.deepEqual(principal?.grants, [{ role: 'clinician', organizationId: clinic.id }])
      assert.equal(principal?.mfaVerified, false)
    })

    test('a wrong password and an unknown login name get the same answer in similar time', async () => {
      await person('lab.tech', ['clinician'])
      const timings = { wrong: [] as number[], unknown: [] as number[] }
      const messages = new Set<string>()
      for (let round = 0; round < 5; round += 1) {
        for (const [kind, login] of [
          ['wrong', 'lab.tech'],
          ['unknown', 'nobody.here'],
        ] as const) {
          const started = performance.now()
          const error = await rejectsWith(
            people.signIn(caller(`198.51.100.${round}`), login, 'not the password at all'),
            'ERR_UNAUTHENTICATED',
          )
          timings[kind].push(performance.now() - started)
          messages.add((error as Error).message)
        }
      }
      assert.equal(messages.size, 1)
      const median = (values: number[]) => [...values].sort((a, b) => a - b)[2] as number
      const ratio = median(timings.wrong) / median(timings.unknown)
      // Without the Argon2id work for unknown names the ratio is far above 10 (a hash against
      // one indexed lookup); the bounds are that wide because the test machine is shared and a
      // neighbour's load must not fail the test.
      assert.ok(ratio > 0.1 && ratio < 10, `wrong/unknown timing ratio ${ratio.toFixed(2)}`)
    })

    test('the address guessing at an account is blocked; the owner elsewhere is not', async () => {
      const userId = await person('target.user', ['clinician'])
      // The owner has signed in from home before.
      await signedIn('target.user', '203.0.113.1')

      const attacker = '203.0.113.66'
      for (let index = 0; index < signInThrottlePolicy.pairFailures; index += 1) {
        await rejectsWith(
          people.signIn(caller(attacker), 'target.user', 'guess guess guess guess'),
          'ERR_UNAUTHENTICATED',
        )
      }
      // Blocked now, even with the right password: the guesser learns nothing more.
      await rejectsWith(
        people.signIn(caller(attacker), 'target.user', password),
        'ERR_RATE_LIMITED',
      )
      // An unknown name is throttled exactly the same way.
      for (let index = 0; index < signInThrottlePolicy.pairFailures; index += 1) {
        await rejectsWith(
          people.signIn(caller(attacker), 'ghost.user', 'guess guess guess guess'),
          'ERR_UNAUTHENTICATED',
        )
      }
      await rejectsWith(people.signIn(caller(attacker), 'ghost.user', password), 'ERR_RATE_LIMITED')

      // Many addresses fail on the account (the attacker's failures count too): once past the
      // free failures it is slowed for new addresses, never for the owner's.
      const remaining = signInThrottlePolicy.accountFreeFailures - signInThrottlePolicy.pairFailures
      for (let index = 0; index < remaining; index += 1) {
        await rejectsWith(
          people.signIn(
            caller(`203.0.113.${100 + index}`),
            'target.user',
            'guess guess guess guess',
          ),
          'ERR_UNAUTHENTICATED',
        )
      }
      await rejectsWith(
        people.signIn(caller('203.0.113.250'), 'target.user', password),
        'ERR_RATE_LIMITED',
      )
      const owner = await people.signIn(caller('203.0.113.1'), 'target.user', password)
      assert.equal(owner.stage, 'complete')
      // The delay is bounded: past it, a new address may try again.
      advance(signInThrottlePolicy.accountMaxDelayMs + 1000)
      const later = await people.signIn(caller('203.0.113.251'), 'target.user', password)
      assert.equal(later.stage, 'complete')
      // The attacker's pair block ends after its period too.
      advance(signInThrottlePolicy.pairBlockMs)
      assert.equal(
        (await people.signIn(caller(attacker), 'target.user', password)).stage,
        'complete',
      )
      assert.ok(userId.length > 0)
    })

    test('an address failing across many accounts is blocked for all of them', async () => {
      await person('sprayed.user', ['clinician'])
      const sprayer = '198.18.0.7'
      for (let index = 0; index < signInThrottlePolicy.addressFailures; index += 1) {
        await rejectsWith(
          people.signIn(caller(sprayer), `name${index}`, 'winter summer spring autumn'),
          'ERR_UNAUTHENTICATED',
        )
      }
      await rejectsWith(
        people.signIn(caller(sprayer), 'sprayed.user', password),
        'ERR_RATE_LIMITED',
      )
      assert.equal(
        (await people.signIn(caller('198.18.0.8'), 'sprayed.user', password)).stage,
        'complete',
      )
      advance(signInThrottlePolicy.addressBlockMs + 1000)
    })

    test('a sprayer behind a shared address does not lock out those who sign in from it', async () => {
      await person('nat.user', ['clinician'])
      const shared = '198.18.1.9'
      await signedIn('nat.user', shared)
      for (let index = 0; index < signInThrottlePolicy.addressFailures; index += 1) {
        await rejectsWith(
          people.signIn(caller(shared), `spray${index}`, 'winter summer spring autumn'),
          'ERR_UNAUTHENTICATED',
        )
      }
      await rejectsWith(
        people.signIn(caller(shared), 'someone.new', 'winter summer spring autumn'),
        'ERR_RATE_LIMITED',
      )
      assert.equal((await people.signIn(caller(shared), 'nat.user', password)).stage, 'complete')
      // Its own pair limit still holds at that address.
      for (let index = 0; index < signInThrottlePolicy.pairFailures; index += 1) {
        await rejectsWith(
          people.signIn(caller(shared), 'nat.user', 'not the password at all'),
          'ERR_UNAUTHENTICATED',
        )
      }
      await rejectsWith(people.signIn(caller(shared), 'nat.user', password), 'ERR_RATE_LIMITED')
      advance(signInThrottlePolicy.addressBlockMs + 1000)
    })

    test('a privileged person without MFA can do nothing but enroll it', async () => {
      await person('security.officer', ['security-officer'])
      const state = await signedIn('security.officer')
      assert.equal(state.stage, 'mfa-enrollment')
      // Known, so a principal, but one the policy refuses everything until it enrolls.
      assert.equal(people.principalOf(state)?.mfaEnrollmentPending, true)
      await rejectsWith(
        people.issueApiToken(caller(), state, { label: 'x', scopes: ['audit-log:read'], days: 1 }),
        'ERR_ACCESS_DENIED',
      )
      await rejectsWith(people.replaceRecoveryCodes(caller(), state), 'ERR_ACCESS_DENIED')

      const enrollment = await people.startTotpEnrollment(caller(), state)
      await rejectsWith(people.confirmTotp(caller(), state, '000000'), 'ERR_UNAUTHENTICATED')
      const enrolled = await people.confirmTotp(caller(), state, totpCode(enrollment.secret, now))
      assert.equal(enrolled.recoveryCodes?.length, 10)
      const after = await people.resumeSession(
        (await people.signIn(caller(), 'security.officer', password)).token,
      )
      assert.equal(after?.stage, 'second-factor')
    })

    test('a role granted later sends an MFA-less session back to enrollment', async () => {
      const userId = await person('promoted.user', ['clinician'])
      const result = await people.signIn(caller(), 'promoted.user', password)
      assert.ok(people.principalOf((await people.resumeSession(result.token)) as SessionState))
      await people.grantRole(admin, userId, 'org-admin')
      const state = (await people.resumeSession(result.token)) as SessionState
      assert.equal(state.stage, 'mfa-enrollment')
      assert.equal(people.principalOf(state)?.mfaEnrollmentPending, true)
      await people.revokeRole(admin, userId, 'org-admin')
      const demoted = (await people.resumeSession(result.token)) as SessionState
      assert.equal(demoted.stage, 'complete')
      assert.equal(people.principalOf(demoted)?.mfaEnrollmentPending, undefined)
    })

    test('TOTP completes sign-in once per time step; a replayed code is refused', async () => {
      await person('totp.user', ['clinician'])
      const enrolling = await signedIn('totp.user')
      const enrollment = await people.startTotpEnrollment(caller(), enrolling)
      totpSecret = enrollment.secret
      assert.match(enrollment.uri, /^otpauth:\/\/totp\/.*secret=/)
      await people.confirmTotp(caller(), enrolling, totpCode(enrollment.secret, now))

      advance(30_000)
      const first = await signedIn('totp.user')
      assert.equal(first.stage, 'second-factor')
      assert.equal(people.principalOf(first), undefined)
      const code = totpCode(enrollment.secret, now)
      await people.verifyTotp(caller(), first, code)
      const done = (await people.resumeSession(
        (await people.signIn(caller(), 'totp.user', password)).token,
      )) as SessionState
      await rejectsWith(people.verifyTotp(caller(), done, code), 'ERR_UNAUTHENTICATED')
      advance(30_000)
      await people.verifyTotp(caller(), done, totpCode(enrollment.secret, now))
    })

    test('wrong second factors end the session, and many across sessions block the account', async () => {
      // A fresh window: the replay refused in the test before counted as a wrong code.
      advance(signInThrottlePolicy.windowMs + 1000)
      const right = () => totpCode(totpSecret, now)
      const wrong = () => String((Number(right()) + 500_000) % 1_000_000).padStart(6, '0')
      const first = await people.signIn(caller(), 'totp.user', password)
      const state = (await people.resumeSession(first.token)) as SessionState
      for (let index = 0; index < 5; index += 1) {
        await rejectsWith(people.verifyTotp(caller(), state, wrong()), 'ERR_UNAUTHENTICATED')
      }
      assert.equal(await people.resumeSession(first.token), undefined, 'the session ended')

      // Signing in again does not buy more guesses without end.
      const second = await signedIn('totp.user')
      for (let index = 0; index < 5; index += 1) {
        await rejectsWith(people.verifyTotp(caller(), second, wrong()), 'ERR_UNAUTHENTICATED')
      }
      const third = await signedIn('totp.user')
      advance(30_000)
      await rejectsWith(people.verifyTotp(caller(), third, right()), 'ERR_RATE_LIMITED')
      advance(signInThrottlePolicy.secondFactorBlockMs)
      const fourth = await signedIn('totp.user')
      await people.verifyTotp(caller(), fourth, right())
    })

    test('WebAuthn: a software key registers, signs in, and a forged signature or cloned counter is refused', async () => {
      await person('key.user', ['device-engineer'])
      const authenticator = new SoftwareAuthenticator()
      const enrolling = await signedIn('key.user')
      assert.equal(enrolling.stage, 'mfa-enrollment')
      const registration = await people.startWebauthnRegistration(enrolling)
      assert.equal(registration.rp.id, 'ward.test')
      const enrolled = await people.finishWebauthnRegistration(
        caller(),
        enrolling,
        authenticator.register(registration, origin),
      )
      assert.equal(enrolled.recoveryCodes?.length, 10)
      const principal = people.principalOf(
        (await people.resumeSession(
          (await people.signIn(caller(), 'key.user', password)).token,
        )) as SessionState,
      )
      assert.equal(principal, undefined)

      const state = await signedIn('key.user')
      assert.equal(state.stage, 'second-factor')
      // A forged signature is refused, and spends the challenge.
      const forgedOptions = await people.startWebauthnAuthentication(state)
      await rejectsWith(
        people.finishWebauthnAuthentication(
          caller(),
          state,
          authenticator.authenticate(forgedOptions, origin, { forge: true }),
        ),
        'ERR_UNAUTHENTICATED',
      )
      const retry = authenticator.authenticate(forgedOptions, origin)
      await rejectsWith(
        people.finishWebauthnAuthentication(caller(), state, retry),
        'ERR_UNAUTHENTICATED',
      )
      // The wrong origin is refused.
      const phishOptions = await people.startWebauthnAuthentication(state)
      await rejectsWith(
        people.finishWebauthnAuthentication(
          caller(),
          state,
          authenticator.authenticate(phishOptions, 'https://ward.test.evil.example'),
        ),
        'ERR_UNAUTHENTICATED',
      )
      // A real assertion passes.
      const options = await people.startWebauthnAuthentication(state)
      await people.finishWebauthnAuthentication(
        caller(),
        state,
        authenticator.authenticate(options, origin),
      )
      const signedInState = (await people.resumeSession(
        (await people.signIn(caller(), 'key.user', password)).token,
      )) as SessionState
      assert.equal(signedInState.stage, 'second-factor')
      // A clone replaying an old counter is refused.
      const cloneOptions = await people.startWebauthnAuthentication(signedInState)
      await rejectsWith(
        people.finishWebauthnAuthentication(
          caller(),
          signedInState,
          authenticator.authenticate(cloneOptions, origin, { counter: 1 }),
        ),
        'ERR_UNAUTHENTICATED',
      )

      keyUserCodes = enrolled.recoveryCodes ?? []
    })

    test('recovery codes each work once, whatever their case', async () => {
      assert.equal(keyUserCodes.length, 10)
      const code = keyUserCodes[0] as string
      const first = await people.signIn(caller(), 'key.user', password)
      const state = (await people.resumeSession(first.token)) as SessionState
      const redeemed = await people.redeemRecoveryCode(caller(), state, code.toUpperCase())
      assert.equal(redeemed.remaining, 9)
      const principal = people.principalOf(
        (await people.resumeSession(redeemed.token)) as SessionState,
      )
      assert.equal(principal?.mfaVerified, true)

      const again = await signedIn('key.user')
      await rejectsWith(people.redeemRecoveryCode(caller(), again, code), 'ERR_UNAUTHENTICATED')
      const second = await people.redeemRecoveryCode(caller(), again, keyUserCodes[1] as string)
      assert.equal(second.remaining, 8)
    })

    test('sessions end after the idle timeout and after their absolute lifetime', async () => {
      await person('idle.user', ['clinician'])
      const idle = await people.signIn(caller(), 'idle.user', password)
      advance(people.limits.idleMs - 1000)
      assert.ok((await people.resumeSession(idle.token)) !== undefined)
      advance(people.limits.idleMs - 1000)
      assert.ok((await people.resumeSession(idle.token)) !== undefined, 'use resets the idle timer')
      advance(people.limits.idleMs)
      assert.equal(await people.resumeSession(idle.token), undefined)
      advance(-people.limits.idleMs)
      assert.equal(
        await people.resumeSession(idle.token),
        undefined,
        'an ended session stays ended',
      )

      const busy = await people.signIn(caller(), 'idle.user', password)
      const steps = Math.ceil(people.limits.absoluteMs / (people.limits.idleMs / 2))
      for (let step = 0; step < steps - 1; step += 1) {
        advance(people.limits.idleMs / 2)
        assert.ok((await people.resumeSession(busy.token)) !== undefined, `alive at step ${step}`)
      }
      advance(people.limits.idleMs / 2)
      assert.equal(await people.resumeSession(busy.token), undefined)
    })

    test('expired sessions, challenges and spent throttle counters are purged', async () => {
      const ended = await people.signIn(caller(), 'idle.user', password)
      const state = (await people.resumeSession(ended.token)) as SessionState
      await people.signOut(caller(), state)
      await rejectsWith(
        people.signIn(caller('192.0.2.77'), 'idle.user', 'not it not it not it'),
        'ERR_UNAUTHENTICATED',
      )
      const count = async (table: 'user_sessions' | 'sign_in_throttles') =>
        (await ward.store.db.selectFrom(table).selectAll().execute()).length
      const before = {
        sessions: await count('user_sessions'),
        throttles: await count('sign_in_throttles'),
      }
      advance(2 * 86_400_000)
      const purged = await people.purgeExpired()
      assert.ok(purged.sessions > 0 && purged.throttles > 0)
      assert.equal(await count('user_sessions'), before.sessions - purged.sessions)
      assert.equal(await people.resumeSession(ended.token), undefined)
    })

    test('sign-out ends one session; sign-out everywhere ends them all', async () => {
      const one = await signedIn('idle.user')
      const two = await signedIn('idle.user')
      const three = await people.signIn(caller(), 'idle.user', password)
      await people.signOut(caller(), one)
      assert.equal(
        await people
          .resumeSession((await people.signIn(caller(), 'idle.user', password)).token)
          .then((s) => s?.stage),
        'complete',
      )
      assert.ok((await people.resumeSession(three.token)) !== undefined)
      assert.ok((await people.signOutEverywhere(caller(), two)) >= 2)
      assert.equal(await people.resumeSession(three.token), undefined)
    })

    test('API tokens carry their scopes, expire and can be revoked', async () => {
      await person('integration.owner', ['clinician'])
      const state = await signedIn('integration.owner')
      await rejectsWith(
        people.issueApiToken(caller(), state, {
          label: 'ehr feed',
          scopes: ['Bad Scope'],
          days: 1,
        }),
        'ERR_INPUT_INVALID',
      )
      await rejectsWith(
        people.issueApiToken(caller(), state, {
          label: 'ehr feed',
          scopes: ['observation:read'],
          days: 1000,
        }),
        'ERR_INPUT_INVALID',
      )
      const issued = await people.issueApiToken(caller(), state, {
        label: 'ehr feed',
        scopes: ['observation:read', 'patient:list'],
        days: 1,
      })
      assert.match(issued.token, /^ward_at_/)
      const principal = await people.resolveApiToken(issued.token)
      assert.equal(principal?.method, 'api-token')
      assert.deepEqual(principal?.scopes, ['observation:read', 'patient:list'])
      assert.equal(principal?.credentialId, issued.record.id)
      assert.equal((await people.listApiTokens(state)).length, 1)

      const second = await people.issueApiToken(caller(), state, {
        label: 'siem',
        scopes: ['audit-log:read'],
        days: 1,
      })
      await people.revokeApiToken(caller(), state, second.record.id)
      assert.equal(await people.resolveApiToken(second.token), undefined)
      await rejectsWith(people.revokeApiToken(caller(), state, second.record.id), 'ERR_NOT_FOUND')

      advance(86_400_000 + 1000)
      assert.equal(await people.resolveApiToken(issued.token), undefined)
    })

    test('API tokens are refused to a person holding a privileged role, who could never use one', async () => {
      await person('token.officer', ['privacy-officer'])
      const enrolling = await signedIn('token.officer')
      const enrollment = await people.startTotpEnrollment(caller(), enrolling)
      const enrolled = await people.confirmTotp(
        caller(),
        enrolling,
        totpCode(enrollment.secret, now),
      )
      const state = (await people.resumeSession(enrolled.session?.token ?? '')) as SessionState
      assert.equal(state.mfaVerified, true)
      const refused = await rejectsWith(
        people.issueApiToken(caller(), state, {
          label: 'siem',
          scopes: ['audit-log:read'],
          days: 1,
        }),
        'ERR_ACCESS_DENIED',
      )
      assert.match(String(refused), /privileged role.*second factor.*never passes/)
      assert.deepEqual(await people.listApiTokens(state), [])
      advance(30_000)
    })

    test('disabling a person ends their sessions and tokens and refuses their sign-in', async () => {
      const userId = await person('leaving.user', ['clinician'])
      const state = await signedIn('leaving.user')
      const other = await people.signIn(caller(), 'leaving.user', password)
      const token = await people.issueApiToken(caller(), state, {
        label: 'x',
        scopes: ['device:list'],
        days: 1,
      })
      await people.disableUser(admin, userId)
      assert.equal(await people.resumeSession(other.token), undefined)
      assert.equal((await people.findUser(userId)).user.status, 'disabled')
      assert.equal(await people.resolveApiToken(token.token), undefined)
      await rejectsWith(people.signIn(caller(), 'leaving.user', password), 'ERR_UNAUTHENTICATED')
    })

    test('a platform operator is audited in the platform log, people of an organization in its own', async () => {
      const created = await people.createFirstPlatformOperator(admin, 'root.operator')
      await rejectsWith(
        people.createFirstPlatformOperator(admin, 'second.operator'),
        'ERR_ALREADY_INITIALIZED',
      )
      await people.completeSetup(caller(), created.setupToken, password)
      const state = await signedIn('root.operator')
      assert.equal(state.stage, 'mfa-enrollment')

      const events = await auditEvents()
      const operatorSignIn = events.find(
        (event) =>
          event.log === 'platform' &&
          event.body.includes(created.user.id) &&
          event.body.includes('user.sign-in'),
      )
      assert.ok(operatorSignIn !== undefined)
      assert.ok(
        events.some((event) => event.log === 'clinic' && event.body.includes('user.role.grant')),
      )
      assert.ok(
        events.some((event) => event.log === 'clinic' && event.body.includes('api-token.revoke')),
      )
      assert.ok(
        events.some(
          (event) => event.log === 'clinic' && event.body.includes('user.mfa.webauthn.enroll'),
        ),
      )
      assert.ok(
        events.some((event) => event.log === 'platform' && event.body.includes('"outcome":"4"')),
      )
    })

    test("a patient's own sign-in, failures and password are audited without their network address", async () => {
      const patient = await ward.fleet.createPatient(admin, 'clinic', {
        name: { family: 'Addresstest', given: ['Pia'] },
        birthDate: '1971-07-07',
      })
      const created = await people.createUser(admin, {
        organizationId: clinic.id,
        loginName: 'pia.patient',
        roles: ['patient'],
        patientPseudonym: patient.pseudonym,
      })
      await person('addr.clinician', ['clinician'])
      const home = '203.0.113.77'
      const workplace = '192.0.2.177'
      const before = (await auditEvents()).length

      await people.completeSetup(caller(home), created.setupToken, password)
      await rejectsWith(
        people.signIn(caller(home), 'pia.patient', 'not the password at all'),
        'ERR_UNAUTHENTICATED',
      )
      const state = await signedIn('pia.patient', home)
      await people.signOut(caller(home), state)
      await rejectsWith(
        people.signIn(caller(workplace), 'addr.clinician', 'not the password at all'),
        'ERR_UNAUTHENTICATED',
      )
      await signedIn('addr.clinician', workplace)
      await rejectsWith(
        people.signIn(caller(workplace), 'no.such.person', 'not the password at all'),
        'ERR_UNAUTHENTICATED',
      )

      const events = (await auditEvents()).slice(before).map(
        (event) =>
          JSON.parse(event.body) as {
            subtype: { code: string }
            outcome: string
            agent: { who: string; network?: { address: string } }[]
          },
      )
      const patientEvents = events.filter((event) => event.agent[0]?.who === created.user.id)
      assert.deepEqual(
        patientEvents.map((event) => `${event.subtype.code} ${event.outcome}`).sort(),
        ['user.password.set 0', 'user.sign-in 0', 'user.sign-in 4', 'user.sign-out 0'],
      )
      for (const event of patientEvents) assert.equal(event.agent[0]?.network, undefined)
      assert.ok(!events.some((event) => JSON.stringify(event).includes(home)))

      // The workforce's address is kept, and so is that of a sign-in naming nobody.
      const workforce = events.filter((event) => event.agent[0]?.network?.address === workplace)
      assert.deepEqual(
        workforce.map((event) => `${event.subtype.code} ${event.outcome}`),
        ['user.sign-in 4', 'user.sign-in 0', 'user.sign-in 4'],
      )
      assert.equal(workforce.at(-1)?.agent[0]?.who, 'unknown-account')
    })

    test('no audit event carries a password, token, secret or unknown login name', async () => {
      const created = await people.createUser(admin, {
        organizationId: clinic.id,
        loginName: 'scan.user',
        roles: ['org-admin'],
      })
      await people.completeSetup(caller(), created.setupToken, password)
      await rejectsWith(
        people.signIn(caller('192.0.2.200'), 'scan.user', 'a wrong password typed here'),
        'ERR_UNAUTHENTICATED',
      )
      await rejectsWith(
        people.signIn(caller('192.0.2.200'), 'typo.in.name', password),
        'ERR_UNAUTHENTICATED',
      )
      const signIn = await people.signIn(caller(), 'scan.user', password)
      const state = (await people.resumeSession(signIn.token)) as SessionState
      const enrollment = await people.startTotpEnrollment(caller(), state)
      const enrolled = await people.confirmTotp(caller(), state, totpCode(enrollment.secret, now))
      assert.ok((await people.resumeSession(enrolled.session?.token ?? '')) !== undefined)
      await person('scan.clinician', ['clinician'])
      const apiToken = await people.issueApiToken(caller(), await signedIn('scan.clinician'), {
        label: 'scan',
        scopes: ['device:list'],
        days: 1,
      })

      const secrets = [
        password,
        'a wrong password typed here',
        'typo.in.name',
        created.setupToken,
        signIn.token,
        signIn.csrfToken,
        enrolled.session?.token ?? 'no rotated token',
        enrolled.session?.csrfToken ?? 'no rotated CSRF token',
        enrollment.secret,
        apiToken.token,
        ...(enrolled.recoveryCodes ?? []),
      ]
      const bodies = (await auditEvents()).map((event) => event.body)
      assert.ok(bodies.length > 20)
      for (const secret of secrets) {
        for (const body of bodies)
          assert.ok(!body.includes(secret), 'an audit event holds a secret')
      }
      // Nor does the store keep any of them in clear.
      for (const table of [
        'user_sessions',
        'user_api_tokens',
        'user_setup_tokens',
        'user_passwords',
        'user_totp_credentials',
        'user_recovery_codes',
        'sign_in_throttles',
      ] as const) {
        const rows = JSON.stringify(
          await ward.store.db.selectFrom(table).selectAll().execute(),
          (_key, value: unknown) =>
            value instanceof Uint8Array ? Buffer.from(value).toString('latin1') : value,
        )
        for (const secret of secrets)
          assert.ok(!rows.includes(secret), `${table} holds a secret in clear`)
      }
    })

    async function auditEvents(): Promise<{ log: string; body: string }[]> {
      const rows = await ward.store.db
        .selectFrom('audit_entries')
        .innerJoin('audit_logs', 'audit_logs.id', 'audit_entries.log_id')
        .select(['audit_logs.name as log', 'audit_entries.body as body'])
        .execute()
      return rows.map((row) => ({ log: row.log, body: Buffer.from(row.body).toString('utf8') }))
    }
  })
}
