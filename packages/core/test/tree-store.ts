// An in-memory store of every complete subtree hash of a tree, built straight from the
// RFC 9162 definitions, the way a log keeps its tree. Tests read proofs, roots and tiles from
// it and compare them with what the code under test computes by other routes.
import type { NodeId, NodeReader } from '../src/merkle.js'
import { hashChildren, hashLeaf } from '../src/merkle.js'

/** Complete subtree hashes by level (`levels[0]` are the leaf hashes) and a reader for them. */
export type TreeStore = { levels: Uint8Array[][]; getNode: NodeReader }

/** Hashes the leaves and every complete subtree above them. */
export function buildTreeStore(leaves: readonly Uint8Array[]): TreeStore {
  const levels: Uint8Array[][] = [leaves.map(hashLeaf)]
  for (let below = levels[0]!; below.length > 1;) {
    const level: Uint8Array[] = []
    for (let i = 0; i + 1 < below.length; i += 2) level.push(hashChildren(below[i]!, below[i + 1]!))
    levels.push(level)
    below = level
  }
  const getNode = ({ level, index }: NodeId): Uint8Array => {
    const hash = levels[level]?.[index]
    if (hash === undefined) throw new Error(`no stored node at level ${level} index ${index}`)
    return hash
  }
  return { levels, getNode }
}
