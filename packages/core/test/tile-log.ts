// Builds a C2SP tlog-tiles log in memory from entries, as `ward audit export` would write it
// to a directory, so verification can be tested against real files and then against damage.
import { formatCheckpoint } from '../src/checkpoint.js'
import { utf8Encode } from '../src/encoding.js'
import { treeRoot } from '../src/merkle.js'
import type { NoteSigner } from '../src/note.js'
import { signNote } from '../src/note.js'
import {
  TILE_WIDTH,
  encodeEntryBundle,
  entryBundlePath,
  entryBundlesForSize,
  tileFromNodes,
  tilePath,
  tilesForSize,
} from '../src/tiles.js'
import type { TreeStore } from './tree-store.js'
import { buildTreeStore } from './tree-store.js'

/** The files of a log by path, and the tree they were built from. */
export type TileLog = { files: Map<string, Uint8Array>; store: TreeStore; size: number }

/** Writes the checkpoint, every hash tile and every entry bundle of a log of `entries`. */
export function buildTileLog(entries: readonly Uint8Array[], signer: NoteSigner): TileLog {
  const size = entries.length
  const store = buildTreeStore(entries)
  const files = new Map<string, Uint8Array>()

  files.set('checkpoint', utf8Encode(signedCheckpoint(size, store, signer)))
  for (const tile of tilesForSize(size))
    files.set(tilePath(tile), tileFromNodes(tile, store.getNode))
  for (const { index, width } of entryBundlesForSize(size)) {
    const start = index * TILE_WIDTH
    files.set(entryBundlePath(index, width), encodeEntryBundle(entries.slice(start, start + width)))
  }
  return { files, store, size }
}

/** A checkpoint of the first `size` entries of `store`, signed by `signer` as the origin. */
export function signedCheckpoint(size: number, store: TreeStore, signer: NoteSigner): string {
  const rootHash = treeRoot(size, store.getNode)
  return signNote(formatCheckpoint({ origin: signer.name, size, rootHash, extensions: [] }), signer)
}

/** Deterministic distinct entries of varied length, like canonical JSON audit events. */
export function sampleEntries(count: number, seed = 1): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => {
    const padding = 'x'.repeat((i * 7 + seed) % 300)
    return utf8Encode(`{"id":"${seed}-${i}","note":"${padding}"}`)
  })
}
