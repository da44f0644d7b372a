import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { existsSync, openSync, readFileSync, statSync, writeSync, closeSync } from 'node:fs'

import { WardError, fromBase64, toBase64 } from '@ward/core'

/**
 * Holds Ward's master key and wraps other keys under it. The master key itself never leaves
 * the provider: a local key file today; a PKCS#11 HSM or a cloud KMS implements the same
 * interface without any caller changing.
 */
export interface KeyWrappingProvider {
  /** Stable name stored beside every key it wraps, so Ward knows which provider to ask. */
  readonly name: string
  /**
   * Encrypts `plaintext` bound to `context` (what the key is and who owns it): a wrapped key
   * copied to another row with another context fails to unwrap.
   */
  wrap(plaintext: Uint8Array, context: string): Promise<Uint8Array>
  /** Reverses {@link wrap}; throws `ERR_KEY_INVALID` when the bytes or context do not match. */
  unwrap(wrapped: Uint8Array, context: string): Promise<Uint8Array>
}

const formatVersion = 1
const nonceBytes = 12
const tagBytes = 16

/**
 * The default provider: a 256-bit key in a file that only its owner may read. Wrapped keys are
 * AES-256-GCM with a random 96-bit nonce and the context as associated data:
 * `version(1) ‖ nonce(12) ‖ ciphertext ‖ tag(16)`.
 */
export class LocalKeyFileProvider implements KeyWrappingProvider {
  readonly name = 'local-file'
  readonly #key: Buffer

  private constructor(key: Buffer) {
    this.#key = key
  }

  /**
   * Creates a new master key file with mode 0600. Refuses to overwrite one: losing the master
   * key makes every wrapped key, and so every sealed record, unreadable.
   */
  static create(path: string): LocalKeyFileProvider {
    if (existsSync(path)) {
      throw new WardError('ERR_ALREADY_INITIALIZED', `master key ${path} already exists`, {
        details: { path },
      })
    }
    const key = randomBytes(32)
    let descriptor: number
    try {
      descriptor = openSync(path, 'wx', 0o600)
    } catch (cause) {
      // Another `ward` process created it a moment ago: use that one.
      if ((cause as { code?: string }).code === 'EEXIST') return LocalKeyFileProvider.open(path)
      throw cause
    }
    try {
      writeSync(descriptor, `${toBase64(key)}\n`)
    } finally {
      closeSync(descriptor)
    }
    return new LocalKeyFileProvider(key)
  }

  /**
   * Opens an existing master key file. Refuses one that group or others can read or write,
   * as SSH does with private keys, since anyone who reads it can unwrap every key.
   */
  static open(path: string): LocalKeyFileProvider {
    if (!existsSync(path)) {
      throw new WardError(
        'ERR_NOT_INITIALIZED',
        `master key ${path} does not exist; run ward init`,
        {
          details: { path },
        },
      )
    }
    const mode = statSync(path).mode & 0o777
    if ((mode & 0o077) !== 0) {
      throw new WardError(
        'ERR_KEY_UNAVAILABLE',
        `master key ${path} has mode ${mode.toString(8)}; only its owner may read it (chmod 600)`,
        { details: { path, mode: mode.toString(8) } },
      )
    }
    let key: Uint8Array
    try {
      key = fromBase64(readFileSync(path, 'utf8').trim())
    } catch (cause) {
      throw new WardError('ERR_KEY_UNAVAILABLE', `master key ${path} is not valid base64`, {
        cause,
        details: { path },
      })
    }
    if (key.length !== 32) {
      throw new WardError('ERR_KEY_UNAVAILABLE', `master key ${path} must hold 32 bytes`, {
        details: { path },
      })
    }
    return new LocalKeyFileProvider(Buffer.from(key))
  }

  async wrap(plaintext: Uint8Array, context: string): Promise<Uint8Array> {
    const nonce = randomBytes(nonceBytes)
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce)
    cipher.setAAD(associatedData(context))
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()])
    return new Uint8Array(
      Buffer.concat([Buffer.of(formatVersion), nonce, ciphertext, cipher.getAuthTag()]),
    )
  }

  async unwrap(wrapped: Uint8Array, context: string): Promise<Uint8Array> {
    if (wrapped.length < 1 + nonceBytes + tagBytes || wrapped[0] !== formatVersion) {
      throw new WardError('ERR_KEY_INVALID', 'wrapped key has an unknown format')
    }
    const nonce = wrapped.subarray(1, 1 + nonceBytes)
    const tag = wrapped.subarray(wrapped.length - tagBytes)
    const ciphertext = wrapped.subarray(1 + nonceBytes, wrapped.length - tagBytes)
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, nonce)
      decipher.setAAD(associatedData(context))
      decipher.setAuthTag(tag)
      return new Uint8Array(Buffer.concat([decipher.update(ciphertext), decipher.final()]))
    } catch (cause) {
      throw new WardError('ERR_KEY_INVALID', 'wrapped key does not open under the master key', {
        cause,
      })
    }
  }
}

function associatedData(context: string): Buffer {
  return Buffer.from(`ward key wrap v${formatVersion}\n${context}`, 'utf8')
}
