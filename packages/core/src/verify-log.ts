import type { Checkpoint } from './checkpoint.js'
import { parseCheckpoint } from './checkpoint.js'
import { bytesEqual } from './encoding.js'
import type { WardErrorDetails } from './errors.js'
import { WardError, isWardError } from './errors.js'
import type { NodeId } from './merkle.js'
import { HASH_SIZE, treeRoot } from './merkle.js'
import type { VerifierKey } from './note.js'
import { verifyNote } from './note.js'
import type { TileId } from './tiles.js'
import {
  TILE_WIDTH,
  decodeEntryBundle,
  entryBundlePath,
  entryBundlesForSize,
  nodeFromTiles,
  tilePath,
} from './tiles.js'
import { leafHashInto, subtreeHash, type Sha256 } from './tree-hashing.js'

/** Reads one file of an exported log by its tlog-tiles path; `undefined` when it is absent. */
export type TileLogFileReader = (path: string) => Uint8Array | undefined

/** What to verify: where the files come from, the log's public key, and optionally a
 * checkpoint seen earlier that the log must still extend. */
export type TileLogVerificationOptions = {
  read: TileLogFileReader
  verifierKey: VerifierKey
  previousCheckpoint?: string
  /** A native SHA-256 to hash with instead of the portable one; same answers, faster. */
  sha256?: Sha256
}

/** The state of a log that {@link verifyTileLog} found fully consistent. */
export type VerifiedTileLog = { origin: string; size: number; rootHash: Uint8Array }

const CHECKPOINT_PATH = 'checkpoint'
const PREVIOUS_CHECKPOINT = 'previous checkpoint'

/**
 * Verifies an exported C2SP tlog-tiles log offline, trusting nothing but `verifierKey`. It
 * checks that:
 *
 * - `checkpoint` is a signed note verified by the key, and a well-formed checkpoint whose
 *   origin equals the key name (Ward names each log key after its log's origin);
 * - every entry bundle and hash tile the checkpoint's size calls for is present, each tile
 *   exactly `width * 32` bytes and each bundle exactly `width` entries;
 * - every entry hashes to its leaf hash in the level-0 tile, and every hash in a tile at level
 *   L+1 is the Merkle tree hash of the matching full tile at level L;
 * - the root computed from the tiles equals the checkpoint's root hash;
 * - with `previousCheckpoint`, that it verifies with the same key, has the same origin, is no
 *   larger, and that its root hash is what the current tiles give for its size — so the log
 *   still contains, unchanged, everything it had then.
 *
 * Stops at the first fault: `ERR_LOG_INVALID` whose message names the file and the entry or
 * hash index at fault (also in `details`), or the `ERR_NOTE_*` / `ERR_CHECKPOINT_MALFORMED`
 * error of a bad checkpoint, prefixed with which checkpoint it is. Entries are only hashed,
 * never interpreted, so no entry content can appear in a message.
 */
export function verifyTileLog(options: TileLogVerificationOptions): VerifiedTileLog {
  const { verifierKey } = options
  const read = (path: string): Uint8Array => {
    const bytes = options.read(path)
    if (bytes === undefined) throw logError(path, 'file is missing')
    return bytes
  }

  const checkpoint = readCheckpoint(read(CHECKPOINT_PATH), verifierKey, CHECKPOINT_PATH)
  const previous =
    options.previousCheckpoint === undefined
      ? undefined
      : readCheckpoint(options.previousCheckpoint, verifierKey, PREVIOUS_CHECKPOINT)
  if (previous !== undefined && previous.size > checkpoint.size) {
    throw logError(
      PREVIOUS_CHECKPOINT,
      `size ${previous.size} is larger than the current size ${checkpoint.size}: the log shrank`,
    )
  }

  const { size } = checkpoint
  verifyEntriesAgainstTiles(size, read, options.sha256)
  verifyTileLevels(size, read, options.sha256)

  const readTile = (tile: TileId): Uint8Array => read(tilePath(tile))
  const getNode = (node: NodeId): Uint8Array => nodeFromTiles(node, size, readTile)
  if (!bytesEqual(treeRoot(size, getNode), checkpoint.rootHash)) {
    throw logError(CHECKPOINT_PATH, 'root hash does not match the root computed from the tiles')
  }
  if (previous !== undefined && !bytesEqual(treeRoot(previous.size, getNode), previous.rootHash)) {
    throw logError(
      PREVIOUS_CHECKPOINT,
      `root hash at size ${previous.size} differs from the tiles: the log was rewritten or forked`,
      { size: previous.size },
    )
  }

  return { origin: checkpoint.origin, size, rootHash: checkpoint.rootHash }
}

