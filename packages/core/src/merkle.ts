import { sha256 } from '@noble/hashes/sha2.js'

import { bytesEqual } from './encoding.js'
import { WardError } from './errors.js'

/** Length in bytes of every hash in a Ward Merkle tree (SHA-256). */
export const HASH_SIZE = 32

const LEAF_PREFIX = Uint8Array.of(0x00)
const NODE_PREFIX = Uint8Array.of(0x01)

/**
 * A complete subtree of an RFC 9162 Merkle tree: the perfect binary tree of height `level`
 * covering leaves `[index * 2^level, (index + 1) * 2^level)`. Level 0 nodes are leaf hashes.
 * Complete subtrees never change once their last leaf is appended, which is why they are what
 * a log stores and what proofs are assembled from.
 */
export type NodeId = { level: number; index: number }

/** Looks up the stored hash of a complete subtree; must throw if it does not have it. */
export type NodeReader = (node: NodeId) => Uint8Array

/** The RFC 9162 leaf hash: SHA-256 of 0x00 followed by the leaf data. */
export function hashLeaf(data: Uint8Array): Uint8Array {
  return sha256.create().update(LEAF_PREFIX).update(data).digest()
}

/** The RFC 9162 interior node hash: SHA-256 of 0x01, the left hash, then the right hash. */
export function hashChildren(left: Uint8Array, right: Uint8Array): Uint8Array {
  return sha256.create().update(NODE_PREFIX).update(left).update(right).digest()
}

/** The root hash of the empty tree: SHA-256 of no bytes. A fresh copy on every call. */
export function emptyRoot(): Uint8Array {
  return sha256(new Uint8Array(0))
}

/**
 * Folds hashes from the right with {@link hashChildren}: `[a, b, c]` becomes
 * `H(a, H(b, c))`. A single hash is returned as it is. This is how the complete subtrees
 * returned by {@link subtreeNodes} combine into the hash of the range they cover.
 */
export function foldRight(hashes: readonly Uint8Array[]): Uint8Array {
  let result = hashes[hashes.length - 1]
  if (result === undefined) throw rangeError('cannot fold an empty list of hashes')
  for (let i = hashes.length - 2; i >= 0; i--) result = hashChildren(hashes[i]!, result)
  return result
}

/**
 * The complete subtrees covering leaves `[begin, end)`, left to right, each the largest one
 * aligned at its start that still fits. For a range that starts at a multiple of a power of two
 * no smaller than its length — every range the RFC 9162 recursion visits — the Merkle tree hash
 * of the range is the {@link foldRight} of these subtrees' hashes. Empty for an empty range.
 */
export function subtreeNodes(begin: number, end: number): NodeId[] {
  assertCount(begin, 'range begin')
  assertCount(end, 'range end')
  if (begin > end) throw rangeError(`range begin ${begin} is after range end ${end}`)

  const nodes: NodeId[] = []
  let position = begin
  while (position < end) {
    let width = 1
    let level = 0
    while (position % (width * 2) === 0 && position + width * 2 <= end) {
      width *= 2
      level++
    }
    nodes.push({ level, index: position / width })
    position += width
  }
  return nodes
}

/**
 * The complete subtrees whose {@link foldRight} is the root hash of a tree of `size` leaves:
 * one per set bit of `size`, largest first. Empty for the empty tree.
 */
export function rootNodes(size: number): NodeId[] {
  return subtreeNodes(0, size)
}

/**
 * The RFC 9162 inclusion proof (audit path) of leaf `index` in a tree of `size` leaves, as node
 * lists: element `i` of the proof is the {@link foldRight} of the hashes of list `i`, a list of
 * one when the proof element is itself a complete subtree. Elements are in PATH order, from
 * the leaf's sibling up to the child of the root. Throws `ERR_PROOF_RANGE` unless
 * `0 <= index < size` are safe integers.
 */
export function inclusionProofNodes(index: number, size: number): NodeId[][] {
  assertCount(index, 'leaf index')
  assertCount(size, 'tree size')
  if (index >= size) throw rangeError(`leaf index ${index} is not below tree size ${size}`)

  const proof: NodeId[][] = []
  // Walk down from the root; each step's sibling is one level nearer the root than the next
  // step's, so the list is reversed at the end to give PATH order.
  let begin = 0
  let end = size
  while (end - begin > 1) {
    const split = begin + largestPowerOfTwoBelow(end - begin)
    if (index < split) {
      proof.push(subtreeNodes(split, end))
      end = split
    } else {
      proof.push(subtreeNodes(begin, split))
      begin = split
    }
  }
  return proof.reverse()
}

