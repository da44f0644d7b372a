import { randomUUID } from 'node:crypto'

import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type AuthenticatorTransportFuture,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server'

import { WardError } from '@ward/core'

import type { Transaction } from '../store/index.js'

/** Where WebAuthn ceremonies are bound: the relying party id and the portal's origin. */
export interface RelyingParty {
  readonly id: string
  readonly name: string
  readonly origin: string
}

/** How long a challenge Ward issued may be answered. */
export const webauthnChallengeTtlMs = 5 * 60_000

const maxCredentialsPerUser = 10

export type ChallengePurpose = 'registration' | 'authentication'

/**
 * Registration options for a new passkey or security key of `user`, with a fresh challenge
 * stored server-side for `sessionId`. Attestation is not asked for: Ward trusts the key the
 * person registers from a signed-in session, not the authenticator's make.
 */
export async function startWebauthnRegistration(
  tx: Transaction,
  party: RelyingParty,
  user: { readonly id: string; readonly loginName: string },
  sessionId: string,
  now: Date,
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  const existing = await credentialsOf(tx, user.id)
  if (existing.length >= maxCredentialsPerUser) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `at most ${maxCredentialsPerUser} security keys per person; remove one first`,
    )
  }
  const options = await generateRegistrationOptions({
    rpName: party.name,
    rpID: party.id,
    userName: user.loginName,
    userID: new TextEncoder().encode(user.id),
    attestationType: 'none',
    excludeCredentials: existing.map((credential) => ({
      id: credential.credential_id,
      transports: transportsOf(credential.transports),
    })),
    authenticatorSelection: { residentKey: 'preferred', userVerification: 'preferred' },
    supportedAlgorithmIDs: [-7, -8, -257],
  })
  await storeChallenge(tx, sessionId, 'registration', options.challenge, now)
  return options
}

/** Verifies the authenticator's answer to the registration challenge and stores the key. */
export async function finishWebauthnRegistration(
  tx: Transaction,
  party: RelyingParty,
  userId: string,
  challenge: string,
  response: unknown,
  now: Date,
): Promise<string> {
  let verified
  try {
    verified = await verifyRegistrationResponse({
      response: response as RegistrationResponseJSON,
      expectedChallenge: challenge,
      expectedOrigin: party.origin,
      expectedRPID: party.id,
      requireUserVerification: false,
    })
  } catch (cause) {
    throw webauthnRefused(cause)
  }
  if (!verified.verified) throw webauthnRefused()
  const credential = verified.registrationInfo.credential
  const id = randomUUID()
  const taken = await tx
    .selectFrom('user_webauthn_credentials')
    .select('id')
    .where('credential_id', '=', credential.id)
    .executeTakeFirst()
  if (taken !== undefined) throw webauthnRefused()
  await tx
    .insertInto('user_webauthn_credentials')
    .values({
      id,
      user_id: userId,
      credential_id: credential.id,
      public_key: credential.publicKey,
      sign_count: credential.counter,
      transports: (credential.transports ?? []).join(','),
      created_at: now.toISOString(),
      last_used_at: null,
    })
    .execute()
  return id
}

/** Authentication options listing the user's keys, with a fresh challenge for `sessionId`. */
export async function startWebauthnAuthentication(
  tx: Transaction,
  party: RelyingParty,
  userId: string,
  sessionId: string,
  now: Date,
): Promise<PublicKeyCredentialRequestOptionsJSON> {
  const credentials = await credentialsOf(tx, userId)
  if (credentials.length === 0) {
    throw new WardError('ERR_INPUT_INVALID', 'this account has no security key registered')
  }
  const options = await generateAuthenticationOptions({
    rpID: party.id,
    allowCredentials: credentials.map((credential) => ({
      id: credential.credential_id,
      transports: transportsOf(credential.transports),
    })),
    userVerification: 'preferred',
  })
  await storeChallenge(tx, sessionId, 'authentication', options.challenge, now)
  return options
}

