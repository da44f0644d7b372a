import { WardError } from '@ward/core'

import type { Transaction } from '../store/index.js'
import { unwrapDataKeyHalf } from './data-key-wrapping.js'
import { ExpiringCache } from './expiring-cache.js'
import {
  findKeyEncryptionKey,
  unwrapKeyEncryptionKey,
  type StoredKeyEncryptionKey,
} from './key-encryption-keys.js'
import type { KeyShareStore } from './key-shares.js'
import type { KeyWrappingProvider } from './master-key.js'
import { DataKey, dataKeyDestroyed, type DataKeyOwnerType } from './record-sealing.js'

/** How a {@link Keyring} is built. */
export interface KeyringOptions {
  /** Wraps the organizations' key-encryption keys: the master key. */
  readonly provider: KeyWrappingProvider
  /** Holds the half of every data key that is kept outside the database. */
  readonly keyShares: KeyShareStore
  /** Most unwrapped data keys held at once (and, separately, key-encryption keys); 10,000. */
  readonly maxCachedKeys?: number
  /** How long an unwrapped key is served from memory before it is loaded again; 60 s. */
  readonly cacheTtlMs?: number
  /** The clock, in milliseconds; tests move it. */
  readonly now?: () => number
}

/**
 * The keys this process is working with: the master key provider, the key share store, and a
 * cache of unwrapped key-encryption keys and data keys, so that sealing a stream of readings
 * costs one unwrap per patient rather than one per reading. The cache is bounded in size and
 * time; a key destroyed through this keyring leaves it at once and is refused from then on,
 * and opening re-reads the key's state from the store so that a destruction by another
 * process is honoured as soon as it commits. Sealing trusts the cache: for up to its lifetime
 * after another process destroys a key, this one may still seal records under it, which are
 * then as unreadable as everything else the key sealed.
 */
export class Keyring {
  readonly provider: KeyWrappingProvider
  readonly keyShares: KeyShareStore
  readonly #dataKeys: ExpiringCache<string, DataKey>
  readonly #keyEncryptionKeys: ExpiringCache<string, Uint8Array>
  // Keys destroyed here, kept long enough to refuse a load that was under way when they went.
  readonly #destroyed: ExpiringCache<string, true>

  constructor(options: KeyringOptions) {
    const capacity = options.maxCachedKeys ?? 10_000
    const ttlMs = options.cacheTtlMs ?? 60_000
    const now = options.now ?? Date.now
    this.provider = options.provider
    this.keyShares = options.keyShares
    this.#dataKeys = new ExpiringCache(capacity, ttlMs, now)
    this.#keyEncryptionKeys = new ExpiringCache(capacity, ttlMs, now)
    this.#destroyed = new ExpiringCache(Math.max(capacity, 100_000), Math.max(ttlMs, 600_000), now)
  }

