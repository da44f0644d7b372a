import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'

import { WardError } from '@ward/core'

import {
  clearSessionCookies,
  presentedCredential,
  requestSession,
  setSessionCookies,
} from '../../access/authenticate.js'
import type {
  Caller,
  FactorChangeProof,
  RotatedSession,
  SessionState,
} from '../../access/people.js'
import type { Ward } from '../../ward.js'
import { AddressRateLimit } from '../rate-limit.js'

/** Largest body any `/auth` route accepts: a WebAuthn response is well under this. */
export const authBodyLimitBytes = 16 * 1024

/** Requests a minute one address may make to routes that check a password, code or key. */
export const credentialRoutesPerMinute = 30
/** Requests a minute one address may make to the other `/auth` routes. */
export const otherAuthRoutesPerMinute = 300

/**
 * People's sign-in over HTTPS, under `/auth`:
 *
 * - `POST /auth/setup` `{ setupToken, password }`: choose a password with a one-time setup token.
 * - `POST /auth/sign-in` `{ login, password, mode? }`: a session at stage `complete`,
 *   `second-factor` or `mfa-enrollment`. `mode` `cookie` (default, for the portal) sets the
 *   session cookie and answers the CSRF token; `bearer` answers the session token instead.
 * - `POST /auth/sign-in/totp` `{ code }`, `POST /auth/sign-in/webauthn/options` then
 *   `POST /auth/sign-in/webauthn` `{ response }`, `POST /auth/sign-in/recovery-code` `{ code }`:
 *   the second factor. When it passes — or a first enrollment completes an `mfa-enrollment`
 *   session — the session gets a new token and CSRF token and the old ones stop working: a
 *   bearer client gets the new `token` in the answer, a cookie client new cookies and the new
 *   `csrfToken`.
 * - `POST /auth/mfa/totp` then `POST /auth/mfa/totp/confirm` `{ code }`;
 *   `POST /auth/mfa/webauthn/options` then `POST /auth/mfa/webauthn` `{ response }`;
 *   `POST /auth/mfa/recovery-codes`: enrollment (the first one answers recovery codes, once).
 *   Once a person has a second factor, the confirming step of each (`/totp/confirm`,
 *   `/webauthn`, `/recovery-codes`) also needs `password` and `totpCode` or `recoveryCode`
 *   in its body, and ends the person's other sessions.
 * - `POST /auth/sign-out`, `POST /auth/sign-out-everywhere`, `GET /auth/me`.
 * - `POST /auth/tokens` `{ label, scopes, days }`, `GET /auth/tokens`,
 *   `DELETE /auth/tokens/:id`: scoped API tokens, shown once at issue.
 *
 * Every route has a body limit and a per-address rate limit beyond the server-wide one.
 */
