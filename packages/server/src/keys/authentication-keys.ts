import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

import { WardError } from '@ward/core'

import type { Transaction } from '../store/index.js'
import type { KeyWrappingProvider } from './master-key.js'

/**
 * What an authentication key authenticates. Each purpose has a key of its own per
 * organization, and the purpose is part of the wrapping context, so a key cannot be moved to
 * another purpose or organization.
 */
export type AuthenticationKeyPurpose = 'enrollment-token' | 'manufacturer-authority'

/**
 * Per-organization keys that authenticate rows Ward trusts for enrollment: 256 random bits
 * each, stored wrapped under the master key (as each audit log's entry key is), and used for
 * HMAC-SHA-256 over a row's content bound to its organization and id. Somebody who can write
 * the database but does not hold the master key can then neither insert such a row nor edit
 * one without Ward noticing. A key is made on first use and unwrapped once per process.
 */
export class AuthenticationKeys {
  readonly #provider: KeyWrappingProvider
  readonly #keys = new Map<string, { readonly wrapped: Buffer; readonly key: Uint8Array }>()

  constructor(provider: KeyWrappingProvider) {
    this.#provider = provider
  }

  /**
   * The organization's key for `purpose`, made and stored wrapped when it has none yet.
   * Throws `ERR_KEY_UNAVAILABLE` when another provider holds it and `ERR_KEY_INVALID` when
   * the stored key does not unwrap (it was altered or moved).
   */
  async key(
    tx: Transaction,
    organizationId: string,
    purpose: AuthenticationKeyPurpose,
  ): Promise<Uint8Array> {
    const row =
      (await this.#find(tx, organizationId, purpose)) ??
      (await this.#create(tx, organizationId, purpose))
    if (row.provider !== this.#provider.name) {
      throw new WardError(
        'ERR_KEY_UNAVAILABLE',
        `the ${purpose} authentication key of organization ${organizationId} is held by ${row.provider}`,
      )
    }
    const cacheKey = `${organizationId} ${purpose}`
    const wrapped = Buffer.from(row.wrapped_key)
    const known = this.#keys.get(cacheKey)
    if (known !== undefined && known.wrapped.equals(wrapped)) return known.key
    const key = await this.#provider.unwrap(wrapped, context(organizationId, purpose))
    this.#keys.set(cacheKey, { wrapped, key })
    return key
  }

  async #find(tx: Transaction, organizationId: string, purpose: AuthenticationKeyPurpose) {
    return tx
      .selectFrom('authentication_keys')
      .select(['provider', 'wrapped_key'])
      .where('organization_id', '=', organizationId)
      .where('purpose', '=', purpose)
      .executeTakeFirst()
  }

  async #create(tx: Transaction, organizationId: string, purpose: AuthenticationKeyPurpose) {
    const key = randomBytes(32)
    const wrapped = await this.#provider.wrap(key, context(organizationId, purpose))
    key.fill(0)
    // Another process may have made it a moment ago: keep whichever was stored first.
    await tx
      .insertInto('authentication_keys')
      .values({
        organization_id: organizationId,
        purpose,
        provider: this.#provider.name,
        wrapped_key: wrapped,
        created_at: new Date().toISOString(),
      })
      .onConflict((conflict) => conflict.columns(['organization_id', 'purpose']).doNothing())
      .execute()
    const stored = await this.#find(tx, organizationId, purpose)
    if (stored === undefined) {
      throw new WardError('ERR_KEY_UNAVAILABLE', `no ${purpose} authentication key was stored`)
    }
    return stored
  }
}

/**
 * The authentication code of a row: HMAC-SHA-256 under `key` over the JSON of `fields`, which
 * name what the row is (a label with a version), its organization, its id and its content.
 * JSON keeps the fields apart, so no two different field lists share an input.
 */
export function authenticationCode(
  key: Uint8Array,
  fields: readonly (string | number | null)[],
): Uint8Array {
  return new Uint8Array(createHmac('sha256', key).update(JSON.stringify(fields)).digest())
}

/** True when `code` is the authentication code of `fields`; compares in constant time. */
export function authenticationCodeMatches(
  key: Uint8Array,
  fields: readonly (string | number | null)[],
  code: Uint8Array | null,
): boolean {
  if (code === null) return false
  const expected = authenticationCode(key, fields)
  return code.length === expected.length && timingSafeEqual(code, expected)
}

/**
 * The error of a migration that must key rows already stored but was not given the master
 * key (`StoreOptions.keys`); `what` names the rows.
 */
export function masterKeyNeeded(what: string): WardError {
  return new WardError(
    'ERR_KEY_UNAVAILABLE',
    `upgrading the database keys its stored ${what} under the master key: open it with ` +
      'ward start or ward init, which hold the master key',
  )
}

function context(organizationId: string, purpose: AuthenticationKeyPurpose): string {
  return `authentication-key ${purpose} ${organizationId}`
}
