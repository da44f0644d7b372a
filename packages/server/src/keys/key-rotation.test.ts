import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { utf8Decode, utf8Encode } from '@ward/core'

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
  listKeyEncryptionKeys,
  openRecord,
  retireKeyEncryptionKeys,
  rewrapDataKeyBatch,
  rewrapDataKeys,
  rotateKeyEncryptionKey,
  sealRecord,
  type RecordBinding,
} from './index.js'

interface Sealed {
  readonly binding: RecordBinding
  readonly sealed: Uint8Array
  readonly text: string
}

for (const { dialect, skip } of dialects) {
  describe(`key-encryption key rotation on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let store: Store
    let provider: LocalKeyFileProvider
    let keyShares: LocalKeyShareStore
    let keyring: Keyring
    let records = 0

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      store = await openStore({ url: database.url })
      provider = LocalKeyFileProvider.create(join(directory.path, 'master.key'))
      keyShares = LocalKeyShareStore.create(join(directory.path, 'key-shares'))
      keyring = new Keyring({ provider, keyShares })
    })
    after(async () => {
      // Also when `before` failed half-way, so that no test schema is left behind.
      await store?.close()
      await database?.drop()
      directory.remove()
    })

    async function organization(slug: string): Promise<string> {
      return store.transaction(async (tx) => {
        const created = await insertOrganization(tx, { slug, name: slug })
        await createKeyEncryptionKey(tx, provider, created.id)
        return created.id
      })
    }

    /** Creates a data key and seals one record under it, in one transaction. */
    async function write(organizationId: string, owner: string): Promise<Sealed> {
      return store.transaction(async (tx) => {
        const key = await createDataKey(tx, keyring, {
          organizationId,
          ownerType: 'patient',
          ownerId: owner,
        })
        return sealUnder(tx, key.id, organizationId)
      })
    }

    async function sealUnder(
      tx: Parameters<typeof sealRecord>[0],
      dataKeyId: string,
      organizationId: string,
    ): Promise<Sealed> {
      records += 1
      const binding = { organizationId, table: 'observations', recordId: `r${records}`, dataKeyId }
      const text = `reading ${records}`
      return { binding, text, sealed: await sealRecord(tx, keyring, binding, utf8Encode(text)) }
    }

    /** Opens every record with a keyring that has nothing cached, so the store decides. */
    async function openAll(all: readonly Sealed[]): Promise<void> {
      const cold = new Keyring({ provider, keyShares })
      await store.transaction(async (tx) => {
        for (const { binding, sealed, text } of all) {
          assert.equal(utf8Decode(await openRecord(tx, cold, binding, sealed)), text)
        }
      })
    }

    async function versionsOf(organizationId: string) {
      const keys = await listKeyEncryptionKeys(store.db, organizationId)
      return keys.map((key) => `${key.version}:${key.state}`)
    }

    test('creates version 1 at organization creation, and only once', async () => {
      const organizationId = await organization('once')
      assert.deepEqual(await versionsOf(organizationId), ['1:active'])
      await assert.rejects(
        store.transaction((tx) => createKeyEncryptionKey(tx, provider, organizationId)),
        { code: 'ERR_ALREADY_INITIALIZED' },
      )
      const row = await store.db
        .selectFrom('key_encryption_keys')
        .selectAll()
        .where('organization_id', '=', organizationId)
        .executeTakeFirstOrThrow()
      assert.equal(row.provider, 'local-file')
      assert.equal(row.wrapped_key?.length, 1 + 12 + 32 + 16)
    })

    test('rewraps batch by batch while records are written and read, then retires the old version', async () => {
      const organizationId = await organization('interleaved')
      const all: Sealed[] = []
      for (let owner = 0; owner < 10; owner += 1) all.push(await write(organizationId, `p${owner}`))
      const oldKeys = all.map((record) => record.binding.dataKeyId)

      const rotated = await store.transaction((tx) =>
        rotateKeyEncryptionKey(tx, provider, organizationId),
      )
      assert.equal(rotated.version, 2)
      assert.deepEqual(await versionsOf(organizationId), ['1:superseded', '2:active'])

      let batches = 0
      for (;;) {
        const moved = await store.transaction((tx) =>
          rewrapDataKeyBatch(tx, provider, organizationId, { batchSize: 3 }),
        )
        if (moved === 0) break
        batches += 1
        // Between batches: a new key lands on version 2, an old key seals a new record, and
        // everything written so far opens, from keys on either version.
        all.push(await write(organizationId, `new${batches}`))
        all.push(
          await store.transaction((tx) =>
            sealUnder(tx, oldKeys[batches % oldKeys.length] as string, organizationId),
          ),
        )
        await openAll(all)
      }
      assert.equal(batches, 4)

      const versions = await store.db
        .selectFrom('data_keys')
        .select('key_encryption_key_version')
        .where('organization_id', '=', organizationId)
        .execute()
      assert.ok(versions.every((row) => row.key_encryption_key_version === 2))

      assert.deepEqual(
        await store.transaction((tx) => retireKeyEncryptionKeys(tx, organizationId)),
        [1],
      )
      assert.deepEqual(await versionsOf(organizationId), ['1:retired', '2:active'])
      const retired = await store.db
        .selectFrom('key_encryption_keys')
        .select(['wrapped_key', 'retired_at'])
        .where('organization_id', '=', organizationId)
        .where('version', '=', 1)
        .executeTakeFirstOrThrow()
      assert.equal(retired.wrapped_key, null)
      assert.ok(retired.retired_at !== null)

      await openAll(all)
    })

    test('the rewrap job runs alongside concurrent writers and readers', async () => {
      const organizationId = await organization('concurrent')
      const all: Sealed[] = []
      for (let owner = 0; owner < 20; owner += 1) all.push(await write(organizationId, `p${owner}`))
      await store.transaction((tx) => rotateKeyEncryptionKey(tx, provider, organizationId))

      const writers = (async () => {
        for (let round = 0; round < 10; round += 1)
          all.push(await write(organizationId, `w${round}`))
      })()
      const readers = (async () => {
        for (let round = 0; round < 10; round += 1) await openAll([...all])
      })()
      const [result] = await Promise.all([
        rewrapDataKeys(store, provider, organizationId, { batchSize: 2 }),
        writers,
        readers,
      ])

      assert.ok(result.rewrapped >= 20, `rewrapped ${result.rewrapped}`)
      assert.deepEqual(result.retired, [1])
      assert.deepEqual(await versionsOf(organizationId), ['1:retired', '2:active'])
      await openAll(all)
    })

    test('keeps a version while a live data key needs it, and skips destroyed keys', async () => {
      const organizationId = await organization('careful')
      const kept = await write(organizationId, 'kept')
      const gone = await write(organizationId, 'gone')
      await store.transaction((tx) => rotateKeyEncryptionKey(tx, provider, organizationId))
      await store.transaction((tx) => rotateKeyEncryptionKey(tx, provider, organizationId))

      // Version 2 was active without wrapping anything, so it can go now; version 1 cannot.
      assert.deepEqual(
        await store.transaction((tx) => retireKeyEncryptionKeys(tx, organizationId)),
        [2],
      )
      assert.deepEqual(await versionsOf(organizationId), ['1:superseded', '2:retired', '3:active'])

      await store.transaction((tx) =>
        destroyDataKey(tx, keyring, {
          organizationId,
          dataKeyId: gone.binding.dataKeyId,
          reason: 'patient-request',
        }),
      )
      const result = await rewrapDataKeys(store, provider, organizationId, { batchSize: 10 })
      assert.deepEqual(result, { rewrapped: 1, retired: [1] })
      await openAll([kept])
      await assert.rejects(openAll([gone]), { code: 'ERR_DATA_KEY_DESTROYED' })
    })

    test('refuses to wrap data keys for an organization without a key-encryption key', async () => {
      const organizationId = await store.transaction(
        async (tx) => (await insertOrganization(tx, { slug: 'keyless', name: 'Keyless' })).id,
      )
      await assert.rejects(
        store.transaction((tx) =>
          createDataKey(tx, keyring, { organizationId, ownerType: 'patient', ownerId: 'p' }),
        ),
        { code: 'ERR_KEY_UNAVAILABLE', message: /has no active key-encryption key/ },
      )
      await assert.rejects(
        store.transaction((tx) => rotateKeyEncryptionKey(tx, provider, organizationId)),
        { code: 'ERR_KEY_UNAVAILABLE' },
      )
    })
  })
}
