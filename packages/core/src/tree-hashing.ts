// Allocation-light RFC 9162 hashing for code that hashes whole tiles, where the per-call
// objects of hashLeaf and hashChildren would dominate the running time. Internal to core: the
// scratch buffers below are shared, which is safe only because every function here runs to
// completion synchronously and none calls back into caller code.
import { sha256 } from '@noble/hashes/sha2.js'

import { HASH_SIZE } from './merkle.js'

const LEAF_PREFIX = Uint8Array.of(0x00)

// A hasher in its initial state, cloned over the working one to reset it without allocating.
const initialState = sha256.create()
const working = sha256.create()
const digest = new Uint8Array(HASH_SIZE)
// 0x01 || left || right, filled in place for every interior node.
const childPair = new Uint8Array(1 + 2 * HASH_SIZE)
childPair[0] = 0x01
// Room for the largest subtree a tile holds: 256 hashes.
const subtreeScratch = new Uint8Array(256 * HASH_SIZE)

/**
 * SHA-256 of the concatenation of `parts`. Hashing defaults to portable JavaScript; a host
 * with a native SHA-256 (Node's OpenSSL, WebCrypto cannot: it is asynchronous) may pass its
 * own to the functions below for speed. Both must give identical answers.
 */
export type Sha256 = (...parts: Uint8Array[]) => Uint8Array

/** Writes the leaf hash of `entry` into `out` at `outOffset`. */
export function leafHashInto(
  entry: Uint8Array,
  out: Uint8Array,
  outOffset: number,
  native?: Sha256,
): void {
  if (native !== undefined) {
    out.set(native(LEAF_PREFIX, entry), outOffset)
    return
  }
  initialState._cloneInto(working)
  working.update(LEAF_PREFIX).update(entry).digestInto(digest)
  out.set(digest, outOffset)
}

/**
 * Writes into `out` at `outOffset` the node hash of the two adjacent hashes at `leftOffset` in
 * `hashes`. `out` may be `hashes` itself, even overlapping the input.
 */
export function childrenHashInto(
  hashes: Uint8Array,
  leftOffset: number,
  out: Uint8Array,
  outOffset: number,
  native?: Sha256,
): void {
  childPair.set(hashes.subarray(leftOffset, leftOffset + 2 * HASH_SIZE), 1)
  if (native !== undefined) {
    out.set(native(childPair), outOffset)
    return
  }
  initialState._cloneInto(working)
  working.update(childPair).digestInto(digest)
  out.set(digest, outOffset)
}

/**
 * The Merkle tree hash of `count` adjacent hashes starting at byte `offset` of `hashes`, where
 * `count` is a power of two from 1 to 256: the root of the complete subtree they are leaves of.
 * Returns a fresh array.
 */
export function subtreeHash(
  hashes: Uint8Array,
  offset: number,
  count: number,
  native?: Sha256,
): Uint8Array {
  subtreeScratch.set(hashes.subarray(offset, offset + count * HASH_SIZE))
  // Hash pairs in place, halving the width each round; slot i is written only after the pair
  // that occupied it has been read.
  for (let width = count; width > 1; width /= 2) {
    for (let i = 0; i < width / 2; i++) {
      childrenHashInto(subtreeScratch, 2 * i * HASH_SIZE, subtreeScratch, i * HASH_SIZE, native)
    }
  }
  return subtreeScratch.slice(0, HASH_SIZE)
}