/**
 * The RFC 9162 consistency proof between the trees of `size1` and `size2` leaves, as node lists
 * in PROOF/SUBPROOF order (see {@link inclusionProofNodes} for how a list becomes one element).
 * Empty when the sizes are equal. Throws `ERR_PROOF_RANGE` unless `1 <= size1 <= size2` are
 * safe integers: a proof from the empty tree proves nothing and is never produced.
 */
export function consistencyProofNodes(size1: number, size2: number): NodeId[][] {
  assertCount(size1, 'first tree size')
  assertCount(size2, 'second tree size')
  if (size1 === 0) throw rangeError('a consistency proof needs a non-empty first tree')
  if (size1 > size2) {
    throw rangeError(`first tree size ${size1} is larger than second tree size ${size2}`)
  }

  const proof: NodeId[][] = []
  // SUBPROOF(m, D[begin:end], complete) unrolled: each step adds one element after the ones
  // the deeper steps add, so it is collected top-down and reversed.
  let m = size1
  let begin = 0
  let end = size2
  let complete = true
  while (m !== end - begin) {
    const split = largestPowerOfTwoBelow(end - begin)
    if (m <= split) {
      proof.push(subtreeNodes(begin + split, end))
      end = begin + split
    } else {
      proof.push(subtreeNodes(begin, begin + split))
      m -= split
      begin += split
      complete = false
    }
  }
  if (!complete) proof.push(subtreeNodes(begin, end))
  return proof.reverse()
}

/** The root hash of a tree of `size` leaves, read from stored complete subtree hashes. */
export function treeRoot(size: number, getNode: NodeReader): Uint8Array {
  if (size === 0) return emptyRoot()
  return foldRight(rootNodes(size).map(getNode))
}

/** The inclusion proof of leaf `index` in a tree of `size` leaves, from stored subtree hashes. */
export function inclusionProof(index: number, size: number, getNode: NodeReader): Uint8Array[] {
  return inclusionProofNodes(index, size).map((nodes) => foldRight(nodes.map(getNode)))
}

/** The consistency proof from tree size `size1` to `size2`, from stored subtree hashes. */
export function consistencyProof(size1: number, size2: number, getNode: NodeReader): Uint8Array[] {
  return consistencyProofNodes(size1, size2).map((nodes) => foldRight(nodes.map(getNode)))
}

/** What {@link verifyInclusion} checks: that `leafHash` is leaf `index` of the tree `root`. */
export type InclusionClaim = {
  leafHash: Uint8Array
  index: number
  size: number
  proof: readonly Uint8Array[]
  root: Uint8Array
}

/** What {@link verifyConsistency} checks: that tree `root1` is a prefix of tree `root2`. */
export type ConsistencyClaim = {
  size1: number
  size2: number
  proof: readonly Uint8Array[]
  root1: Uint8Array
  root2: Uint8Array
}

/**
 * The root hash that an inclusion proof implies, computed as RFC 9162 section 2.1.3.2
 * describes. Throws `ERR_PROOF_INVALID` when the index is out of range, the leaf hash or a
 * proof element is not 32 bytes, or the proof has the wrong number of elements for the
 * index and size. A returned root still has to be compared with a trusted one.
 */
export function rootFromInclusionProof(claim: Omit<InclusionClaim, 'root'>): Uint8Array {
  const { leafHash, index, size, proof } = claim
  assertProofCount(index, 'leaf index')
  assertProofCount(size, 'tree size')
  if (index >= size) throw proofError(`leaf index ${index} is not below tree size ${size}`)
  if (leafHash.length !== HASH_SIZE) throw proofError(`leaf hash is not ${HASH_SIZE} bytes`)
  assertProofHashes(proof)
  const expectedLength = inclusionProofLength(index, size)
  if (proof.length !== expectedLength) {
    throw proofError(`wrong proof length ${proof.length}, expected ${expectedLength}`)
  }

  let fn = index
  let sn = size - 1
  let r = leafHash
  for (const p of proof) {
    if (sn === 0) throw proofError('proof is longer than the path to the root')
    if (fn % 2 === 1 || fn === sn) {
      r = hashChildren(p, r)
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2)
        sn = Math.floor(sn / 2)
      }
    } else {
      r = hashChildren(r, p)
    }
    fn = Math.floor(fn / 2)
    sn = Math.floor(sn / 2)
  }
  if (sn !== 0) throw proofError('proof is shorter than the path to the root')
  return r
}