  /**
   * The unwrapped data key `dataKeyId` of `organizationId`, from the cache or loaded and
   * unwrapped from the store. With `recheck`, the store is asked whether the key was
   * destroyed even when it is cached; opening does this, sealing need not. Throws
   * `ERR_DATA_KEY_DESTROYED` for a destroyed key (or one whose key share is gone) and
   * `ERR_KEY_UNAVAILABLE` for a key this organization does not have.
   */
  async dataKey(
    tx: Transaction,
    key: { readonly organizationId: string; readonly dataKeyId: string },
    options: { readonly recheck?: boolean } = {},
  ): Promise<DataKey> {
    const { organizationId, dataKeyId } = key
    if (this.#destroyed.get(dataKeyId) !== undefined) throw dataKeyDestroyed(dataKeyId)

    const cached = this.#dataKeys.get(dataKeyId)
    if (cached !== undefined && cached.organizationId === organizationId && !cached.destroyed) {
      if (options.recheck === true) await this.#checkNotDestroyed(tx, organizationId, dataKeyId)
      return cached
    }

    const loaded = await this.#load(tx, organizationId, dataKeyId)
    // A destruction may have finished while this load was waiting for the store.
    if (this.#destroyed.get(dataKeyId) !== undefined) {
      loaded.destroy()
      throw dataKeyDestroyed(dataKeyId)
    }
    this.#dataKeys.set(dataKeyId, loaded)
    return loaded
  }

  /**
   * The unwrapped key-encryption key a stored row describes, cached by organization and
   * version. For the keys domain's own functions, which wrap and rewrap data keys.
   */
  async keyEncryptionKey(stored: StoredKeyEncryptionKey): Promise<Uint8Array> {
    const cacheKey = `${stored.organizationId} ${stored.version}`
    const cached = this.#keyEncryptionKeys.get(cacheKey)
    if (cached !== undefined) return cached
    const key = await unwrapKeyEncryptionKey(this.provider, stored)
    this.#keyEncryptionKeys.set(cacheKey, key)
    return key
  }

  /** Puts a data key just created into the cache, so its first records need no unwrap. */
  remember(dataKey: DataKey): void {
    if (this.#destroyed.get(dataKey.id) === undefined) this.#dataKeys.set(dataKey.id, dataKey)
  }

  /**
   * Forgets data key `dataKeyId` for good in this process: overwrites the cached key, makes
   * every holder of it fail, and refuses to load it again. Called by `destroyDataKey`.
   */
  forget(dataKeyId: string): void {
    this.#destroyed.set(dataKeyId, true)
    this.#dataKeys.take(dataKeyId)?.destroy()
  }

  /** Drops every cached key, e.g. before shutdown or after restoring the store. */
  clear(): void {
    // References only: a key in use by an operation under way must stay intact until it ends.
    this.#dataKeys.clear()
    this.#keyEncryptionKeys.clear()
  }

  async #load(tx: Transaction, organizationId: string, dataKeyId: string): Promise<DataKey> {
    const row = await tx
      .selectFrom('data_keys')
      .select([
        'owner_type',
        'owner_id',
        'version',
        'key_encryption_key_version',
        'wrapped_key',
        'destroyed_at',
      ])
      .where('id', '=', dataKeyId)
      .where('organization_id', '=', organizationId)
      .executeTakeFirst()
    if (row === undefined) throw noSuchDataKey(organizationId, dataKeyId)
    if (row.destroyed_at !== null) throw dataKeyDestroyed(dataKeyId)

    const facts = {
      id: dataKeyId,
      organizationId,
      ownerType: row.owner_type as DataKeyOwnerType,
      ownerId: row.owner_id,
      version: row.version,
    }
    const keyEncryptionKey = await this.keyEncryptionKey(
      await findKeyEncryptionKey(tx, organizationId, row.key_encryption_key_version),
    )
    const wrappedHalf = unwrapDataKeyHalf(keyEncryptionKey, row.wrapped_key, {
      ...facts,
      keyEncryptionKeyVersion: row.key_encryption_key_version,
    })
    const keyShare = await this.keyShares.get(dataKeyId)
    if (keyShare === undefined) {
      wrappedHalf.fill(0)
      // The database may be a copy from before the destruction: the share is what decides.
      throw dataKeyDestroyed(dataKeyId)
    }

    const dataKey = DataKey.fromHalves(facts, wrappedHalf, keyShare)
    wrappedHalf.fill(0)
    keyShare.fill(0)
    return dataKey
  }

  async #checkNotDestroyed(
    tx: Transaction,
    organizationId: string,
    dataKeyId: string,
  ): Promise<void> {
    const row = await tx
      .selectFrom('data_keys')
      .select('destroyed_at')
      .where('id', '=', dataKeyId)
      .where('organization_id', '=', organizationId)
      .executeTakeFirst()
    if (row === undefined) throw noSuchDataKey(organizationId, dataKeyId)
    if (row.destroyed_at !== null) {
      this.forget(dataKeyId)
      throw dataKeyDestroyed(dataKeyId)
    }
  }
}

function noSuchDataKey(organizationId: string, dataKeyId: string): WardError {
  return new WardError(
    'ERR_KEY_UNAVAILABLE',
    `organization ${organizationId} has no data key ${dataKeyId}`,
    { details: { organization: organizationId, key: dataKeyId } },
  )
}
