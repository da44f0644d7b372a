import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto'

import { WardError } from '@ward/core'

import type { Transaction } from '../store/index.js'
import { tokenDigest } from './accounts.js'

/**
 * Where a session stands: `second-factor` after the password when MFA is enrolled (only the
 * second factor may be given), `mfa-enrollment` for a privileged person without MFA (only
 * enrollment is possible), `complete` otherwise.
 */
export type SessionStage = 'second-factor' | 'mfa-enrollment' | 'complete'

/** A session as Ward holds it; the token itself is never stored. */
export interface Session {
  readonly id: string
  readonly userId: string
  readonly stage: SessionStage
  readonly mfaVerified: boolean
  readonly createdAt: string
  readonly lastSeenAt: string
  readonly expiresAt: string
}

/** Session lifetimes: idle timeout (automatic logoff) and absolute lifetime. */
export interface SessionLimits {
  readonly idleMs: number
  readonly absoluteMs: number
}

/** A new session's token and CSRF token, to hand to the client once. */
export interface IssuedSession {
  readonly session: Session
  readonly token: string
  readonly csrfToken: string
}

/** Most wrong second-factor answers one session may give before it ends. */
export const maxSecondFactorFailures = 5

/** Starts a session for `userId` at `stage`: 256-bit random token, stored as its SHA-256. */
export async function startSession(
  tx: Transaction,
  input: { readonly userId: string; readonly stage: SessionStage; readonly mfaVerified: boolean },
  limits: SessionLimits,
  now: Date,
): Promise<IssuedSession> {
  const token = `ward_s_${randomBytes(32).toString('base64url')}`
  const csrfToken = randomBytes(24).toString('base64url')
  const session: Session = {
    id: randomUUID(),
    userId: input.userId,
    stage: input.stage,
    mfaVerified: input.mfaVerified,
    createdAt: now.toISOString(),
    lastSeenAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + limits.absoluteMs).toISOString(),
  }
  await tx
    .insertInto('user_sessions')
    .values({
      id: session.id,
      user_id: session.userId,
      token_hash: tokenDigest(token),
      csrf_hash: tokenDigest(csrfToken),
      stage: session.stage,
      mfa_verified: session.mfaVerified ? 1 : 0,
      second_factor_failures: 0,
      created_at: session.createdAt,
      last_seen_at: session.lastSeenAt,
      expires_at: session.expiresAt,
      ended_at: null,
    })
    .execute()
  return { session, token, csrfToken }
}

/**
 * The live session `token` opens, touched now. A session is live while it has not ended,
 * was used within the idle timeout and is younger than its absolute lifetime; one that is no
 * longer live is ended on the spot. Returns undefined for any token that opens nothing.
 * `csrfToken`, when given, must match the session's: cookie-borne unsafe requests pass it.
 */
export async function resumeSession(
  tx: Transaction,
  token: string,
  limits: SessionLimits,
  now: Date,
  csrf?: { readonly required: boolean; readonly token: string | undefined },
): Promise<Session | undefined> {
  const row = await tx
    .selectFrom('user_sessions')
    .selectAll()
    .where('token_hash', '=', tokenDigest(token))
    .executeTakeFirst()
  if (row === undefined || row.ended_at !== null) return undefined
  const idle = now.getTime() - Date.parse(row.last_seen_at) >= limits.idleMs
  const old = now.getTime() >= Date.parse(row.expires_at)
  if (idle || old) {
    await tx
      .updateTable('user_sessions')
      .set({ ended_at: now.toISOString() })
      .where('id', '=', row.id)
      .execute()
    return undefined
  }
  if (csrf?.required === true && !csrfMatches(row.csrf_hash, csrf.token)) {
    throw new WardError(
      'ERR_ACCESS_DENIED',
      'the x-csrf-token header is missing or does not match this session',
    )
  }
  await tx
    .updateTable('user_sessions')
    .set({ last_seen_at: now.toISOString() })
    .where('id', '=', row.id)
    .execute()
  return toSession({ ...row, last_seen_at: now.toISOString() })
}

