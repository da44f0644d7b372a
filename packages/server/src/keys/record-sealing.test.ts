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
  openRecord,
  sealRecord,
  type DataKeyRecord,
  type RecordBinding,
} from './index.js'

for (const { dialect, skip } of dialects) {
  describe(`record sealing on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let store: Store
    let keyring: Keyring
    let first: DataKeyRecord
    let second: DataKeyRecord
    let other: DataKeyRecord

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      store = await openStore({ url: database.url })
      const provider = LocalKeyFileProvider.create(join(directory.path, 'master.key'))
      keyring = new Keyring({
        provider,
        keyShares: LocalKeyShareStore.create(join(directory.path, 'key-shares')),
      })
      ;[first, second, other] = await store.transaction(async (tx) => {
        const acme = await insertOrganization(tx, { slug: 'acme', name: 'Acme Health' })
        const globex = await insertOrganization(tx, { slug: 'globex', name: 'Globex Care' })
        await createKeyEncryptionKey(tx, provider, acme.id)
        await createKeyEncryptionKey(tx, provider, globex.id)
        return Promise.all([
          createDataKey(tx, keyring, {
            organizationId: acme.id,
            ownerType: 'patient',
            ownerId: 'p1',
          }),
          createDataKey(tx, keyring, {
            organizationId: acme.id,
            ownerType: 'patient',
            ownerId: 'p2',
          }),
          createDataKey(tx, keyring, {
            organizationId: globex.id,
            ownerType: 'patient',
            ownerId: 'p1',
          }),
        ])
      })
    })
    after(async () => {
      // Also when `before` failed half-way, so that no test schema is left behind.
      await store?.close()
      await database?.drop()
      directory.remove()
    })

    const bindingOf = (key: DataKeyRecord, recordId = 'r-1', table = 'observations') => ({
      organizationId: key.organizationId,
      table,
      recordId,
      dataKeyId: key.id,
    })

    test('opens what it sealed, with a fresh nonce every time', async () => {
      const binding = bindingOf(first)
      const plaintext = utf8Encode('{"resourceType":"Observation"}')
      const [one, two] = await store.transaction(async (tx) => [
        await sealRecord(tx, keyring, binding, plaintext),
        await sealRecord(tx, keyring, binding, plaintext),
      ])
      assert.equal(one?.[0], 1, 'the first byte names the format')
      assert.notDeepEqual(one, two)

      const cold = new Keyring({ provider: keyring.provider, keyShares: keyring.keyShares })
      for (const sealed of [one, two]) {
        const opened = await store.transaction((tx) =>
          openRecord(tx, cold, binding, sealed as Uint8Array),
        )
        assert.equal(utf8Decode(opened), '{"resourceType":"Observation"}')
      }
    })

    test('a ciphertext copied onto another record, table, organization or key fails to open', async () => {
      const binding = bindingOf(first)
      const sealed = await store.transaction((tx) =>
        sealRecord(tx, keyring, binding, utf8Encode('reading')),
      )
      const elsewhere: RecordBinding[] = [
        bindingOf(first, 'r-2'),
        bindingOf(first, 'r-1', 'patient_identities'),
        bindingOf(second),
        bindingOf(other),
      ]
      for (const place of elsewhere) {
        await assert.rejects(
          store.transaction((tx) => openRecord(tx, keyring, place, sealed)),
          { code: 'ERR_RECORD_UNREADABLE' },
          `opened at ${place.table}/${place.recordId} under ${place.dataKeyId}`,
        )
      }
    })

    test('a single flipped bit anywhere fails to open', async () => {
      const binding = bindingOf(first, 'r-flip')
      const sealed = await store.transaction((tx) =>
        sealRecord(tx, keyring, binding, utf8Encode('heart rate 72')),
      )
      for (let position = 0; position < sealed.length; position += 1) {
        const damaged = new Uint8Array(sealed)
        damaged[position] = (damaged[position] as number) ^ 0x01
        await assert.rejects(
          store.transaction((tx) => openRecord(tx, keyring, binding, damaged)),
          { code: 'ERR_RECORD_UNREADABLE' },
          `byte ${position}`,
        )
      }
      await assert.rejects(
        store.transaction((tx) => openRecord(tx, keyring, binding, sealed.subarray(0, 20))),
        { code: 'ERR_RECORD_UNREADABLE' },
      )
    })

    test('a data key is not reachable through another organization', async () => {
      const crossed = { ...bindingOf(first), organizationId: other.organizationId }
      await assert.rejects(
        store.transaction((tx) => sealRecord(tx, keyring, crossed, utf8Encode('x'))),
        { code: 'ERR_KEY_UNAVAILABLE' },
      )
      const cold = new Keyring({ provider: keyring.provider, keyShares: keyring.keyShares })
      await assert.rejects(
        store.transaction((tx) => openRecord(tx, cold, crossed, new Uint8Array(40))),
        { code: 'ERR_KEY_UNAVAILABLE' },
      )
    })

    test('stores the wrapped half only, bound to its row', async () => {
      const rows = await store.db.selectFrom('data_keys').selectAll().orderBy('id').execute()
      assert.equal(rows.length, 3)
      for (const row of rows) {
        assert.equal(row.wrapped_key.length, 1 + 12 + 32 + 16)
        assert.equal(row.key_encryption_key_version, 1)
      }

      // Swap the wrapped halves of two keys of one organization: neither unwraps any more.
      const [a, b] = await store.db
        .selectFrom('data_keys')
        .select(['id', 'wrapped_key'])
        .where('id', 'in', [first.id, second.id])
        .execute()
      await store.transaction(async (tx) => {
        await tx
          .updateTable('data_keys')
          .set({ wrapped_key: b?.wrapped_key as Uint8Array })
          .where('id', '=', a?.id as string)
          .execute()
        await tx
          .updateTable('data_keys')
          .set({ wrapped_key: a?.wrapped_key as Uint8Array })
          .where('id', '=', b?.id as string)
          .execute()
      })
      const cold = new Keyring({ provider: keyring.provider, keyShares: keyring.keyShares })
      for (const key of [first, second]) {
        await assert.rejects(
          store.transaction((tx) => cold.dataKey(tx, bindingOf(key))),
          { code: 'ERR_KEY_INVALID' },
        )
      }
    })
  })
}
