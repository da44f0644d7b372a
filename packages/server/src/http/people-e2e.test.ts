import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { Secret, TOTP } from 'otpauth'

import { AccessFixture, type Answer } from '../../test/access-fixture.js'
import { dialects } from '../../test/support.js'
import { systemContext } from '../context.js'

const password = 'amber meadow thunder quietly'

/**
 * The whole way from an empty Ward to a clinician reading one patient, with real credentials
 * only: no principal is injected anywhere. The first platform operator is made the way
 * `ward admin create` makes them; everyone after is made over the API by someone signed in
 * with a password and, where the role is privileged, a TOTP second factor.
 */
/** Calls the fixture's API as a client would, with a bearer token when given one. */
function bearerCall(fixture: AccessFixture) {
  return (method: string, path: string, token?: string, body?: unknown) =>
    fixture.call(
      method,
      path,
      undefined,
      body,
      token === undefined ? {} : { authorization: `Bearer ${token}` },
    )
}

for (const { dialect, skip } of dialects) {
  describe(`people over the API with real sign-in on ${dialect}`, { skip }, () => {
    const fixture = new AccessFixture()
    /** Every secret the test saw; none may show up in a log line. */
    const secrets = new Set<string>([password])

    before(async () => {
      await fixture.start(dialect, { authenticate: null })
    })
    after(async () => {
      await fixture.stop()
    })

    const call = bearerCall(fixture)
    const json = (answer: Answer) => answer.json as Record<string, unknown>

    /** Chooses the password with the setup token, then signs in with it. */
    async function setUpAndSignIn(login: string, setupToken: string) {
      secrets.add(setupToken)
      const setup = await call('POST', '/auth/setup', undefined, { setupToken, password })
      assert.equal(setup.status, 204, setup.text)
      const signIn = await call('POST', '/auth/sign-in', undefined, {
        login,
        password,
        mode: 'bearer',
      })
      assert.equal(signIn.status, 200, signIn.text)
      const token = json(signIn)['token'] as string
      secrets.add(token)
      return { token, stage: json(signIn)['stage'] }
    }

    /**
     * Enrolls TOTP on a session at the enrollment stage; answers the authenticator and the
     * session's new token (the old one is dead once enrollment completes the session).
     */
    async function enrollTotp(token: string): Promise<{ totp: TOTP; token: string }> {
      const enroll = await call('POST', '/auth/mfa/totp', token)
      assert.equal(enroll.status, 200, enroll.text)
      const secret = json(enroll)['secret'] as string
      secrets.add(secret)
      const totp = new TOTP({
        algorithm: 'SHA1',
        digits: 6,
        period: 30,
        secret: Secret.fromBase32(secret),
      })
      const confirmed = await call('POST', '/auth/mfa/totp/confirm', token, {
        code: totp.generate(),
      })
      assert.equal(confirmed.status, 200, confirmed.text)
      for (const code of json(confirmed)['recoveryCodes'] as string[]) secrets.add(code)
      const rotated = json(confirmed)['token'] as string
      secrets.add(rotated)
      assert.equal((await call('GET', '/auth/me', token)).status, 401)
      return { totp, token: rotated }
    }

    test('operator, org admin and clinician come about and sign in; the clinician reads exactly their patient', async () => {
      const ward = fixture.running.ward

      // The first operator, as `ward admin create operator` makes them.
      const first = await ward.people.createFirstPlatformOperator(
        systemContext('ward admin create'),
        'operator',
      )
      const operator = await setUpAndSignIn('operator', first.setupToken)
      assert.equal(operator.stage, 'mfa-enrollment')
      // Before enrolling a second factor the session is refused everything under the policy,
      // and told why, with the same answer whether or not what it asks for exists.
      const unenrolled = await call('GET', '/v1/organizations', operator.token)
      assert.equal(unenrolled.status, 403, unenrolled.text)
      assert.equal(json(unenrolled)['code'], 'ERR_ACCESS_DENIED')
      assert.match(String(json(unenrolled)['detail']), /deny\.mfa-required: .*enroll one/)
      const there = await call('GET', '/v1/organizations/alpha/devices', operator.token)
      const absent = await call('GET', '/v1/organizations/no-such-org/devices', operator.token)
      assert.equal(there.status, 403)
      assert.deepEqual(
        { ...json(there), requestId: undefined },
        { ...json(absent), requestId: undefined },
      )
      const { totp: operatorTotp } = await enrollTotp(operator.token)

      // A new sign-in asks for the second factor; the next time step's code passes it.
      const again = await call('POST', '/auth/sign-in', undefined, {
        login: 'operator',
        password,
        mode: 'bearer',
      })
      assert.equal(json(again)['stage'], 'second-factor')
      const beforeTotp = json(again)['token'] as string
      secrets.add(beforeTotp)
      // Waiting for its second factor, the session has not finished signing in.
      assert.equal((await call('GET', '/v1/organizations', beforeTotp)).status, 401)
      const wrong = await call('POST', '/auth/sign-in/totp', beforeTotp, { code: '000000' })
      assert.equal(wrong.status, 401)
      const passed = await call('POST', '/auth/sign-in/totp', beforeTotp, {
        code: operatorTotp.generate({ timestamp: Date.now() + 30_000 }),
      })
      assert.equal(passed.status, 200, passed.text)
      // The second factor rotated the session token: only the new one opens it.
      const operatorToken = json(passed)['token'] as string
      secrets.add(operatorToken)
      assert.equal((await call('GET', '/v1/organizations', beforeTotp)).status, 401)
      const organizations = await call('GET', '/v1/organizations', operatorToken)
      assert.equal(organizations.status, 200)

      // The operator makes alpha's first org admin, once.
      const adminIssued = await call(
        'POST',
        '/v1/platform/organizations/alpha/first-admin',
        operatorToken,
        { login: 'alpha.admin' },
      )
      assert.equal(adminIssued.status, 201, adminIssued.text)
      assert.deepEqual((json(adminIssued)['person'] as Record<string, unknown>)['roles'], [
        'org-admin',
      ])
      // The operator holds no role in alpha: its people are not theirs to see.
      assert.equal((await call('GET', '/v1/organizations/alpha/people', operatorToken)).status, 404)

      const enrolling = await setUpAndSignIn(
        'alpha.admin',
        json(adminIssued)['setupToken'] as string,
      )
      assert.equal(enrolling.stage, 'mfa-enrollment')
      const admin = await enrollTotp(enrolling.token)
      const secondAdmin = await call(
        'POST',
        '/v1/platform/organizations/alpha/first-admin',
        operatorToken,
        { login: 'alpha.admin2' },
      )
      assert.equal(secondAdmin.status, 409)

      // The org admin makes a clinician, and cannot mint a platform operator.
      const mint = await call('POST', '/v1/organizations/alpha/people', admin.token, {
        login: 'sneaky.operator',
        roles: ['platform-operator'],
      })
      assert.equal(mint.status, 403)
      const clinicianIssued = await call('POST', '/v1/organizations/alpha/people', admin.token, {
        login: 'dr.alpha',
        roles: ['clinician'],
      })
      assert.equal(clinicianIssued.status, 201, clinicianIssued.text)
      const clinicianId = (json(clinicianIssued)['person'] as Record<string, unknown>)[
        'id'
      ] as string
      const people = await call('GET', '/v1/organizations/alpha/people', admin.token)
      assert.deepEqual(
        (people.json as Record<string, unknown>[])
          // The fixture's own people of alpha (`user-<role>`, no role held) are not this test's.
          .filter((person) => !String(person['login']).startsWith('user-'))
          .map((person) => [person['login'], person['roles']]),
        [
          ['alpha.admin', ['org-admin']],
          ['dr.alpha', ['clinician']],
        ],
      )
      assert.doesNotMatch(people.text, /setup|hash|secret/i)

      // A care team with the clinician and patient `own`.
      const team = await call('POST', '/v1/organizations/alpha/care-teams', admin.token, {
        name: 'Heart failure clinic',
      })
      assert.equal(team.status, 201, team.text)
      const teamPath = `/v1/organizations/alpha/care-teams/${json(team)['id'] as string}`
      assert.equal(
        (await call('PUT', `${teamPath}/members/${clinicianId}`, admin.token)).status,
        200,
      )
      assert.equal(
        (await call('PUT', `${teamPath}/patients/${fixture.own.pseudonym}`, admin.token)).status,
        200,
      )

      // The clinician signs in with a password (not a privileged role: no second factor).
      const clinician = await setUpAndSignIn(
        'dr.alpha',
        json(clinicianIssued)['setupToken'] as string,
      )
      assert.equal(clinician.stage, 'complete')
      const readings = (pseudonym: string, slug = 'alpha') =>
        call('GET', `/v1/organizations/${slug}/patients/${pseudonym}/observations`, clinician.token)
      const own = await readings(fixture.own.pseudonym)
      assert.equal(own.status, 200, own.text)
      assert.equal(json(own)['total'], 3)
      // Another organization's patient is not found; alpha's patient outside the team is refused.
      const foreign = await readings(fixture.betaPatient.pseudonym, 'beta')
      assert.equal(foreign.status, 404)
      assert.equal(json(foreign)['detail'], 'no such resource')
      const outside = await readings(fixture.other.pseudonym)
      assert.equal(outside.status, 403)
      assert.match(String(json(outside)['detail']), /deny\.not-care-team/)

      // Past the idle timeout the session is refused: its last use moved back as time would.
      const idleMs = ward.people.limits.idleMs
      await ward.store.db
        .updateTable('user_sessions')
        .set({ last_seen_at: new Date(Date.now() - idleMs - 60_000).toISOString() })
        .where('user_id', '=', clinicianId)
        .where('ended_at', 'is', null)
        .execute()
      const idle = await readings(fixture.own.pseudonym)
      assert.equal(idle.status, 401)
      assert.equal(json(idle)['code'], 'ERR_UNAUTHENTICATED')

      // Every change was audited in alpha's log, naming user ids only.
      const operations = new Set(
        (await fixture.auditEvents('alpha')).map((event) => String(event['subtype']?.code)),
      )
      for (const operation of ['user.create', 'care-team.member-add', 'observation.read']) {
        assert.ok(operations.has(operation), `audited ${operation}`)
      }

      const logs = fixture.logLines.join('\n')
      for (const secret of secrets)
        assert.equal(logs.includes(secret), false, 'a secret in the log')
    })
  })

  describe(`people over the API with WARD_AUTH_MFA=off on ${dialect}`, { skip }, () => {
    const fixture = new AccessFixture()

    before(async () => {
      await fixture.start(dialect, { authenticate: null, environment: { WARD_AUTH_MFA: 'off' } })
    })
    after(async () => {
      await fixture.stop()
    })

    const call = bearerCall(fixture)

    test('a privileged person acts without a second factor, and each action says MFA was waived', async () => {
      const ward = fixture.running.ward
      const created = await ward.people.createUser(systemContext('test'), {
        organizationId: fixture.alpha.id,
        loginName: 'dev.admin',
        roles: ['org-admin'],
      })
      const setupToken = created.setupToken
      assert.equal(
        (await call('POST', '/auth/setup', undefined, { setupToken, password })).status,
        204,
      )
      const signIn = await call('POST', '/auth/sign-in', undefined, {
        login: 'dev.admin',
        password,
        mode: 'bearer',
      })
      const session = signIn.json as { stage: string; token: string }
      assert.equal(session.stage, 'complete')

      const team = await call('POST', '/v1/organizations/alpha/care-teams', session.token, {
        name: 'Development team',
      })
      assert.equal(team.status, 201, team.text)
      const event = (await fixture.auditEvents('alpha')).at(-1)
      assert.equal(event?.subtype.code, 'care-team.create')
      assert.deepEqual(event?.policy, {
        decision: 'permit',
        rule: 'org-admin.administration+mfa-waived-by-configuration',
      })
    })
  })
}