/**
 * Verifies an RFC 9162 inclusion proof (section 2.1.3.2) and returns normally only if the
 * proof shows `leafHash` at `index` in the tree of `size` leaves whose root is `root`.
 * Otherwise throws `ERR_PROOF_INVALID` with a short reason.
 */
export function verifyInclusion(claim: InclusionClaim): void {
  const computed = rootFromInclusionProof(claim)
  if (!bytesEqual(computed, claim.root)) throw proofError('root mismatch')
}

/**
 * Verifies an RFC 9162 consistency proof (section 2.1.4.2) and returns normally only if the
 * proof shows that the tree of `size1` leaves with root `root1` is a prefix of the tree of
 * `size2` leaves with root `root2`. Otherwise throws `ERR_PROOF_INVALID` with a short reason.
 * Equal sizes need an empty proof and byte-identical roots. A first size of 0 is rejected:
 * every tree extends the empty one, so such a proof would show nothing about this log.
 */
export function verifyConsistency(claim: ConsistencyClaim): void {
  const { size1, size2, proof, root1, root2 } = claim
  assertProofCount(size1, 'first tree size')
  assertProofCount(size2, 'second tree size')
  if (size1 > size2) {
    throw proofError(`first tree size ${size1} is larger than second tree size ${size2}`)
  }
  if (size1 === 0) throw proofError('a consistency proof from the empty tree proves nothing')
  if (size1 === size2) {
    if (proof.length !== 0) throw proofError('proof must be empty when the sizes are equal')
    if (!bytesEqual(root1, root2)) throw proofError('root mismatch')
    return
  }
  assertProofHashes(proof)
  const expectedLength = consistencyProofLength(size1, size2)
  if (proof.length !== expectedLength) {
    throw proofError(`wrong proof length ${proof.length}, expected ${expectedLength}`)
  }

  // When size1 is a power of two the first tree is a complete subtree the proof leaves out,
  // because the verifier already holds its hash.
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : proof
  let fn = size1 - 1
  let sn = size2 - 1
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2)
    sn = Math.floor(sn / 2)
  }
  let fr = path[0]!
  let sr = path[0]!
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!
    if (sn === 0) throw proofError('proof is longer than the path to the root')
    if (fn % 2 === 1 || fn === sn) {
      fr = hashChildren(c, fr)
      sr = hashChildren(c, sr)
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2)
        sn = Math.floor(sn / 2)
      }
    } else {
      sr = hashChildren(sr, c)
    }
    fn = Math.floor(fn / 2)
    sn = Math.floor(sn / 2)
  }
  if (sn !== 0) throw proofError('proof is shorter than the path to the root')
  if (!bytesEqual(fr, root1)) throw proofError('first root mismatch')
  if (!bytesEqual(sr, root2)) throw proofError('second root mismatch')
}

function inclusionProofLength(index: number, size: number): number {
  let length = 0
  let begin = 0
  let end = size
  while (end - begin > 1) {
    const split = begin + largestPowerOfTwoBelow(end - begin)
    if (index < split) end = split
    else begin = split
    length++
  }
  return length
}

function consistencyProofLength(size1: number, size2: number): number {
  let length = 0
  let m = size1
  let n = size2
  let complete = true
  while (m !== n) {
    const split = largestPowerOfTwoBelow(n)
    if (m <= split) {
      n = split
    } else {
      m -= split
      n -= split
      complete = false
    }
    length++
  }
  return complete ? length : length + 1
}

/** The largest power of two strictly below `n`, for `n >= 2`: the RFC 9162 split point. */
function largestPowerOfTwoBelow(n: number): number {
  let power = 1
  while (power * 2 < n) power *= 2
  return power
}

function isPowerOfTwo(n: number): boolean {
  let value = n
  while (value > 1 && value % 2 === 0) value /= 2
  return value === 1
}

function assertCount(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw rangeError(`${what} must be a non-negative safe integer, got ${String(value)}`)
  }
}

function assertProofCount(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw proofError(`${what} must be a non-negative safe integer, got ${String(value)}`)
  }
}

function assertProofHashes(proof: readonly Uint8Array[]): void {
  proof.forEach((hash, i) => {
    if (hash.length !== HASH_SIZE) throw proofError(`proof element ${i} is not ${HASH_SIZE} bytes`)
  })
}

function rangeError(message: string): WardError {
  return new WardError('ERR_PROOF_RANGE', message)
}

function proofError(reason: string): WardError {
  return new WardError('ERR_PROOF_INVALID', reason)
}
