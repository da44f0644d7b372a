import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { utf8Encode } from '@ward/core'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  type TestDatabase,
} from '../../test/support.js'
import { openStore, type Store } from '../store/index.js'
import { insertOrganization } from '../tenancy/index.js'
import {
  Keyring,
  LocalKeyFileProvider,
  LocalKeyShareStore,
  createDataKey,
  createKeyEncryptionKey,
  destroyDataKey,
  findDataKey,
  openRecord,
  sealRecord,
  type KeyShareStore,
  type KeyWrappingProvider,
} from './index.js'

/** Counts the calls that a cache exists to avoid. */
class Counting implements KeyWrappingProvider, KeyShareStore {
  readonly name = 'local-file'
  unwraps = 0
  gets = 0
  readonly #provider: KeyWrappingProvider
  readonly #shares: KeyShareStore

  constructor(provider: KeyWrappingProvider, shares: KeyShareStore) {
    this.#provider = provider
    this.#shares = shares
  }
  wrap(plaintext: Uint8Array, context: string) {
    return this.#provider.wrap(plaintext, context)
  }
  unwrap(wrapped: Uint8Array, context: string) {
    this.unwraps += 1
    return this.#provider.unwrap(wrapped, context)
  }
  put(id: string, share: Uint8Array) {
    return this.#shares.put(id, share)
  }
  get(id: string) {
    this.gets += 1
    return this.#shares.get(id)
  }
  erase(id: string) {
    return this.#shares.erase(id)
  }
}

for (const { dialect, skip } of dialects) {
  describe(`keyring on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let store: Store
    let counting: Counting
    let organizationId: string
    let clock = 0

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      store = await openStore({ url: database.url })
      counting = new Counting(
        LocalKeyFileProvider.create(join(directory.path, 'master.key')),
        LocalKeyShareStore.create(join(directory.path, 'key-shares')),
      )
      organizationId = await store.transaction(async (tx) => {
        const organization = await insertOrganization(tx, { slug: 'acme', name: 'Acme' })
        await createKeyEncryptionKey(tx, counting, organization.id)
        return organization.id
      })
    })
    after(async () => {
      // Also when `before` failed half-way, so that no test schema is left behind.
      await store?.close()
      await database?.drop()
      directory.remove()
    })

    const keyringOf = (options: { maxCachedKeys?: number } = {}) =>
      new Keyring({
        provider: counting,
        keyShares: counting,
        cacheTtlMs: 1000,
        now: () => clock,
        ...options,
      })

    async function newDataKey(keyring: Keyring, ownerId: string): Promise<string> {
      const key = await store.transaction((tx) =>
        createDataKey(tx, keyring, { organizationId, ownerType: 'patient', ownerId }),
      )
      return key.id
    }

    const binding = (dataKeyId: string, recordId: string) => ({
      organizationId,
      table: 'observations',
      recordId,
      dataKeyId,
    })

    test('unwraps a data key once for a stream of records, and again after its time is up', async () => {
      const keyring = keyringOf()
      const dataKeyId = await newDataKey(keyring, 'stream')
      const before = { unwraps: counting.unwraps, gets: counting.gets }

      await store.transaction(async (tx) => {
        for (let index = 0; index < 1000; index += 1) {
          await sealRecord(tx, keyring, binding(dataKeyId, `r${index}`), utf8Encode('72'))
        }
      })
      assert.deepEqual({ unwraps: counting.unwraps, gets: counting.gets }, before)

      const cold = keyringOf()
      await store.transaction(async (tx) => {
        for (let index = 0; index < 100; index += 1) {
          await sealRecord(tx, cold, binding(dataKeyId, `s${index}`), utf8Encode('72'))
        }
      })
      assert.equal(counting.gets - before.gets, 1)
      assert.equal(counting.unwraps - before.unwraps, 1)

      clock += 1001
      await store.transaction((tx) => sealRecord(tx, cold, binding(dataKeyId, 't'), utf8Encode('')))
      assert.equal(counting.gets - before.gets, 2)
    })

    test('holds no more keys than it is allowed', async () => {
      const keyring = keyringOf({ maxCachedKeys: 1 })
      const first = await newDataKey(keyring, 'first')
      const second = await newDataKey(keyring, 'second')
      const gets = counting.gets
      await store.transaction(async (tx) => {
        for (const dataKeyId of [first, second, first, second]) {
          await sealRecord(tx, keyring, binding(dataKeyId, 'r'), utf8Encode(''))
        }
      })
      assert.equal(counting.gets - gets, 4)
    })

    test('a destroyed key is refused at once, even by those holding it from the cache', async () => {
      const keyring = keyringOf()
      const dataKeyId = await newDataKey(keyring, 'destroyed')
      const held = await store.transaction((tx) =>
        keyring.dataKey(tx, { organizationId, dataKeyId }),
      )
      const sealed = held.seal(binding(dataKeyId, 'r'), utf8Encode('reading'))

      // Another process has the key cached too.
      const elsewhere = keyringOf()
      await store.transaction((tx) => openRecord(tx, elsewhere, binding(dataKeyId, 'r'), sealed))

      const destroyed = await store.transaction((tx) =>
        destroyDataKey(tx, keyring, { organizationId, dataKeyId, reason: 'retention' }),
      )
      assert.equal(destroyed.destructionReason, 'retention')
      assert.ok(destroyed.destroyedAt !== null)
      assert.equal(held.destroyed, true)
      assert.throws(() => held.open(binding(dataKeyId, 'r'), sealed), {
        code: 'ERR_DATA_KEY_DESTROYED',
      })
      await assert.rejects(
        store.transaction((tx) =>
          sealRecord(tx, keyring, binding(dataKeyId, 'r2'), utf8Encode('x')),
        ),
        { code: 'ERR_DATA_KEY_DESTROYED' },
      )
      await assert.rejects(
        store.transaction((tx) => openRecord(tx, elsewhere, binding(dataKeyId, 'r'), sealed)),
        { code: 'ERR_DATA_KEY_DESTROYED' },
      )

      const row = await store.db
        .selectFrom('data_keys')
        .selectAll()
        .where('id', '=', dataKeyId)
        .executeTakeFirstOrThrow()
      assert.ok(row.wrapped_key.every((byte) => byte === 0))
      assert.equal(await counting.get(dataKeyId), undefined)

      const again = await store.transaction((tx) =>
        destroyDataKey(tx, keyring, { organizationId, dataKeyId, reason: 'retention' }),
      )
      assert.equal(again.destroyedAt, destroyed.destroyedAt)
      assert.deepEqual(await findDataKey(store.db, organizationId, dataKeyId), destroyed)
    })

    test('refuses a destruction reason that is not a short code', async () => {
      const keyring = keyringOf()
      const dataKeyId = await newDataKey(keyring, 'reason')
      await assert.rejects(
        store.transaction((tx) =>
          destroyDataKey(tx, keyring, {
            organizationId,
            dataKeyId,
            reason: 'Patient Jane Doe asked',
          }),
        ),
        { code: 'ERR_INPUT_INVALID', message: /destruction reason/ },
      )
      await store.transaction((tx) => keyring.dataKey(tx, { organizationId, dataKeyId }))
    })
  })
}
