import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { buildTreeStore } from '../test/tree-store.js'
import { readVectors } from '../test/vectors.js'
import { fromBase64, fromHex, toHex } from './encoding.js'
import { isWardError } from './errors.js'
import {
  consistencyProof,
  consistencyProofNodes,
  emptyRoot,
  foldRight,
  hashChildren,
  hashLeaf,
  inclusionProof,
  inclusionProofNodes,
  rootFromInclusionProof,
  rootNodes,
  subtreeNodes,
  treeRoot,
  verifyConsistency,
  verifyInclusion,
} from './merkle.js'

type MerkleVectors = {
  hasher_vectors: {
    desc: string
    leaf_input?: string
    left?: string
    right?: string
    expected: string
    expected_base64?: string
  }[]
  reference_tree: {
    leaf_inputs: string[]
    leaf_hashes: string[]
    node_hashes_by_level: { levels: string[][] }
    roots: { tree_size: number; root: string }[]
  }
  rfc6962_section_2_1_3_example: {
    node_hashes: Record<string, string>
    root: string
    audit_paths: Record<string, string[]>
    consistency_proofs_to_size_7: Record<string, string[]>
  }
  inclusion_proofs: { published: InclusionVector[] }
  consistency_proofs: { published: ConsistencyVector[] }
  verifier_probes: {
    inclusion: (InclusionVector & ProbeFields)[]
    consistency: (ConsistencyVector & ProbeFields)[]
  }
}
type InclusionVector = {
  leaf_index: number
  tree_size: number
  leaf_input?: string
  leaf_hash: string
  root: string
  proof: string[]
}
type ConsistencyVector = {
  size1: number
  size2: number
  root1: string
  root2: string
  proof: string[]
}
type ProbeFields = { file: string; desc: string; expect: 'accept' | 'reject' }

const vectors = readVectors<MerkleVectors>('merkle.json')

/** MTH straight from the RFC 9162 definition, independent of subtree decomposition. */
function referenceRoot(leafHashes: readonly Uint8Array[]): Uint8Array {
  if (leafHashes.length === 0) return emptyRoot()
  if (leafHashes.length === 1) return leafHashes[0]!
  let split = 1
  while (split * 2 < leafHashes.length) split *= 2
  return hashChildren(
    referenceRoot(leafHashes.slice(0, split)),
    referenceRoot(leafHashes.slice(split)),
  )
}

