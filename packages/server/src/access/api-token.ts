import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'

import { WardError } from '@ward/core'

/**
 * The operator's bearer token for reading audit logs over HTTPS, until people and roles exist.
 * `ward init` writes it to Ward's home with mode 0600; the server keeps only its SHA-256.
 */
export class OperatorToken {
  readonly #digest: Buffer

  private constructor(digest: Buffer) {
    this.#digest = digest
  }

  /** Writes a new random token to `path` (mode 0600) and returns it. */
  static create(path: string): string {
    const token = `ward_op_${randomBytes(32).toString('base64url')}`
    writeFileSync(path, `${token}\n`, { mode: 0o600, flag: 'wx' })
    return token
  }

  /** Loads the token's digest from `path`; refuses a file others can read. */
  static load(path: string): OperatorToken {
    if (!existsSync(path)) {
      throw new WardError('ERR_NOT_INITIALIZED', `operator token ${path} does not exist`)
    }
    if ((statSync(path).mode & 0o077) !== 0) {
      throw new WardError(
        'ERR_KEY_UNAVAILABLE',
        `operator token ${path} is readable by others; only its owner may read it (chmod 600)`,
      )
    }
    return new OperatorToken(digest(readFileSync(path, 'utf8').trim()))
  }

  /** True when `presented` is the token; compares digests in constant time. */
  matches(presented: string): boolean {
    return timingSafeEqual(digest(presented), this.#digest)
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest()
}
