import { createCipheriv, createDecipheriv } from 'node:crypto'

import { RandomPool } from './random-pool.js'

/** The sealed-bytes format this module writes; the first byte of every output. */
export const sealedFormatVersion = 1

const nonceBytes = 12
const tagBytes = 16
// Nonces are drawn from a pool of CSPRNG output: each is fresh, and none is ever handed out twice.
const nonces = new RandomPool()

/** Bytes a sealed value adds to its plaintext: version, nonce and tag. */
export const sealedOverhead = 1 + nonceBytes + tagBytes

/**
 * AES-256-GCM with a fresh random 96-bit nonce: `version(1) ‖ nonce(12) ‖ ciphertext ‖ tag(16)`.
 * The associated data is authenticated but not stored; opening needs the same bytes again.
 */
export function sealBytes(
  key: Uint8Array,
  plaintext: Uint8Array,
  associatedData: Uint8Array,
): Uint8Array {
  const nonce = nonces.take(nonceBytes)
  const cipher = createCipheriv('aes-256-gcm', key, nonce)
  cipher.setAAD(associatedData)
  const head = cipher.update(plaintext)
  const tail = cipher.final()

  const sealed = new Uint8Array(sealedOverhead + head.length + tail.length)
  sealed[0] = sealedFormatVersion
  sealed.set(nonce, 1)
  sealed.set(head, 1 + nonceBytes)
  sealed.set(tail, 1 + nonceBytes + head.length)
  sealed.set(cipher.getAuthTag(), sealed.length - tagBytes)
  return sealed
}

/**
 * Reverses {@link sealBytes}. Returns undefined for every kind of failure — unknown format,
 * wrong key, other associated data, any changed byte — so that callers report one error and
 * leak nothing about which check failed.
 */
export function openBytes(
  key: Uint8Array,
  sealed: Uint8Array,
  associatedData: Uint8Array,
): Uint8Array | undefined {
  if (sealed.length < sealedOverhead || sealed[0] !== sealedFormatVersion) return undefined
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(1, 1 + nonceBytes))
    decipher.setAAD(associatedData)
    decipher.setAuthTag(sealed.subarray(sealed.length - tagBytes))
    const head = decipher.update(sealed.subarray(1 + nonceBytes, sealed.length - tagBytes))
    const tail = decipher.final()
    return tail.length === 0 ? new Uint8Array(head) : new Uint8Array(Buffer.concat([head, tail]))
  } catch {
    return undefined
  }
}

/** Associated data from a fixed list of fields, unambiguous whatever characters they hold. */
export function associatedData(fields: readonly (string | number)[]): Uint8Array {
  return Buffer.from(JSON.stringify(fields), 'utf8')
}

// OpenSSL takes in associated data the moment it is given, so one buffer can carry it for every
// seal and open in turn; a reading's is a few hundred bytes, and a longer one gets its own.
const scratch = Buffer.allocUnsafe(2048)

/**
 * The same bytes as {@link associatedData}, in a buffer that the next call overwrites: for
 * passing straight to {@link sealBytes} or {@link openBytes}, never to keep. Sealing a batch of
 * readings otherwise spends more on allocating these than on the cipher's setup.
 */
export function transientAssociatedData(fields: readonly (string | number)[]): Uint8Array {
  const text = JSON.stringify(fields)
  if (text.length * 3 > scratch.length) return Buffer.from(text, 'utf8')
  return scratch.subarray(0, scratch.write(text, 'utf8'))
}
