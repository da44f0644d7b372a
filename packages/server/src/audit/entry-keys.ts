import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

import type { KeyWrappingProvider } from '../keys/index.js'

/**
 * Each log's entry key: 256 random bits, stored wrapped under the master key, that
 * authenticates every entry row with HMAC-SHA-256 over (log, index, leaf hash). Signed
 * checkpoints protect entries up to their size; the entry key protects the entries appended
 * since, so somebody who can write to the database but does not hold the master key can
 * neither insert nor alter an entry that Ward will then sign.
 */
export class EntryKeys {
  readonly #provider: KeyWrappingProvider
  readonly #keys = new Map<string, Uint8Array>()

  constructor(provider: KeyWrappingProvider) {
    this.#provider = provider
  }

  /** A new entry key for log `logId`, wrapped, as stored in the log's head row. */
  async create(logId: string): Promise<Uint8Array> {
    const key = randomBytes(32)
    const wrapped = await this.#provider.wrap(key, context(logId))
    key.fill(0)
    return wrapped
  }

  /** The unwrapped entry key of log `logId`; unwrapped once per process. */
  async key(logId: string, wrapped: Uint8Array): Promise<Uint8Array> {
    const known = this.#keys.get(logId)
    if (known !== undefined) return known
    const key = await this.#provider.unwrap(wrapped, context(logId))
    this.#keys.set(logId, key)
    return key
  }
}

/** The authentication code of entry `index` of log `logId` with leaf hash `leafHash`. */
export function entryMac(
  key: Uint8Array,
  logId: string,
  index: number,
  leafHash: Uint8Array,
): Uint8Array {
  return createHmac('sha256', key).update(`${logId}\n${index}\n`).update(leafHash).digest()
}

/** True when `mac` authenticates the entry; compares in constant time. */
export function entryMacMatches(
  key: Uint8Array,
  logId: string,
  index: number,
  leafHash: Uint8Array,
  mac: Uint8Array,
): boolean {
  const expected = entryMac(key, logId, index, leafHash)
  return mac.length === expected.length && timingSafeEqual(mac, expected)
}

function context(logId: string): string {
  return `audit-entry-key ${logId}`
}
