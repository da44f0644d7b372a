import { randomBytes } from 'node:crypto'

import { hash, verify } from '@node-rs/argon2'

import { normalizePassword } from './password-policy.js'

/**
 * Argon2id parameters. OWASP's Password Storage Cheat Sheet gives m = 19 MiB, t = 2, p = 1 as
 * the minimum; RFC 9106 recommends m = 64 MiB, t = 3 where memory allows. Ward takes RFC 9106's
 * memory and passes (64 MiB, 3 passes, 1 lane): about 60 ms a hash on one core of a small
 * server, so an attacker with a stolen table pays far more per guess than at the minimum while
 * a sign-in stays quick. The thread pool runs at most four hashes at once, which bounds the
 * memory sign-ins can take to 256 MiB. The parameters are written into every hash, so raising
 * them later rehashes each password at its owner's next sign-in.
 */
export const argon2idParameters = {
  // Argon2id in @node-rs/argon2's numbering (a const enum, which this build cannot import).
  algorithm: 2,
  memoryCost: 65_536,
  timeCost: 3,
  parallelism: 1,
  outputLen: 32,
} as const

/** Hashes `password` (normalized first) with Argon2id and a random salt, as a PHC string. */
export function hashPassword(password: string): Promise<string> {
  return hash(normalizePassword(password), argon2idParameters)
}

/**
 * True when `password` matches `passwordHash`. Runs in time that depends on the hash's
 * parameters only, and never throws for a malformed hash (it simply does not match).
 */
export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  try {
    return await verify(passwordHash, normalizePassword(password))
  } catch {
    return false
  }
}

/** True when `passwordHash` was made with other parameters than Ward's current ones. */
export function needsRehash(passwordHash: string): boolean {
  const { memoryCost, timeCost, parallelism } = argon2idParameters
  return !passwordHash.startsWith(`$argon2id$v=19$m=${memoryCost},t=${timeCost},p=${parallelism}$`)
}

let dummyHash: Promise<string> | undefined

/**
 * Makes the hash {@link verifyAgainstNothing} checks against, ahead of the first sign-in, so
 * that the first unknown login name does not pay for making it (which would make it slower
 * than a wrong password, and so tell them apart).
 */
export function prepareHashOfNothing(): Promise<string> {
  dummyHash ??= hash(randomBytes(32).toString('base64url'), argon2idParameters)
  return dummyHash
}

/**
 * Verifies against a hash of a random password that matches nothing, so a sign-in for an
 * unknown login name costs the same time as one with a wrong password.
 */
export async function verifyAgainstNothing(password: string): Promise<false> {
  await verifyPassword(await prepareHashOfNothing(), password)
  return false
}