export function authRoutes(app: FastifyInstance, ward: Ward): void {
  const people = ward.people
  const credentialLimit = new AddressRateLimit(credentialRoutesPerMinute)
  const otherLimit = new AddressRateLimit(otherAuthRoutesPerMinute)

  const limited = (limit: AddressRateLimit) => ({
    bodyLimit: authBodyLimitBytes,
    onRequest: async (request: FastifyRequest, reply: FastifyReply) => {
      try {
        limit.take(request.ip)
      } catch (error) {
        reply.header('retry-after', String((error as WardError).details['retryAfterSeconds']))
        throw error
      }
    },
  })
  const credential = limited(credentialLimit)
  const other = limited(otherLimit)
  const caller = (request: FastifyRequest): Caller => ({
    address: request.ip,
    requestId: request.id,
  })
  const session = async (request: FastifyRequest): Promise<SessionState> => {
    const state = await requestSession(request, people)
    if (state === undefined) throw new WardError('ERR_UNAUTHENTICATED', 'sign in first')
    return state
  }

  app.post('/auth/setup', credential, async (request, reply) => {
    const body = objectBody(request.body)
    await people.completeSetup(
      caller(request),
      stringField(body, 'setupToken', 200),
      stringField(body, 'password', 1024),
    )
    return reply.status(204).send()
  })

  app.post('/auth/sign-in', credential, async (request, reply) => {
    const body = objectBody(request.body)
    const mode = body['mode'] ?? 'cookie'
    if (mode !== 'cookie' && mode !== 'bearer') {
      throw new WardError('ERR_INPUT_INVALID', 'mode must be cookie or bearer', {
        details: { field: 'mode' },
      })
    }
    const result = await people.signIn(caller(request), body['login'], body['password'])
    const answer = {
      stage: result.stage,
      expiresAt: result.expiresAt,
      secondFactors: result.secondFactors,
    }
    if (mode === 'bearer') return { ...answer, token: result.token }
    setSessionCookies(reply, result)
    return { ...answer, csrfToken: result.csrfToken }
  })

  /** The answer part carrying a rotated session: new cookies, or the new bearer token. */
  const rotatedAnswer = (
    request: FastifyRequest,
    reply: FastifyReply,
    rotated: RotatedSession | undefined,
  ) => {
    if (rotated === undefined) return {}
    const presented = presentedCredential(request)
    if (presented?.kind === 'session' && presented.viaCookie) {
      setSessionCookies(reply, rotated)
      return { csrfToken: rotated.csrfToken }
    }
    return { token: rotated.token }
  }

  app.post('/auth/sign-in/totp', credential, async (request, reply) => {
    const state = await session(request)
    const rotated = await people.verifyTotp(
      caller(request),
      state,
      stringField(objectBody(request.body), 'code', 20),
    )
    return { stage: 'complete', ...rotatedAnswer(request, reply, rotated) }
  })

  app.post('/auth/sign-in/webauthn/options', other, async (request) => {
    return people.startWebauthnAuthentication(await session(request))
  })

  app.post('/auth/sign-in/webauthn', credential, async (request, reply) => {
    const state = await session(request)
    const rotated = await people.finishWebauthnAuthentication(
      caller(request),
      state,
      objectField(objectBody(request.body), 'response'),
    )
    return { stage: 'complete', ...rotatedAnswer(request, reply, rotated) }
  })

  app.post('/auth/sign-in/recovery-code', credential, async (request, reply) => {
    const state = await session(request)
    const redeemed = await people.redeemRecoveryCode(
      caller(request),
      state,
      stringField(objectBody(request.body), 'code', 40),
    )
    return {
      stage: 'complete',
      remainingRecoveryCodes: redeemed.remaining,
      ...rotatedAnswer(request, reply, redeemed),
    }
  })

  app.post('/auth/mfa/totp', other, async (request) => {
    const enrollment = await people.startTotpEnrollment(caller(request), await session(request))
    return { secret: enrollment.secret, uri: enrollment.uri }
  })

  app.post('/auth/mfa/totp/confirm', credential, async (request, reply) => {
    const state = await session(request)
    const body = objectBody(request.body)
    const code = stringField(body, 'code', 20)
    const enrolled = await people.confirmTotp(caller(request), state, code, proofFields(body))
    return { ...enrolledAnswer(enrolled), ...rotatedAnswer(request, reply, enrolled.session) }
  })

  app.post('/auth/mfa/webauthn/options', other, async (request) => {
    return people.startWebauthnRegistration(await session(request))
  })

  app.post('/auth/mfa/webauthn', credential, async (request, reply) => {
    const state = await session(request)
    const body = objectBody(request.body)
    const response = objectField(body, 'response')
    const enrolled = await people.finishWebauthnRegistration(
      caller(request),
      state,
      response,
      proofFields(body),
    )
    return { ...enrolledAnswer(enrolled), ...rotatedAnswer(request, reply, enrolled.session) }
  })

  app.post('/auth/mfa/recovery-codes', credential, async (request) => {
    const state = await session(request)
    const proof = proofFields(objectBody(request.body))
    return { recoveryCodes: await people.replaceRecoveryCodes(caller(request), state, proof) }
  })

  app.post('/auth/sign-out', other, async (request, reply) => {
    const state = await requestSession(request, people)
    if (state !== undefined) await people.signOut(caller(request), state)
    clearSessionCookies(reply)
    return reply.status(204).send()
  })

  app.post('/auth/sign-out-everywhere', other, async (request, reply) => {
    const state = await session(request)
    const ended = await people.signOutEverywhere(caller(request), state)
    clearSessionCookies(reply)
    return reply.send({ endedSessions: ended })
  })

  app.get('/auth/me', other, async (request) => {
    if (presentedCredential(request)?.kind === 'api-token') {
      const principal = await people.resolveApiToken(
        (presentedCredential(request) as { token: string }).token,
      )
      if (principal === undefined) throw new WardError('ERR_UNAUTHENTICATED', 'sign in first')
      const { user } = await people.findUser(principal.userId)
      return {
        userId: principal.userId,
        loginName: user.loginName,
        organizationId: principal.organizationId,
        grants: principal.grants,
        method: principal.method,
        scopes: principal.scopes,
        mfaVerified: false,
        stage: 'complete',
      }
    }
    const state = await session(request)
    return {
      userId: state.user.id,
      loginName: state.user.loginName,
      organizationId: state.user.organizationId,
      grants: state.grants,
      method: 'session',
      stage: state.stage,
      mfaVerified: state.mfaVerified,
      expiresAt: state.session.expiresAt,
    }
  })

  app.post('/auth/tokens', other, async (request, reply) => {
    const state = await session(request)
    const body = objectBody(request.body)
    const scopes = body['scopes']
    if (!Array.isArray(scopes) || !scopes.every((scope) => typeof scope === 'string')) {
      throw new WardError('ERR_INPUT_INVALID', 'scopes must be an array of scope names', {
        details: { field: 'scopes' },
      })
    }
    const days = body['days'] ?? 30
    if (typeof days !== 'number') {
      throw new WardError('ERR_INPUT_INVALID', 'days must be a number', {
        details: { field: 'days' },
      })
    }
    const issued = await people.issueApiToken(caller(request), state, {
      label: stringField(body, 'label', 80),
      scopes: scopes as string[],
      days,
    })
    return reply.status(201).send({ ...tokenView(issued.record), token: issued.token })
  })

  app.get('/auth/tokens', other, async (request) => {
    const tokens = await people.listApiTokens(await session(request))
    return { tokens: tokens.map(tokenView) }
  })

  app.delete<{ Params: { id: string } }>('/auth/tokens/:id', other, async (request, reply) => {
    const state = await session(request)
    const id = request.params.id
    if (!/^[0-9a-f-]{36}$/.test(id)) throw new WardError('ERR_NOT_FOUND', 'no such API token')
    await people.revokeApiToken(caller(request), state, id)
    return reply.status(204).send()
  })
}

