import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'

import { hashChildren, hashLeaf } from '@ward/core'

import { leafHash, nodeHash } from './hashing.js'

test('hashes leaves and nodes exactly as the portable RFC 9162 hasher does', () => {
  for (const size of [0, 1, 31, 32, 33, 64, 635, 65_535]) {
    const entry = new Uint8Array(randomBytes(size))
    assert.deepEqual(new Uint8Array(leafHash(entry)), hashLeaf(entry))
  }
  const left = new Uint8Array(randomBytes(32))
  const right = new Uint8Array(randomBytes(32))
  assert.deepEqual(new Uint8Array(nodeHash(left, right)), hashChildren(left, right))
})
