import assert from 'node:assert/strict'
import { test } from 'node:test'

import { sealBytes } from './aead.js'
import { RandomPool } from './random-pool.js'

test('hands out every byte of a block once, and keeps earlier views intact across blocks', () => {
  const pool = new RandomPool(64)
  const taken = Array.from({ length: 40 }, () => pool.take(12))
  const copies = taken.map((bytes) => Buffer.from(bytes).toString('hex'))
  // 40 × 12 bytes span several blocks; views taken before a new block still hold their bytes.
  assert.deepEqual(
    taken.map((bytes) => Buffer.from(bytes).toString('hex')),
    copies,
  )
  assert.equal(new Set(copies).size, copies.length)
  for (const bytes of taken) assert.equal(bytes.length, 12)
  assert.equal(pool.take(100).length, 100, 'a request larger than a block is served whole')
})

test('seals every record with its own nonce', () => {
  const key = new Uint8Array(32).fill(7)
  const nonces = new Set<string>()
  for (let i = 0; i < 2000; i += 1) {
    const sealed = sealBytes(key, new Uint8Array(8), new Uint8Array(0))
    nonces.add(Buffer.from(sealed.subarray(1, 13)).toString('hex'))
  }
  assert.equal(nonces.size, 2000)
})
