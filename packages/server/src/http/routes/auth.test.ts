import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { request } from 'node:https'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { after, before, describe, test } from 'node:test'

import { Secret, TOTP } from 'otpauth'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  testConfig,
  type TestDatabase,
} from '../../../test/support.js'
import { signInThrottlePolicy } from '../../access/sign-in-throttle.js'
import { SoftwareAuthenticator } from '../../access/test-support.js'
import { checkProductionReadiness } from '../../serve.js'
import { systemContext } from '../../context.js'
import { createLogger } from '../../logging/index.js'
import { initializeWard } from '../../ward.js'
import { serveWard, type RunningWard } from '../index.js'

interface Response {
  status: number
  headers: Record<string, string | string[] | undefined>
  json: Record<string, unknown>
  text: string
}

const password = 'violet harbour lantern quietly'

for (const { dialect, skip } of dialects) {
  describe(`/auth over HTTPS on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let running: RunningWard
    let ca: Buffer
    let origin: string
    const logLines: string[] = []
    const responses: string[] = []
    /** Every secret a test saw; none may show up where it should not. */
    const secrets = new Set<string>([password])

    const call = (
      method: string,
      path: string,
      options: { body?: unknown; headers?: Record<string, string>; localAddress?: string } = {},
    ): Promise<Response> =>
      new Promise((resolve, reject) => {
        const payload = options.body === undefined ? undefined : JSON.stringify(options.body)
        const headers: Record<string, string> = { ...options.headers }
        if (payload !== undefined) headers['content-type'] = 'application/json'
        const outgoing = request(
          new URL(path, running.url),
          {
            method,
            ca,
            headers,
            servername: 'localhost',
            ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
          },
          (incoming) => {
            const chunks: Buffer[] = []
            incoming.on('data', (chunk: Buffer) => chunks.push(chunk))
            incoming.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8')
              responses.push(`${path} ${text}`)
              let json: Record<string, unknown> = {}
              try {
                json = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>)
              } catch {
                json = {}
              }
              resolve({ status: incoming.statusCode ?? 0, headers: incoming.headers, json, text })
            })
          },
        )
        outgoing.on('error', reject)
        outgoing.end(payload)
      })
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

    /** Creates a person and sets their password over HTTP with the setup token. */
    async function person(
      login: string,
      roles: ('clinician' | 'org-admin' | 'platform-operator')[],
    ) {
      const ward = running.ward
      const organizations = await ward.listOrganizations()
      const platform = roles.includes('platform-operator')
      const created = await ward.people.createUser(systemContext('test'), {
        organizationId: platform ? null : (organizations[0]?.id ?? null),
        loginName: login,
        roles,
      })
      secrets.add(created.setupToken)
      const setup = await call('POST', '/auth/setup', {
        body: { setupToken: created.setupToken, password },
      })
      assert.equal(setup.status, 204)
      return created.user.id
    }

    async function bearerSignIn(login: string): Promise<{ token: string; json: Response['json'] }> {
      const response = await call('POST', '/auth/sign-in', {
        body: { login, password, mode: 'bearer' },
      })
      assert.equal(response.status, 200, response.text)
      const token = response.json['token'] as string
      secrets.add(token)
      return { token, json: response.json }
    }

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      const home = join(directory.path, 'home')
      const config = testConfig(home, database.url, {
        WARD_HTTP_HOST: '127.0.0.1',
        WARD_LOG_LEVEL: 'debug',
      })
      await initializeWard(config, systemContext('test'))
      const sink = new Writable({
        write(chunk: Buffer, _encoding, done) {
          logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
          done()
        },
      })
      running = await serveWard(config, createLogger('debug', sink))
      ca = readFileSync(config.http.certFile)
      origin = config.auth.origin
      await running.ward.createOrganization(systemContext('test'), {
        slug: 'clinic',
        name: 'Clinic',
      })
    })

    after(async () => {
      await running?.close()
      await database?.drop()
      directory?.remove()
    })

    test('a portal sign-in sets Secure, HttpOnly, SameSite=Strict cookies and answers the CSRF token', async () => {
      await person('portal.user', ['clinician'])
      const response = await call('POST', '/auth/sign-in', {
        body: { login: 'portal.user', password },
      })
      assert.equal(response.status, 200)
      assert.equal(response.json['stage'], 'complete')
      assert.equal(response.json['token'], undefined, 'a cookie sign-in never shows the token')
      const cookies = response.headers['set-cookie'] as string[]
      const session = cookies.find((cookie) => cookie.startsWith('__Host-ward-session='))
      assert.match(String(session), /; Path=\/; Secure; HttpOnly; SameSite=Strict$/)
      const csrf = response.json['csrfToken'] as string
      const token = /^__Host-ward-session=([^;]+)/.exec(String(session))?.[1] as string
      secrets.add(token)
      const cookie = { cookie: `__Host-ward-session=${token}` }

      const me = await call('GET', '/auth/me', { headers: cookie })
      assert.equal(me.status, 200)
      assert.equal(me.json['loginName'], 'portal.user')

      // An unsafe method with the cookie but without the CSRF header is refused, and so is a
      // wrong one; with the right one it passes.
      const forged = await call('POST', '/auth/tokens', {
        headers: cookie,
        body: { label: 'x', scopes: ['device:list'], days: 1 },
      })
      assert.equal(forged.status, 403)
      assert.equal(forged.json['code'], 'ERR_ACCESS_DENIED')
      const wrong = await call('POST', '/auth/sign-out', {
        headers: { ...cookie, 'x-csrf-token': 'not-the-token' },
      })
      assert.equal(wrong.status, 403)
      const issued = await call('POST', '/auth/tokens', {
        headers: { ...cookie, 'x-csrf-token': csrf },
        body: { label: 'portal made', scopes: ['device:list'], days: 1 },
      })
      assert.equal(issued.status, 201)
      secrets.add(issued.json['token'] as string)

      const out = await call('POST', '/auth/sign-out', {
        headers: { ...cookie, 'x-csrf-token': csrf },
      })
      assert.equal(out.status, 204)
      assert.equal((await call('GET', '/auth/me', { headers: cookie })).status, 401)
    })

    test('a wrong password and an unknown login name get the same answer', async () => {
      const wrong = await call('POST', '/auth/sign-in', {
        body: { login: 'portal.user', password: 'not the password at all' },
      })
      const unknown = await call('POST', '/auth/sign-in', {
        body: { login: 'nobody.at.all', password: 'not the password at all' },
      })
      assert.equal(wrong.status, 401)
      assert.equal(unknown.status, 401)
      assert.equal(wrong.json['detail'], unknown.json['detail'])
      assert.equal(wrong.json['code'], unknown.json['code'])
      secrets.add('not the password at all')
      secrets.add('nobody.at.all')
    })

    test('a privileged person must enroll MFA first, then signs in with TOTP', async () => {
      await person('http.admin', ['org-admin'])
      const { token, json } = await bearerSignIn('http.admin')
      assert.equal(json['stage'], 'mfa-enrollment')
      const limited = await call('POST', '/auth/tokens', {
        headers: bearer(token),
        body: { label: 'x', scopes: ['device:list'], days: 1 },
      })
      assert.equal(limited.status, 403)
      assert.equal(
        (await call('GET', '/auth/me', { headers: bearer(token) })).json['stage'],
        'mfa-enrollment',
      )

      const enroll = await call('POST', '/auth/mfa/totp', { headers: bearer(token) })
      assert.equal(enroll.status, 200)
      const secret = enroll.json['secret'] as string
      secrets.add(secret)
      const totp = new TOTP({
        algorithm: 'SHA1',
        digits: 6,
        period: 30,
        secret: Secret.fromBase32(secret),
      })
      const confirmed = await call('POST', '/auth/mfa/totp/confirm', {
        headers: bearer(token),
        body: { code: totp.generate() },
      })
      assert.equal(confirmed.status, 200, confirmed.text)
      const codes = confirmed.json['recoveryCodes'] as string[]
      assert.equal(codes.length, 10)
      for (const code of codes) secrets.add(code)
      // Enrollment completed the session under a new token; the one from before is dead.
      const rotated = confirmed.json['token'] as string
      secrets.add(rotated)
      assert.match(rotated, /^ward_s_/)
      assert.notEqual(rotated, token)
      assert.equal((await call('GET', '/auth/me', { headers: bearer(token) })).status, 401)
      const me = await call('GET', '/auth/me', { headers: bearer(rotated) })
      assert.equal(me.json['stage'], 'complete')
      assert.equal(me.json['mfaVerified'], true)

      const next = await bearerSignIn('http.admin')
      assert.equal(next.json['stage'], 'second-factor')
      assert.deepEqual(next.json['secondFactors'], ['totp', 'recovery-code'])
      const recovered = await call('POST', '/auth/sign-in/recovery-code', {
        headers: bearer(next.token),
        body: { code: codes[0] },
      })
      assert.equal(recovered.status, 200)
      assert.equal(recovered.json['remainingRecoveryCodes'], 9)
      const after = recovered.json['token'] as string
      secrets.add(after)
      assert.notEqual(after, next.token)
      assert.equal((await call('GET', '/auth/me', { headers: bearer(next.token) })).status, 401)
      assert.equal((await call('GET', '/auth/me', { headers: bearer(after) })).status, 200)

      // A portal session gets new cookies and a new CSRF token when its second factor passes.
      const portal = await call('POST', '/auth/sign-in', {
        body: { login: 'http.admin', password },
      })
      const oldCsrf = portal.json['csrfToken'] as string
      const cookieOf = (response: { headers: Record<string, unknown> }) =>
        /^__Host-ward-session=([^;]+)/.exec(
          String(
            (response.headers['set-cookie'] as string[]).find((cookie) =>
              cookie.startsWith('__Host-ward-session='),
            ),
          ),
        )?.[1] as string
      const oldCookie = cookieOf(portal)
      secrets.add(oldCookie)
      const passed = await call('POST', '/auth/sign-in/recovery-code', {
        headers: { cookie: `__Host-ward-session=${oldCookie}`, 'x-csrf-token': oldCsrf },
        body: { code: codes[1] },
      })
      assert.equal(passed.status, 200, passed.text)
      assert.equal(passed.json['token'], undefined, 'a cookie session never sees its token')
      const newCookie = cookieOf(passed)
      secrets.add(newCookie)
      const newCsrf = passed.json['csrfToken'] as string
      assert.notEqual(newCookie, oldCookie)
      assert.notEqual(newCsrf, oldCsrf)
      const oldJar = { cookie: `__Host-ward-session=${oldCookie}` }
      const newJar = { cookie: `__Host-ward-session=${newCookie}` }
      assert.equal((await call('GET', '/auth/me', { headers: oldJar })).status, 401)
      assert.equal((await call('GET', '/auth/me', { headers: newJar })).json['mfaVerified'], true)
      const stale = await call('POST', '/auth/sign-out', {
        headers: { ...newJar, 'x-csrf-token': oldCsrf },
      })
      assert.equal(stale.status, 403, 'the CSRF token from before the second factor is dead')

      // With a second factor enrolled, the session alone cannot regenerate recovery codes:
      // the body must carry the password and a current second factor.
      const bare = await call('POST', '/auth/mfa/recovery-codes', { headers: bearer(after) })
      assert.equal(bare.status, 400, bare.text)
      assert.equal(bare.json['code'], 'ERR_INPUT_INVALID')
      const wrongProof = await call('POST', '/auth/mfa/recovery-codes', {
        headers: bearer(after),
        body: { password: 'not the password at all', recoveryCode: codes[2] },
      })
      assert.equal(wrongProof.status, 401, wrongProof.text)
      const regenerated = await call('POST', '/auth/mfa/recovery-codes', {
        headers: bearer(after),
        body: { password, recoveryCode: codes[2] },
      })
      assert.equal(regenerated.status, 200, regenerated.text)
      const fresh = regenerated.json['recoveryCodes'] as string[]
      assert.equal(fresh.length, 10)
      for (const code of fresh) secrets.add(code)
      assert.equal((await call('GET', '/auth/me', { headers: newJar })).status, 401)
      assert.equal((await call('GET', '/auth/me', { headers: bearer(after) })).status, 200)
    })

    test('a security key registers and completes sign-in; a forged signature is refused', async () => {
      await person('http.operator', ['platform-operator'])
      const key = new SoftwareAuthenticator()
      const { token } = await bearerSignIn('http.operator')
      const options = await call('POST', '/auth/mfa/webauthn/options', { headers: bearer(token) })
      assert.equal(options.status, 200)
      const registered = await call('POST', '/auth/mfa/webauthn', {
        headers: bearer(token),
        body: { response: key.register(options.json as never, origin) },
      })
      assert.equal(registered.status, 200, registered.text)
      for (const code of registered.json['recoveryCodes'] as string[]) secrets.add(code)
      secrets.add(registered.json['token'] as string)
      assert.equal((await call('GET', '/auth/me', { headers: bearer(token) })).status, 401)

      const next = await bearerSignIn('http.operator')
      assert.deepEqual(next.json['secondFactors'], ['webauthn', 'recovery-code'])
      const challenge = await call('POST', '/auth/sign-in/webauthn/options', {
        headers: bearer(next.token),
      })
      const forged = await call('POST', '/auth/sign-in/webauthn', {
        headers: bearer(next.token),
        body: { response: key.authenticate(challenge.json as never, origin, { forge: true }) },
      })
      assert.equal(forged.status, 401)
      const fresh = await call('POST', '/auth/sign-in/webauthn/options', {
        headers: bearer(next.token),
      })
      const passed = await call('POST', '/auth/sign-in/webauthn', {
        headers: bearer(next.token),
        body: { response: key.authenticate(fresh.json as never, origin) },
      })
      assert.equal(passed.status, 200, passed.text)
      const rotated = passed.json['token'] as string
      secrets.add(rotated)
      assert.equal((await call('GET', '/auth/me', { headers: bearer(next.token) })).status, 401)
      assert.equal(
        (await call('GET', '/auth/me', { headers: bearer(rotated) })).json['mfaVerified'],
        true,
      )
    })

    test('API tokens: shown once, listed without the secret, usable as bearer, revocable', async () => {
      await person('http.integrator', ['clinician'])
      const { token } = await bearerSignIn('http.integrator')
      const issued = await call('POST', '/auth/tokens', {
        headers: bearer(token),
        body: { label: 'EHR feed', scopes: ['observation:read'], days: 7 },
      })
      assert.equal(issued.status, 201)
      const apiToken = issued.json['token'] as string
      secrets.add(apiToken)
      const list = await call('GET', '/auth/tokens', { headers: bearer(token) })
      assert.ok(!list.text.includes(apiToken))
      assert.equal((list.json['tokens'] as unknown[]).length, 1)

      const me = await call('GET', '/auth/me', { headers: bearer(apiToken) })
      assert.equal(me.status, 200)
      assert.deepEqual(me.json['scopes'], ['observation:read'])
      assert.equal(me.json['method'], 'api-token')
      // An API token cannot manage tokens: that takes a signed-in person.
      assert.equal((await call('GET', '/auth/tokens', { headers: bearer(apiToken) })).status, 401)

      const revoked = await call('DELETE', `/auth/tokens/${issued.json['id'] as string}`, {
        headers: bearer(token),
      })
      assert.equal(revoked.status, 204)
      assert.equal((await call('GET', '/auth/me', { headers: bearer(apiToken) })).status, 401)
    })

    test('sign-out everywhere ends every session', async () => {
      const one = await bearerSignIn('http.integrator')
      const two = await bearerSignIn('http.integrator')
      const ended = await call('POST', '/auth/sign-out-everywhere', { headers: bearer(one.token) })
      assert.equal(ended.status, 200)
      assert.equal((await call('GET', '/auth/me', { headers: bearer(two.token) })).status, 401)
    })

    test('malformed and oversized bodies get clear errors', async () => {
      const missing = await call('POST', '/auth/sign-in', { body: { login: 'x' } })
      assert.equal(missing.status, 400)
      assert.match(String(missing.json['detail']), /password/)
      const huge = await call('POST', '/auth/sign-in', {
        body: { login: 'x', password: 'p'.repeat(20_000) },
      })
      assert.equal(huge.status, 413)
      const mode = await call('POST', '/auth/sign-in', {
        body: { login: 'x', password: 'y', mode: 'jwt' },
      })
      assert.equal(mode.status, 400)
    })

    test('a throttled sign-in answers 429 with Retry-After, the seconds until its block ends', async () => {
      const attempt = () =>
        call('POST', '/auth/sign-in', {
          body: { login: 'throttled.name', password: 'not the password at all' },
          // An address of its own, apart from the credential routes' per-address rate limit
          // that the other tests spend.
          localAddress: '127.0.0.2',
        })
      for (let failure = 0; failure < signInThrottlePolicy.pairFailures; failure += 1) {
        assert.equal((await attempt()).status, 401)
      }
      const blocked = await attempt()
      assert.equal(blocked.status, 429, blocked.text)
      assert.equal(blocked.json['code'], 'ERR_RATE_LIMITED')
      assert.match(String(blocked.json['detail']), /too many failed sign-ins/)
      const seconds = Number(blocked.headers['retry-after'])
      assert.ok(
        Number.isInteger(seconds),
        `Retry-After is ${String(blocked.headers['retry-after'])}`,
      )
      assert.ok(seconds > 0 && seconds <= signInThrottlePolicy.pairBlockMs / 1000, String(seconds))
    })

    test('the credential routes are rate limited per address', async () => {
      let limited: Response | undefined
      for (let index = 0; index < 40 && limited === undefined; index += 1) {
        const response = await call('POST', '/auth/sign-in/totp', { body: { code: '123456' } })
        if (response.status === 429) limited = response
      }
      assert.ok(limited !== undefined, 'never rate limited')
      assert.match(String(limited.headers['retry-after']), /^\d+$/)
    })

    test('no response, log line or audit event carries a password, token or secret', async () => {
      const rows = await running.ward.store.db.selectFrom('audit_entries').select('body').execute()
      const audit = rows.map((row) => Buffer.from(row.body).toString('utf8'))
      assert.ok(audit.length > 10)
      assert.ok(logLines.length > 10)
      assert.ok(secrets.size > 10)
      for (const secret of secrets) {
        for (const line of logLines)
          assert.ok(!line.includes(secret), `a log line holds a secret: ${line.slice(0, 80)}`)
        for (const body of audit) assert.ok(!body.includes(secret), 'an audit event holds a secret')
      }
      // Responses hold a secret only where it is shown once on purpose.
      const shownOnce = responses.filter((text) =>
        /^\/auth\/(sign-in(\/totp|\/webauthn|\/recovery-code)?|mfa\/recovery-codes|mfa\/totp|mfa\/totp\/confirm|mfa\/webauthn|tokens) /.test(
          text,
        ),
      )
      for (const text of responses) {
        if (shownOnce.includes(text)) continue
        for (const secret of secrets)
          assert.ok(!text.includes(secret), `response holds a secret: ${text.slice(0, 80)}`)
      }
    })
  })
}

describe('production configuration', () => {
  test('refuses to start with MFA switched off', () => {
    const directory = temporaryDirectory()
    try {
      const config = testConfig(join(directory.path, 'home'), 'sqlite:/nonexistent/ward.db', {
        WARD_ENVIRONMENT: 'production',
        WARD_AUTH_MFA: 'off',
        WARD_HOST_NAME: 'ward.example.org',
      })
      assert.throws(
        () => checkProductionReadiness(config),
        (error: Error & { code?: string; details?: Record<string, unknown> }) =>
          error.code === 'ERR_CONFIG_INVALID' && error.details?.['setting'] === 'auth.mfa',
      )
      const required = testConfig(join(directory.path, 'home'), 'sqlite:/nonexistent/ward.db', {
        WARD_ENVIRONMENT: 'production',
        WARD_HOST_NAME: 'ward.example.org',
      })
      // With MFA required the check goes on to the next rule (the self-signed certificate).
      assert.throws(
        () => checkProductionReadiness(required),
        (error: Error & { details?: Record<string, unknown> }) =>
          error.details?.['setting'] === 'http.certFile',
      )
    } finally {
      directory.remove()
    }
  })
})