/**
 * Verifies an assertion: the challenge Ward issued to this session (once, unexpired), the
 * origin and relying party, the signature under the stored public key, and a sign counter
 * that went up — a counter that did not, on a key that counts, means a cloned key and is
 * refused. Returns the credential's row id.
 */
export async function finishWebauthnAuthentication(
  tx: Transaction,
  party: RelyingParty,
  userId: string,
  challenge: string,
  response: unknown,
  now: Date,
): Promise<string> {
  const presentedId = (response as { id?: unknown } | null)?.id
  if (typeof presentedId !== 'string') throw webauthnRefused()
  const credential = await tx
    .selectFrom('user_webauthn_credentials')
    .selectAll()
    .where('user_id', '=', userId)
    .where('credential_id', '=', presentedId)
    .executeTakeFirst()
  if (credential === undefined) throw webauthnRefused()
  let verified
  try {
    verified = await verifyAuthenticationResponse({
      response: response as AuthenticationResponseJSON,
      expectedChallenge: challenge,
      expectedOrigin: party.origin,
      expectedRPID: party.id,
      credential: {
        id: credential.credential_id,
        publicKey: new Uint8Array(credential.public_key),
        counter: Number(credential.sign_count),
        transports: transportsOf(credential.transports),
      },
      requireUserVerification: false,
    })
  } catch (cause) {
    throw webauthnRefused(cause)
  }
  const counter = verified.authenticationInfo.newCounter
  const stored = Number(credential.sign_count)
  if (!verified.verified || ((counter !== 0 || stored !== 0) && counter <= stored)) {
    throw webauthnRefused()
  }
  await tx
    .updateTable('user_webauthn_credentials')
    .set({ sign_count: counter, last_used_at: now.toISOString() })
    .where('id', '=', credential.id)
    .execute()
  return credential.id
}

/** True when the user has at least one registered key. */
export async function hasWebauthn(tx: Transaction, userId: string): Promise<boolean> {
  return (await credentialsOf(tx, userId)).length > 0
}

async function credentialsOf(tx: Transaction, userId: string) {
  return tx
    .selectFrom('user_webauthn_credentials')
    .selectAll()
    .where('user_id', '=', userId)
    .orderBy('created_at')
    .execute()
}

async function storeChallenge(
  tx: Transaction,
  sessionId: string,
  purpose: ChallengePurpose,
  challenge: string,
  now: Date,
): Promise<void> {
  await tx.deleteFrom('user_webauthn_challenges').where('session_id', '=', sessionId).execute()
  await tx
    .insertInto('user_webauthn_challenges')
    .values({
      id: randomUUID(),
      session_id: sessionId,
      purpose,
      challenge,
      expires_at: new Date(now.getTime() + webauthnChallengeTtlMs).toISOString(),
    })
    .execute()
}

/**
 * The session's outstanding challenge for `purpose`, deleted as it is read, so each is
 * answered once. Callers take it in a transaction of its own, so that a refused answer
 * spends the challenge too.
 */
export async function takeWebauthnChallenge(
  tx: Transaction,
  sessionId: string,
  purpose: ChallengePurpose,
  now: Date,
): Promise<string | undefined> {
  const row = await tx
    .selectFrom('user_webauthn_challenges')
    .selectAll()
    .where('session_id', '=', sessionId)
    .where('purpose', '=', purpose)
    .executeTakeFirst()
  if (row === undefined) return undefined
  await tx.deleteFrom('user_webauthn_challenges').where('id', '=', row.id).execute()
  return Date.parse(row.expires_at) <= now.getTime() ? undefined : row.challenge
}

function transportsOf(text: string): AuthenticatorTransportFuture[] {
  return text === '' ? [] : (text.split(',') as AuthenticatorTransportFuture[])
}

/** The one answer for every refused WebAuthn response. */
export function webauthnRefused(cause?: unknown): WardError {
  return new WardError(
    'ERR_UNAUTHENTICATED',
    'the security key response was not accepted; start again',
    cause === undefined ? {} : { cause },
  )
}