/** Moves the session to `stage`, marking whether a second factor was passed. */
export async function advanceSession(
  tx: Transaction,
  sessionId: string,
  stage: SessionStage,
  mfaVerified: boolean,
): Promise<void> {
  await tx
    .updateTable('user_sessions')
    .set({ stage, mfa_verified: mfaVerified ? 1 : 0 })
    .where('id', '=', sessionId)
    .execute()
}

/**
 * Gives the session a new token and CSRF token, for when its stage advances: the digests of
 * the old ones are overwritten, so from now on they open nothing. A token seen, planted or
 * logged while the session waited for its second factor is worth nothing once it has one.
 */
export async function rotateSessionTokens(
  tx: Transaction,
  sessionId: string,
): Promise<{ token: string; csrfToken: string }> {
  const token = `ward_s_${randomBytes(32).toString('base64url')}`
  const csrfToken = randomBytes(24).toString('base64url')
  await tx
    .updateTable('user_sessions')
    .set({ token_hash: tokenDigest(token), csrf_hash: tokenDigest(csrfToken) })
    .where('id', '=', sessionId)
    .execute()
  return { token, csrfToken }
}

/** Counts a wrong second-factor answer; ends the session past the limit. True if it ended. */
export async function recordSecondFactorFailure(
  tx: Transaction,
  sessionId: string,
  now: Date,
): Promise<boolean> {
  const row = await tx
    .selectFrom('user_sessions')
    .select('second_factor_failures')
    .where('id', '=', sessionId)
    .executeTakeFirstOrThrow()
  const failures = row.second_factor_failures + 1
  const ended = failures >= maxSecondFactorFailures
  await tx
    .updateTable('user_sessions')
    .set({ second_factor_failures: failures, ...(ended ? { ended_at: now.toISOString() } : {}) })
    .where('id', '=', sessionId)
    .execute()
  return ended
}

/** Ends one session. */
export async function endSession(tx: Transaction, sessionId: string, now: Date): Promise<void> {
  await tx
    .updateTable('user_sessions')
    .set({ ended_at: now.toISOString() })
    .where('id', '=', sessionId)
    .where('ended_at', 'is', null)
    .execute()
}

/** Ends every session of `userId`; returns how many were live. */
export async function endAllSessions(tx: Transaction, userId: string, now: Date): Promise<number> {
  const result = await tx
    .updateTable('user_sessions')
    .set({ ended_at: now.toISOString() })
    .where('user_id', '=', userId)
    .where('ended_at', 'is', null)
    .executeTakeFirst()
  return Number(result.numUpdatedRows)
}

/** Ends every session of `userId` but `keepSessionId`; returns how many were live. */
export async function endOtherSessions(
  tx: Transaction,
  userId: string,
  keepSessionId: string,
  now: Date,
): Promise<number> {
  const result = await tx
    .updateTable('user_sessions')
    .set({ ended_at: now.toISOString() })
    .where('user_id', '=', userId)
    .where('id', '!=', keepSessionId)
    .where('ended_at', 'is', null)
    .executeTakeFirst()
  return Number(result.numUpdatedRows)
}

function csrfMatches(storedHash: string, presented: string | undefined): boolean {
  if (presented === undefined || presented.length === 0 || presented.length > 200) return false
  const expected = Buffer.from(storedHash, 'hex')
  const actual = Buffer.from(tokenDigest(presented), 'hex')
  return timingSafeEqual(expected, actual)
}

function toSession(row: {
  id: string
  user_id: string
  stage: string
  mfa_verified: number
  created_at: string
  last_seen_at: string
  expires_at: string
}): Session {
  return {
    id: row.id,
    userId: row.user_id,
    stage: row.stage as SessionStage,
    mfaVerified: Number(row.mfa_verified) === 1,
    createdAt: row.created_at,
    lastSeenAt: row.last_seen_at,
    expiresAt: row.expires_at,
  }
}