function enrolledAnswer(enrolled: { recoveryCodes?: readonly string[] }) {
  return {
    stage: 'complete',
    ...(enrolled.recoveryCodes === undefined ? {} : { recoveryCodes: enrolled.recoveryCodes }),
  }
}

function tokenView(record: {
  id: string
  label: string
  scopes: readonly string[]
  createdAt: string
  expiresAt: string
  lastUsedAt: string | null
}) {
  return {
    id: record.id,
    label: record.label,
    scopes: record.scopes,
    createdAt: record.createdAt,
    expiresAt: record.expiresAt,
    lastUsedAt: record.lastUsedAt,
  }
}

function objectBody(body: unknown): Record<string, unknown> {
  if (body === undefined || body === null) return {}
  if (typeof body !== 'object' || Array.isArray(body)) {
    throw new WardError('ERR_PAYLOAD_INVALID', 'request body must be a JSON object')
  }
  return body as Record<string, unknown>
}

function stringField(body: Record<string, unknown>, name: string, maxLength: number): string {
  const value = body[name]
  if (typeof value !== 'string' || value.length === 0 || value.length > maxLength) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `${name} must be a string of 1 to ${maxLength} characters`,
      { details: { field: name } },
    )
  }
  return value
}

/** The optional re-authentication fields of a factor change; see `FactorChangeProof`. */
function proofFields(body: Record<string, unknown>): FactorChangeProof {
  const optional = (name: string, maxLength: number) =>
    body[name] === undefined ? {} : { [name]: stringField(body, name, maxLength) }
  return {
    ...optional('password', 1024),
    ...optional('totpCode', 20),
    ...optional('recoveryCode', 40),
  }
}

function objectField(body: Record<string, unknown>, name: string): Record<string, unknown> {
  const value = body[name]
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new WardError('ERR_INPUT_INVALID', `${name} must be an object`, {
      details: { field: name },
    })
  }
  return value as Record<string, unknown>
}
