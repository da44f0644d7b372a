import assert from 'node:assert/strict'
import { chmodSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { formatVerifierKey, parseVerifierKey, signNote, verifyNote } from '@ward/core'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  type TestDatabase,
} from '../../test/support.js'
import { openStore, type Store } from '../store/index.js'
import { LocalKeyFileProvider, createSigningKey, loadNoteSigner } from './index.js'

test('wrapped keys open only under the context they were wrapped for', async () => {
  const directory = temporaryDirectory()
  try {
    const provider = LocalKeyFileProvider.create(join(directory.path, 'master.key'))
    const secret = new Uint8Array(32).fill(7)
    const wrapped = await provider.wrap(secret, 'signing-key audit-log a')
    assert.deepEqual(await provider.unwrap(wrapped, 'signing-key audit-log a'), secret)
    await assert.rejects(provider.unwrap(wrapped, 'signing-key audit-log b'), {
      code: 'ERR_KEY_INVALID',
    })
    const damaged = new Uint8Array(wrapped)
    damaged[20] = (damaged[20] as number) ^ 1
    await assert.rejects(provider.unwrap(damaged, 'signing-key audit-log a'), {
      code: 'ERR_KEY_INVALID',
    })
  } finally {
    directory.remove()
  }
})

test('refuses a master key file that group or others can read, and never overwrites one', () => {
  const directory = temporaryDirectory()
  try {
    const path = join(directory.path, 'master.key')
    LocalKeyFileProvider.create(path)
    assert.doesNotThrow(() => LocalKeyFileProvider.open(path))
    chmodSync(path, 0o644)
    assert.throws(() => LocalKeyFileProvider.open(path), /mode 644; only its owner may read it/)
    assert.throws(() => LocalKeyFileProvider.create(path), { code: 'ERR_ALREADY_INITIALIZED' })
  } finally {
    directory.remove()
  }
})

for (const { dialect, skip } of dialects) {
  describe(`signing keys on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let store: Store

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      store = await openStore({ url: database.url })
    })
    after(async () => {
      await store.close()
      await database.drop()
      directory.remove()
    })

    test('stores the private key only wrapped, and signs notes its verifier key accepts', async () => {
      const provider = LocalKeyFileProvider.create(join(directory.path, 'master.key'))
      const record = await store.transaction((tx) => createSigningKey(tx, provider, 'audit-log'))
      const row = await store.db
        .selectFrom('signing_keys')
        .selectAll()
        .where('id', '=', record.id)
        .executeTakeFirstOrThrow()
      assert.equal(row.provider, 'local-file')
      assert.ok(row.wrapped_private_key.length > 32)

      const signer = await loadNoteSigner(store.db, provider, record.id, 'ward.test/platform')
      const note = signNote(
        'ward.test/platform\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n',
        signer,
      )
      const key = parseVerifierKey(formatVerifierKey('ward.test/platform', record.publicKey))
      assert.deepEqual(verifyNote(note, [key]).verified, ['ward.test/platform'])
    })

    test('refuses to sign with a key whose wrapped half was moved to another row', async () => {
      const provider = LocalKeyFileProvider.open(join(directory.path, 'master.key'))
      const first = await store.transaction((tx) => createSigningKey(tx, provider, 'audit-log'))
      const second = await store.transaction((tx) => createSigningKey(tx, provider, 'audit-log'))
      const moved = await store.db
        .selectFrom('signing_keys')
        .select('wrapped_private_key')
        .where('id', '=', first.id)
        .executeTakeFirstOrThrow()
      await store.db
        .updateTable('signing_keys')
        .set({ wrapped_private_key: moved.wrapped_private_key })
        .where('id', '=', second.id)
        .execute()
      await assert.rejects(loadNoteSigner(store.db, provider, second.id, 'x'), {
        code: 'ERR_KEY_INVALID',
      })
    })
  })
}