/** A small deterministic generator, so a failing randomized case can be replayed. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function accepts(check: () => void): boolean {
  try {
    check()
    return true
  } catch (error) {
    assert.ok(isWardError(error, 'ERR_PROOF_INVALID'), `unexpected error ${String(error)}`)
    return false
  }
}

const hexList = (hashes: readonly Uint8Array[]): string[] => hashes.map(toHex)
const bytesList = (hexes: readonly string[]): Uint8Array[] => hexes.map(fromHex)
const isRangeError = (error: unknown): boolean => isWardError(error, 'ERR_PROOF_RANGE')
const isProofError = (error: unknown): boolean => isWardError(error, 'ERR_PROOF_INVALID')

const reference = buildTreeStore(vectors.reference_tree.leaf_inputs.map(fromHex))

describe('RFC 9162 hashing', () => {
  it('matches every published hasher known answer', () => {
    for (const vector of vectors.hasher_vectors) {
      let actual: Uint8Array
      if (vector.left !== undefined && vector.right !== undefined) {
        actual = hashChildren(fromHex(vector.left), fromHex(vector.right))
      } else if (vector.leaf_input !== undefined) {
        actual = hashLeaf(fromHex(vector.leaf_input))
      } else {
        actual = emptyRoot()
      }
      assert.equal(toHex(actual), vector.expected, vector.desc)
      if (vector.expected_base64 !== undefined) {
        assert.deepEqual(actual, fromBase64(vector.expected_base64), vector.desc)
      }
    }
  })

  it('hashes the reference tree leaves and every complete subtree by level', () => {
    assert.deepEqual(hexList(reference.levels[0]!), vectors.reference_tree.leaf_hashes)
    assert.deepEqual(
      reference.levels.map(hexList),
      vectors.reference_tree.node_hashes_by_level.levels,
    )
  })

  it('computes the reference roots for sizes 0 to 8 from stored subtrees', () => {
    for (const { tree_size: size, root } of vectors.reference_tree.roots) {
      assert.equal(toHex(treeRoot(size, reference.getNode)), root, `size ${size}`)
    }
  })

  it('folds from the right and returns a single hash unchanged', () => {
    const [a, b, c] = reference.levels[0]!
    assert.equal(foldRight([a!]), a)
    assert.deepEqual(foldRight([a!, b!, c!]), hashChildren(a!, hashChildren(b!, c!)))
    assert.throws(() => foldRight([]), isRangeError)
  })
})

describe('subtree decomposition', () => {
  it('covers a range with the largest aligned complete subtrees, left to right', () => {
    assert.deepEqual(subtreeNodes(3, 9), [
      { level: 0, index: 3 },
      { level: 2, index: 1 },
      { level: 0, index: 8 },
    ])
    assert.deepEqual(rootNodes(13), [
      { level: 3, index: 0 },
      { level: 2, index: 2 },
      { level: 0, index: 12 },
    ])
    assert.deepEqual(rootNodes(0), [])
    assert.deepEqual(subtreeNodes(4, 4), [])
  })

  it('handles the largest safe tree size', () => {
    const size = Number.MAX_SAFE_INTEGER
    const nodes = rootNodes(size)
    assert.equal(nodes.length, 53)
    assert.deepEqual(nodes[0], { level: 52, index: 0 })
    assert.deepEqual(nodes[52], { level: 0, index: size - 1 })
    assert.equal(inclusionProofNodes(0, size).length, 53)
    assert.equal(inclusionProofNodes(size - 1, size).length, 52)
  })

  it('rejects reversed, negative, fractional and unsafe ranges', () => {
    assert.throws(() => subtreeNodes(5, 3), isRangeError)
    assert.throws(() => subtreeNodes(-1, 3), isRangeError)
    assert.throws(() => subtreeNodes(0.5, 3), isRangeError)
    assert.throws(() => rootNodes(2 ** 53), isRangeError)
  })
})

describe('proof generation', () => {
  const example = vectors.rfc6962_section_2_1_3_example
  const named = (names: readonly string[]): string[] =>
    names.map((name) => example.node_hashes[name]!)

  it('reproduces the audit paths of the RFC example tree of 7 leaves', () => {
    assert.equal(toHex(treeRoot(7, reference.getNode)), example.root)
    for (const [leaf, names] of Object.entries(example.audit_paths)) {
      const index = Number(leaf.slice(1))
      assert.deepEqual(hexList(inclusionProof(index, 7, reference.getNode)), named(names), leaf)
    }
  })

  it('names a proof element that is not a complete subtree by the subtrees it folds', () => {
    // Path of d0 in the 7-leaf tree: b, h = (c, d), l = (i, j) with i = (e, f) and j = d6.
    assert.deepEqual(inclusionProofNodes(0, 7), [
      [{ level: 0, index: 1 }],
      [{ level: 1, index: 1 }],
      [
        { level: 1, index: 2 },
        { level: 0, index: 6 },
      ],
    ])
  })

  it('reproduces the consistency proofs of the RFC example tree of 7 leaves', () => {
    for (const [label, names] of Object.entries(example.consistency_proofs_to_size_7)) {
      const size1 = Number(/PROOF\((\d+),/.exec(label)![1])
      assert.deepEqual(hexList(consistencyProof(size1, 7, reference.getNode)), named(names), label)
    }
  })

  it('generates the published inclusion proofs exactly, and they verify', () => {
    for (const vector of vectors.inclusion_proofs.published) {
      const label = `leaf ${vector.leaf_index} of ${vector.tree_size}`
      assert.equal(toHex(hashLeaf(fromHex(vector.leaf_input!))), vector.leaf_hash, label)
      const proof = inclusionProof(vector.leaf_index, vector.tree_size, reference.getNode)
      assert.deepEqual(hexList(proof), vector.proof, label)
      verifyInclusion({
        leafHash: fromHex(vector.leaf_hash),
        index: vector.leaf_index,
        size: vector.tree_size,
        proof,
        root: fromHex(vector.root),
      })
    }
  })

  it('generates the published consistency proofs exactly, and they verify', () => {
    for (const vector of vectors.consistency_proofs.published) {
      const label = `${vector.size1} to ${vector.size2}`
      const proof = consistencyProof(vector.size1, vector.size2, reference.getNode)
      assert.deepEqual(hexList(proof), vector.proof, label)
      assert.equal(toHex(treeRoot(vector.size1, reference.getNode)), vector.root1, label)
      assert.equal(toHex(treeRoot(vector.size2, reference.getNode)), vector.root2, label)
      verifyConsistency({
        ...vector,
        proof,
        root1: fromHex(vector.root1),
        root2: fromHex(vector.root2),
      })
    }
  })

  it('rejects an index at or beyond the tree size', () => {
    assert.throws(() => inclusionProofNodes(3, 3), isRangeError)
    assert.throws(() => inclusionProofNodes(0, 0), isRangeError)
    assert.throws(() => inclusionProofNodes(-1, 3), isRangeError)
    assert.throws(() => inclusionProofNodes(1.5, 3), isRangeError)
    assert.throws(() => inclusionProofNodes(0, 2 ** 53), isRangeError)
  })

  it('rejects a consistency proof from an empty or larger first tree', () => {
    assert.throws(() => consistencyProofNodes(0, 5), isRangeError)
    assert.throws(() => consistencyProofNodes(0, 0), isRangeError)
    assert.throws(() => consistencyProofNodes(6, 5), isRangeError)
    assert.throws(() => consistencyProofNodes(1, Number.NaN), isRangeError)
    assert.deepEqual(consistencyProofNodes(5, 5), [])
  })
})

describe('proof verification', () => {
  it('gives every published inclusion probe its expected verdict', () => {
    const probes = vectors.verifier_probes.inclusion
    assert.equal(probes.length, 98)
    for (const probe of probes) {
      const verdict = accepts(() =>
        verifyInclusion({
          leafHash: fromHex(probe.leaf_hash),
          index: probe.leaf_index,
          size: probe.tree_size,
          proof: bytesList(probe.proof),
          root: fromHex(probe.root),
        }),
      )
      assert.equal(verdict ? 'accept' : 'reject', probe.expect, probe.file)
    }
  })

  it('gives every published consistency probe its expected verdict', () => {
    const probes = vectors.verifier_probes.consistency
    assert.equal(probes.length, 98)
    for (const probe of probes) {
      const verdict = accepts(() =>
        verifyConsistency({
          size1: probe.size1,
          size2: probe.size2,
          proof: bytesList(probe.proof),
          root1: fromHex(probe.root1),
          root2: fromHex(probe.root2),
        }),
      )
      assert.equal(verdict ? 'accept' : 'reject', probe.expect, probe.file)
    }
  })

  it('says why a proof fails', () => {
    const leafHash = reference.levels[0]![0]!
    const root = treeRoot(8, reference.getNode)
    const proof = inclusionProof(0, 8, reference.getNode)
    assert.throws(
      () => verifyInclusion({ leafHash, index: 0, size: 8, proof: proof.slice(1), root }),
      { code: 'ERR_PROOF_INVALID', message: 'wrong proof length 2, expected 3' },
    )
    assert.throws(() => verifyInclusion({ leafHash, index: 1, size: 8, proof, root }), {
      code: 'ERR_PROOF_INVALID',
      message: 'root mismatch',
    })
    assert.throws(() => verifyInclusion({ leafHash, index: 8, size: 8, proof, root }), {
      code: 'ERR_PROOF_INVALID',
      message: 'leaf index 8 is not below tree size 8',
    })
    assert.throws(
      () => verifyConsistency({ size1: 0, size2: 8, proof: [], root1: emptyRoot(), root2: root }),
      isProofError,
    )
  })

  it('computes the root an inclusion proof implies', () => {
    const proof = inclusionProof(5, 8, reference.getNode)
    const root = rootFromInclusionProof({
      leafHash: reference.levels[0]![5]!,
      index: 5,
      size: 8,
      proof,
    })
    assert.deepEqual(root, treeRoot(8, reference.getNode))
  })

  it('accepts generated proofs and rejects tampered ones for every size from 1 to 300', () => {
    const random = seededRandom(9162)
    const leaves = Array.from({ length: 300 }, (_, i) =>
      Uint8Array.from({ length: 1 + (i % 40) }, () => Math.floor(random() * 256)),
    )
    const store = buildTreeStore(leaves)
    const pick = (size: number, count: number): number[] => {
      if (size <= 32) return Array.from({ length: size }, (_, i) => i)
      const chosen = new Set([0, size - 1])
      while (chosen.size < count) chosen.add(Math.floor(random() * size))
      return [...chosen]
    }
    const flipBit = (hashes: readonly Uint8Array[]): Uint8Array[] => {
      const tampered = hashes.map((hash) => hash.slice())
      const target = tampered[Math.floor(random() * tampered.length)]!
      target[Math.floor(random() * 32)]! ^= 1 << Math.floor(random() * 8)
      return tampered
    }

    for (let size = 1; size <= 300; size++) {
      const root = treeRoot(size, store.getNode)
      assert.deepEqual(root, referenceRoot(store.levels[0]!.slice(0, size)), `root of ${size}`)

      for (const index of pick(size, 12)) {
        const leafHash = store.levels[0]![index]!
        const proof = inclusionProof(index, size, store.getNode)
        const claim = { leafHash, index, size, proof, root }
        verifyInclusion(claim)
        if (proof.length > 0) {
          assert.throws(() => verifyInclusion({ ...claim, proof: flipBit(proof) }), isProofError)
          assert.throws(
            () => verifyInclusion({ ...claim, proof: proof.slice(0, -1) }),
            isProofError,
          )
        }
        assert.throws(() => verifyInclusion({ ...claim, proof: [...proof, root] }), isProofError)
        assert.throws(() => verifyInclusion({ ...claim, root: flipBit([root])[0]! }), isProofError)
        const otherIndex = (index + 1) % size
        if (otherIndex !== index) {
          assert.throws(() => verifyInclusion({ ...claim, index: otherIndex }), isProofError)
        }
      }

      for (const size1 of pick(size, 12).map((i) => i + 1)) {
        const root1 = treeRoot(size1, store.getNode)
        const proof = consistencyProof(size1, size, store.getNode)
        const claim = { size1, size2: size, proof, root1, root2: root }
        verifyConsistency(claim)
        if (proof.length > 0) {
          assert.throws(() => verifyConsistency({ ...claim, proof: flipBit(proof) }), isProofError)
          assert.throws(() => verifyConsistency({ ...claim, proof: proof.slice(1) }), isProofError)
          assert.throws(
            () => verifyConsistency({ ...claim, root1: flipBit([root1])[0]! }),
            isProofError,
          )
        }
        assert.throws(() => verifyConsistency({ ...claim, proof: [...proof, root] }), isProofError)
        assert.throws(
          () => verifyConsistency({ ...claim, root2: flipBit([root])[0]! }),
          isProofError,
        )
      }
    }
  })
})
