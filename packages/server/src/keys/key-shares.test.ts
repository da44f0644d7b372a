import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { chmodSync, existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'

import { temporaryDirectory } from '../../test/support.js'
import { LocalKeyShareStore } from './index.js'

test('stores a key share durably, once, and erases it for good', async () => {
  const directory = temporaryDirectory()
  try {
    const path = join(directory.path, 'key-shares')
    const shares = LocalKeyShareStore.create(path)
    assert.equal(statSync(path).mode & 0o777, 0o700)

    const id = randomUUID()
    const share = new Uint8Array(randomBytes(32))
    await shares.put(id, share)
    const file = join(path, id.slice(0, 2), id)
    assert.equal(statSync(file).mode & 0o777, 0o600)
    assert.deepEqual(await LocalKeyShareStore.open(path).get(id), share)
    await assert.rejects(shares.put(id, new Uint8Array(32)), { code: 'ERR_KEY_UNAVAILABLE' })

    await shares.erase(id)
    assert.equal(existsSync(file), false)
    assert.equal(await shares.get(id), undefined)
    await shares.erase(id)
  } finally {
    directory.remove()
  }
})

test('lets only Ward’s own key ids and 32-byte shares reach the file system', async () => {
  const directory = temporaryDirectory()
  try {
    const shares = LocalKeyShareStore.create(join(directory.path, 'key-shares'))
    for (const id of ['../master.key', 'A0000000-0000-4000-8000-000000000000', '']) {
      await assert.rejects(shares.get(id), { code: 'ERR_INPUT_INVALID' })
      await assert.rejects(shares.put(id, new Uint8Array(32)), { code: 'ERR_INPUT_INVALID' })
      await assert.rejects(shares.erase(id), { code: 'ERR_INPUT_INVALID' })
    }
    await assert.rejects(shares.put(randomUUID(), new Uint8Array(31)), {
      code: 'ERR_KEY_INVALID',
    })
  } finally {
    directory.remove()
  }
})

test('refuses a missing store, one that others may enter, and never recreates one', () => {
  const directory = temporaryDirectory()
  try {
    const path = join(directory.path, 'key-shares')
    assert.throws(() => LocalKeyShareStore.open(path), { code: 'ERR_NOT_INITIALIZED' })
    LocalKeyShareStore.create(path)
    assert.throws(() => LocalKeyShareStore.create(path), { code: 'ERR_ALREADY_INITIALIZED' })
    chmodSync(path, 0o750)
    assert.throws(() => LocalKeyShareStore.open(path), /mode 750; only its owner may enter it/)
  } finally {
    directory.remove()
  }
})
