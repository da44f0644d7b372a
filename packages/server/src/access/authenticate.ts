import type { FastifyReply, FastifyRequest } from 'fastify'

import type { People, SessionState } from './people.js'
import type { Principal } from './principal.js'

/** The session cookie: `__Host-` keeps it to this origin, over HTTPS, for every path. */
export const sessionCookieName = '__Host-ward-session'
/** Readable by the portal's script, which echoes it in {@link csrfHeaderName}. */
export const csrfCookieName = '__Host-ward-csrf'
/** Cookie-authenticated unsafe requests must carry the session's CSRF token here. */
export const csrfHeaderName = 'x-csrf-token'

const safeMethods = new Set(['GET', 'HEAD', 'OPTIONS'])
const tokenPattern = /^ward_(s|at)_[A-Za-z0-9_-]{43}$/

/** How the request presented its credential, if it presented one Ward could use. */
export type PresentedCredential =
  | { readonly kind: 'session'; readonly token: string; readonly viaCookie: boolean }
  | { readonly kind: 'api-token'; readonly token: string }

/**
 * The credential the request carries: `Authorization: Bearer` with a session token or API
 * token, or else the session cookie. Anything malformed counts as no credential.
 */
export function presentedCredential(request: FastifyRequest): PresentedCredential | undefined {
  const header = request.headers.authorization
  if (typeof header === 'string') {
    const token = /^bearer +(\S{1,200})$/i.exec(header)?.[1]
    const kind = token === undefined ? undefined : tokenPattern.exec(token)?.[1]
    if (token === undefined || kind === undefined) return undefined
    return kind === 's'
      ? { kind: 'session', token, viaCookie: false }
      : { kind: 'api-token', token }
  }
  const cookie = cookieValue(request.headers.cookie, sessionCookieName)
  if (cookie !== undefined && tokenPattern.test(cookie) && cookie.startsWith('ward_s_')) {
    return { kind: 'session', token: cookie, viaCookie: true }
  }
  return undefined
}

/**
 * The session state of the request, at whatever stage of sign-in it is, or undefined. A
 * session sent as a cookie on an unsafe method must come with its CSRF token in the
 * `x-csrf-token` header, or this throws `ERR_ACCESS_DENIED`; a bearer session needs none,
 * since no browser attaches it on its own.
 */
export async function requestSession(
  request: FastifyRequest,
  people: People,
): Promise<SessionState | undefined> {
  const credential = presentedCredential(request)
  if (credential?.kind !== 'session') return undefined
  const header = request.headers[csrfHeaderName]
  return people.resumeSession(credential.token, {
    required: credential.viaCookie && !safeMethods.has(request.method),
    token: typeof header === 'string' ? header : undefined,
  })
}

/**
 * Authenticates a request for any of Ward's routes: the principal of a signed-in session
 * (cookie with CSRF, or bearer) or of a live API token; undefined for no credential, an
 * unknown, ended, idle or expired one, and for a session still waiting for its second factor.
 * A session that must enroll MFA first has a principal, which the policy refuses everything
 * (`deny.mfa-required`): the person is known, and told what to do. The caller answers 401 on
 * undefined and asks the policy otherwise. Throws `ERR_ACCESS_DENIED` for a cookie session
 * without its CSRF token.
 */
export async function authenticateRequest(
  request: FastifyRequest,
  people: People,
): Promise<Principal | undefined> {
  const credential = presentedCredential(request)
  if (credential === undefined) return undefined
  if (credential.kind === 'api-token') return people.resolveApiToken(credential.token)
  const state = await requestSession(request, people)
  return state === undefined ? undefined : people.principalOf(state)
}

/** Sets the session and CSRF cookies: `Secure; SameSite=Strict`, the session `HttpOnly`. */
export function setSessionCookies(
  reply: FastifyReply,
  session: { readonly token: string; readonly csrfToken: string },
): void {
  reply.header('set-cookie', [
    `${sessionCookieName}=${session.token}; Path=/; Secure; HttpOnly; SameSite=Strict`,
    `${csrfCookieName}=${session.csrfToken}; Path=/; Secure; SameSite=Strict`,
  ])
}

/** Clears both cookies. */
export function clearSessionCookies(reply: FastifyReply): void {
  reply.header('set-cookie', [
    `${sessionCookieName}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0`,
    `${csrfCookieName}=; Path=/; Secure; SameSite=Strict; Max-Age=0`,
  ])
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined || header.length > 8192) return undefined
  for (const part of header.split(';')) {
    const separator = part.indexOf('=')
    if (separator < 0) continue
    if (part.slice(0, separator).trim() === name) return part.slice(separator + 1).trim()
  }
  return undefined
}
