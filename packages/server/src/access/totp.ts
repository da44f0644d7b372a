import { randomUUID } from 'node:crypto'

import { Secret, TOTP } from 'otpauth'

import { WardError } from '@ward/core'

import type { KeyWrappingProvider } from '../keys/index.js'
import type { Transaction } from '../store/index.js'

/**
 * RFC 6238 with the parameters every authenticator app understands: HMAC-SHA-1, 6 digits,
 * 30-second steps, a 160-bit secret. One step either side is accepted for clock drift.
 */
export const totpParameters = { algorithm: 'SHA1', digits: 6, period: 30, window: 1 } as const

/** What enrolling shows the person once: the secret as base32 and as an otpauth URI. */
export interface TotpEnrollment {
  readonly credentialId: string
  readonly secret: string
  readonly uri: string
}

/**
 * Starts a TOTP enrollment for `userId`: a new random secret, wrapped under the master key
 * bound to the user and credential, stored unconfirmed. Any earlier unconfirmed enrollment is
 * dropped. The credential counts only once {@link confirmTotp} saw a code from it.
 */
export async function startTotpEnrollment(
  tx: Transaction,
  keys: KeyWrappingProvider,
  input: { readonly userId: string; readonly loginName: string; readonly issuer: string },
  now: Date,
): Promise<TotpEnrollment> {
  await tx
    .deleteFrom('user_totp_credentials')
    .where('user_id', '=', input.userId)
    .where('confirmed_at', 'is', null)
    .execute()
  const credentialId = randomUUID()
  const secret = new Secret({ size: 20 })
  const wrapped = await wrapTotpSecret(keys, input.userId, credentialId, secret.bytes)
  await tx
    .insertInto('user_totp_credentials')
    .values({
      id: credentialId,
      user_id: input.userId,
      wrapped_secret: wrapped,
      confirmed_at: null,
      last_step: null,
      created_at: now.toISOString(),
    })
    .execute()
  const totp = new TOTP({
    issuer: input.issuer,
    label: input.loginName,
    algorithm: totpParameters.algorithm,
    digits: totpParameters.digits,
    period: totpParameters.period,
    secret,
  })
  return { credentialId, secret: secret.base32, uri: totp.toString() }
}

/** Confirms the pending enrollment with a first code; `ERR_UNAUTHENTICATED` when wrong. */
export async function confirmTotp(
  tx: Transaction,
  keys: KeyWrappingProvider,
  userId: string,
  code: string,
  now: Date,
): Promise<string> {
  const row = await tx
    .selectFrom('user_totp_credentials')
    .selectAll()
    .where('user_id', '=', userId)
    .where('confirmed_at', 'is', null)
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError('ERR_INPUT_INVALID', 'no TOTP enrollment is pending; start one first')
  }
  const step = await matchingStep(keys, row, code, now)
  if (step === undefined) throw wrongCode()
  await tx
    .updateTable('user_totp_credentials')
    .set({ confirmed_at: now.toISOString(), last_step: step })
    .where('id', '=', row.id)
    .execute()
  // One authenticator app at a time: confirming a new one retires the old.
  await tx
    .deleteFrom('user_totp_credentials')
    .where('user_id', '=', userId)
    .where('id', '!=', row.id)
    .execute()
  return row.id
}

/**
 * Checks a code from the user's confirmed authenticator. A code whose time step is not later
 * than the last one accepted is refused, so a code seen over a shoulder or replayed from a
 * log cannot be used again, even within its 30 seconds.
 */
export async function verifyTotp(
  tx: Transaction,
  keys: KeyWrappingProvider,
  userId: string,
  code: string,
  now: Date,
): Promise<string> {
  const row = await tx
    .selectFrom('user_totp_credentials')
    .selectAll()
    .where('user_id', '=', userId)
    .where('confirmed_at', 'is not', null)
    .executeTakeFirst()
  if (row === undefined) throw wrongCode()
  const step = await matchingStep(keys, row, code, now)
  if (step === undefined || (row.last_step !== null && step <= row.last_step)) throw wrongCode()
  // Conditional on the step read, so two requests racing with one code cannot both pass.
  const updated = await tx
    .updateTable('user_totp_credentials')
    .set({ last_step: step })
    .where('id', '=', row.id)
    .where((eb) =>
      row.last_step === null ? eb('last_step', 'is', null) : eb('last_step', '=', row.last_step),
    )
    .executeTakeFirst()
  if (updated.numUpdatedRows !== 1n) throw wrongCode()
  return row.id
}

/** True when the user has a confirmed TOTP authenticator. */
export async function hasTotp(tx: Transaction, userId: string): Promise<boolean> {
  const row = await tx
    .selectFrom('user_totp_credentials')
    .select('id')
    .where('user_id', '=', userId)
    .where('confirmed_at', 'is not', null)
    .executeTakeFirst()
  return row !== undefined
}

/** Removes the user's TOTP authenticator; false when there was none. */
export async function removeTotp(tx: Transaction, userId: string): Promise<boolean> {
  const result = await tx
    .deleteFrom('user_totp_credentials')
    .where('user_id', '=', userId)
    .executeTakeFirst()
  return result.numDeletedRows > 0n
}

/** The time step `code` belongs to, within the drift window, or undefined. */
async function matchingStep(
  keys: KeyWrappingProvider,
  row: { id: string; user_id: string; wrapped_secret: Uint8Array },
  code: string,
  now: Date,
): Promise<number | undefined> {
  if (!/^\d{6}$/.test(code)) return undefined
  const secret = await keys.unwrap(row.wrapped_secret, wrapContext(row.user_id, row.id))
  const totp = new TOTP({
    algorithm: totpParameters.algorithm,
    digits: totpParameters.digits,
    period: totpParameters.period,
    secret: new Secret({ buffer: Uint8Array.from(secret).buffer }),
  })
  const delta = totp.validate({
    token: code,
    timestamp: now.getTime(),
    window: totpParameters.window,
  })
  secret.fill(0)
  if (delta === null) return undefined
  return TOTP.counter({ period: totpParameters.period, timestamp: now.getTime() }) + delta
}

/**
 * Wraps a TOTP secret under the master key, bound to its user and credential: a wrapped
 * secret copied onto another user's row does not unwrap.
 */
export function wrapTotpSecret(
  keys: KeyWrappingProvider,
  userId: string,
  credentialId: string,
  secret: Uint8Array,
): Promise<Uint8Array> {
  return keys.wrap(secret, wrapContext(userId, credentialId))
}

function wrapContext(userId: string, credentialId: string): string {
  return `totp-secret ${userId} ${credentialId}`
}

function wrongCode(): WardError {
  return new WardError('ERR_UNAUTHENTICATED', 'the code is wrong, expired or already used')
}