function readCheckpoint(
  note: string | Uint8Array,
  verifierKey: VerifierKey,
  path: string,
): Checkpoint {
  let checkpoint: Checkpoint
  try {
    checkpoint = parseCheckpoint(verifyNote(note, [verifierKey]).text)
  } catch (error) {
    if (!isWardError(error)) throw error
    throw new WardError(error.code, `${path}: ${error.message}`, {
      cause: error,
      details: { ...error.details, path },
    })
  }
  if (checkpoint.origin !== verifierKey.name) {
    throw logError(path, `origin ${JSON.stringify(checkpoint.origin)} is not the log key name`)
  }
  return checkpoint
}

/** Level 0: each bundle's entries against the leaf hashes in the tile of the same index. */
function verifyEntriesAgainstTiles(
  size: number,
  read: (path: string) => Uint8Array,
  sha256: Sha256 | undefined,
): void {
  const leafHash = new Uint8Array(HASH_SIZE)
  for (const { index, width } of entryBundlesForSize(size)) {
    const bundlePath = entryBundlePath(index, width)
    const bundle = read(bundlePath)
    const tile = { level: 0, index, width }
    const tileBytes = readTileBytes(tile, read)

    let entries: Uint8Array[]
    try {
      entries = decodeEntryBundle(bundle)
    } catch (error) {
      if (!isWardError(error)) throw error
      const entry = error.details.entry
      const details: WardErrorDetails =
        typeof entry === 'number' ? { entryIndex: index * TILE_WIDTH + entry } : {}
      throw logError(bundlePath, error.message, details, error)
    }
    if (entries.length !== width) {
      throw logError(bundlePath, `holds ${entries.length} entries, expected ${width}`)
    }

    for (let i = 0; i < width; i++) {
      leafHashInto(entries[i]!, leafHash, 0, sha256)
      if (!equalAt(leafHash, tileBytes, i * HASH_SIZE)) {
        const entryIndex = index * TILE_WIDTH + i
        const hashTile = tilePath(tile)
        throw logError(bundlePath, `entry ${entryIndex} does not match ${hashTile} hash ${i}`, {
          entryIndex,
          tile: hashTile,
          hashIndex: i,
        })
      }
    }
  }
}

/** Levels 1 and up: each hash against the Merkle tree hash of the full tile below it. */
function verifyTileLevels(
  size: number,
  read: (path: string) => Uint8Array,
  sha256: Sha256 | undefined,
): void {
  for (let level = 1, leavesPerHash = TILE_WIDTH; ; level++, leavesPerHash *= TILE_WIDTH) {
    const hashes = Math.floor(size / leavesPerHash)
    if (hashes === 0) return
    const fullTiles = Math.floor(hashes / TILE_WIDTH)

    for (let index = 0; index <= fullTiles; index++) {
      const width = index < fullTiles ? TILE_WIDTH : hashes % TILE_WIDTH
      if (width === 0) break
      const tile = { level, index, width }
      const bytes = readTileBytes(tile, read)

      for (let i = 0; i < width; i++) {
        const below = { level: level - 1, index: index * TILE_WIDTH + i, width: TILE_WIDTH }
        // The tile below was itself checked already (level 0 against the entries), so a
        // mismatch is this tile's fault.
        const expected = subtreeHash(readTileBytes(below, read), 0, TILE_WIDTH, sha256)
        if (!equalAt(expected, bytes, i * HASH_SIZE)) {
          const path = tilePath(tile)
          const belowPath = tilePath(below)
          throw logError(path, `hash ${i} does not match the tree hash of ${belowPath}`, {
            hashIndex: i,
            tile: belowPath,
          })
        }
      }
    }
  }
}

function readTileBytes(tile: TileId, read: (path: string) => Uint8Array): Uint8Array {
  const path = tilePath(tile)
  const bytes = read(path)
  if (bytes.length !== tile.width * HASH_SIZE) {
    throw logError(path, `holds ${bytes.length} bytes, expected ${tile.width * HASH_SIZE}`)
  }
  return bytes
}

function equalAt(hash: Uint8Array, bytes: Uint8Array, offset: number): boolean {
  for (let i = 0; i < HASH_SIZE; i++) if (hash[i] !== bytes[offset + i]) return false
  return true
}

function logError(
  path: string,
  reason: string,
  details: WardErrorDetails = {},
  cause?: unknown,
): WardError {
  return new WardError('ERR_LOG_INVALID', `${path}: ${reason}`, {
    cause,
    details: { path, ...details },
  })
}
