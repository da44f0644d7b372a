import { WardError } from './errors.js'
import type { NodeId, NodeReader } from './merkle.js'
import { HASH_SIZE } from './merkle.js'
import { subtreeHash } from './tree-hashing.js'

/** How many Merkle tree levels one C2SP tlog-tiles tile spans. */
export const TILE_HEIGHT = 8

/** How many hashes a full tile holds, and how many entries a full entry bundle holds. */
export const TILE_WIDTH = 256

/** The largest entry an entry bundle can carry: its length prefix is a big-endian uint16. */
export const MAX_ENTRY_SIZE = 65535

/**
 * One hash tile: the `index`-th tile at tile `level`, holding `width` hashes (256 when full,
 * 1 to 255 for the partial tile at the right edge of a tree). Hash `i` of tile (L, N) is the
 * hash of the complete subtree at tree level 8L with index 256N + i.
 */
export type TileId = { level: number; index: number; width: number }

/** One entry bundle: the entries of level-0 tile `index`, `width` of them (256 when full). */
export type EntryBundleId = { index: number; width: number }

/** Returns the bytes of a hash tile; must throw if it does not have the tile. */
export type TileReader = (tile: TileId) => Uint8Array

const MAX_TILE_LEVEL = 63
const TILE_PATH = /^tile\/(0|[1-9][0-9]?)\/((?:x[0-9]{3}\/)*[0-9]{3})(?:\.p\/([1-9][0-9]{0,2}))?$/
const BUNDLE_PATH = /^tile\/entries\/((?:x[0-9]{3}\/)*[0-9]{3})(?:\.p\/([1-9][0-9]{0,2}))?$/

/**
 * The C2SP tlog-tiles path of a hash tile, `tile/<L>/<N>[.p/<W>]`, with N written in 3-digit
 * groups, all but the last prefixed with `x` (1234067 is `x001/x234/067`). Throws
 * `ERR_INPUT_INVALID` for a level outside 0..63, a negative or unsafe index, or a width
 * outside 1..256.
 */
export function tilePath(tile: TileId): string {
  assertTileLevel(tile.level)
  return `tile/${tile.level}/${encodeTileIndex(tile.index)}${widthSuffix(tile.width)}`
}

/** The C2SP tlog-tiles path of an entry bundle, `tile/entries/<N>[.p/<W>]`. */
export function entryBundlePath(index: number, width: number = TILE_WIDTH): string {
  return `tile/entries/${encodeTileIndex(index)}${widthSuffix(width)}`
}

/**
 * Reads a hash tile path written as {@link tilePath} writes it, and only such a path: no
 * leading zero groups, no `.p/256`. Throws `ERR_INPUT_INVALID` for anything else.
 */
export function parseTilePath(path: string): TileId {
  const match = TILE_PATH.exec(path)
  if (match === null) throw inputError(`not a tile path: ${JSON.stringify(path)}`)
  const tile = {
    level: Number(match[1]),
    index: decodeTileIndex(match[2]!),
    width: match[3] === undefined ? TILE_WIDTH : Number(match[3]),
  }
  // Writing the path again and comparing rejects every other spelling of the same tile, such
  // as leading zero groups or an explicit .p/256.
  if (tile.level > MAX_TILE_LEVEL || tilePath(tile) !== path) {
    throw inputError(`not a canonical tile path: ${JSON.stringify(path)}`)
  }
  return tile
}

/** Reads an entry bundle path written as {@link entryBundlePath} writes it, and only such. */
export function parseEntryBundlePath(path: string): EntryBundleId {
  const match = BUNDLE_PATH.exec(path)
  if (match === null) throw inputError(`not an entry bundle path: ${JSON.stringify(path)}`)
  const bundle = {
    index: decodeTileIndex(match[1]!),
    width: match[2] === undefined ? TILE_WIDTH : Number(match[2]),
  }
  if (entryBundlePath(bundle.index, bundle.width) !== path) {
    throw inputError(`not a canonical entry bundle path: ${JSON.stringify(path)}`)
  }
  return bundle
}

/**
 * Every hash tile a tree of `size` entries consists of, level by level from 0 and left to
 * right: the full tiles, then the partial tile of width `floor(size / 256^L) mod 256` where
 * that is non-zero. Levels continue while the level holds any hash, so a tree of 256 entries
 * has one full level-0 tile and a level-1 tile of width 1. Empty for size 0.
 */
export function tilesForSize(size: number): TileId[] {
  assertSize(size)
  const tiles: TileId[] = []
  for (let level = 0, leavesPerHash = 1; ; level++, leavesPerHash *= TILE_WIDTH) {
    const hashes = Math.floor(size / leavesPerHash)
    if (hashes === 0) break
    for (const { index, width } of splitIntoTiles(hashes)) tiles.push({ level, index, width })
  }
  return tiles
}

/** Every entry bundle a tree of `size` entries consists of, left to right. */
export function entryBundlesForSize(size: number): EntryBundleId[] {
  assertSize(size)
  return splitIntoTiles(size)
}

/**
 * Encodes entries as a C2SP entry bundle: each entry preceded by its length as a big-endian
 * uint16. Throws `ERR_LOG_INVALID` unless there are 1 to 256 entries of 1 to 65535 bytes.
 */
export function encodeEntryBundle(entries: readonly Uint8Array[]): Uint8Array {
  if (entries.length === 0 || entries.length > TILE_WIDTH) {
    throw bundleError(`an entry bundle holds 1 to ${TILE_WIDTH} entries, not ${entries.length}`)
  }
  let length = 0
  entries.forEach((entry, i) => {
    if (entry.length === 0 || entry.length > MAX_ENTRY_SIZE) {
      throw bundleError(`entry ${i} is ${entry.length} bytes, outside 1 to ${MAX_ENTRY_SIZE}`, i)
    }
    length += 2 + entry.length
  })

  const bundle = new Uint8Array(length)
  let offset = 0
  for (const entry of entries) {
    bundle[offset] = entry.length >> 8
    bundle[offset + 1] = entry.length & 0xff
    bundle.set(entry, offset + 2)
    offset += 2 + entry.length
  }
  return bundle
}

/**
 * Decodes a C2SP entry bundle into its entries, which are views into `bytes` (copy them to
 * keep them past changes to `bytes`). Throws `ERR_LOG_INVALID`, with the entry position in
 * `details.entry`, for a truncated length or entry, an empty entry, trailing bytes that do not
 * form an entry, or more than 256 entries.
 */
export function decodeEntryBundle(bytes: Uint8Array): Uint8Array[] {
  if (bytes.length === 0) throw bundleError('entry bundle is empty')
  const entries: Uint8Array[] = []
  let offset = 0
  while (offset < bytes.length) {
    const position = entries.length
    if (position === TILE_WIDTH) {
      throw bundleError(`entry bundle holds more than ${TILE_WIDTH} entries`, position)
    }
    if (offset + 2 > bytes.length) {
      throw bundleError(`entry bundle ends inside the length of entry ${position}`, position)
    }
    const length = (bytes[offset]! << 8) | bytes[offset + 1]!
    if (length === 0) throw bundleError(`entry ${position} is empty`, position)
    const end = offset + 2 + length
    if (end > bytes.length) {
      throw bundleError(
        `entry bundle ends inside entry ${position}: ${length} bytes declared, ${bytes.length - offset - 2} present`,
        position,
      )
    }
    entries.push(bytes.subarray(offset + 2, end))
    offset = end
  }
  return entries
}

/**
 * Assembles a hash tile from stored complete subtree hashes: hash `i` of tile (L, N) is the
 * node at tree level 8L with index 256N + i. This is how a log that keeps its Merkle tree as
 * complete subtrees serves tiles. Throws `ERR_LOG_INVALID` if a stored hash is not 32 bytes.
 */
export function tileFromNodes(tile: TileId, getNode: NodeReader): Uint8Array {
  const path = tilePath(tile)
  const bytes = new Uint8Array(tile.width * HASH_SIZE)
  for (let i = 0; i < tile.width; i++) {
    const hash = getNode({ level: tile.level * TILE_HEIGHT, index: tile.index * TILE_WIDTH + i })
    if (hash.length !== HASH_SIZE) {
      throw new WardError(
        'ERR_LOG_INVALID',
        `${path}: stored hash ${i} is not ${HASH_SIZE} bytes`,
        {
          details: { path, hashIndex: i },
        },
      )
    }
    bytes.set(hash, i * HASH_SIZE)
  }
  return bytes
}

/**
 * The hash of any complete subtree of a tree of `size` entries, read from its tiles: a node at
 * tree level h lives in tile level `floor(h / 8)`, and its hash is the Merkle tree hash of the
 * `2^(h mod 8)` hashes it spans there. `readTile` is asked for the full or partial tile the
 * tree of `size` has at that place. Throws `ERR_PROOF_RANGE` if the node is not complete in a
 * tree of `size`, and `ERR_LOG_INVALID` naming the tile if it is not exactly `width * 32`
 * bytes.
 */
export function nodeFromTiles(node: NodeId, size: number, readTile: TileReader): Uint8Array {
  assertSize(size)
  const { level, index } = node
  if (!Number.isInteger(level) || level < 0 || !Number.isSafeInteger(index) || index < 0) {
    throw new WardError('ERR_PROOF_RANGE', 'node level and index must be non-negative integers')
  }
  if ((index + 1) * 2 ** level > size) {
    throw new WardError(
      'ERR_PROOF_RANGE',
      `node at level ${level} index ${index} is not complete in a tree of size ${size}`,
    )
  }

  const tileLevel = Math.floor(level / TILE_HEIGHT)
  const span = 2 ** (level % TILE_HEIGHT)
  const first = index * span
  const tileIndex = Math.floor(first / TILE_WIDTH)
  const storedHashes = Math.floor(size / TILE_WIDTH ** tileLevel)
  const fullTiles = Math.floor(storedHashes / TILE_WIDTH)
  const width = tileIndex < fullTiles ? TILE_WIDTH : storedHashes % TILE_WIDTH
  const tile = { level: tileLevel, index: tileIndex, width }

  const bytes = readTile(tile)
  if (bytes.length !== width * HASH_SIZE) {
    const path = tilePath(tile)
    throw new WardError(
      'ERR_LOG_INVALID',
      `${path}: tile is ${bytes.length} bytes, expected ${width * HASH_SIZE}`,
      { details: { path } },
    )
  }
  const offset = (first % TILE_WIDTH) * HASH_SIZE
  return span === 1 ? bytes.slice(offset, offset + HASH_SIZE) : subtreeHash(bytes, offset, span)
}

function splitIntoTiles(count: number): EntryBundleId[] {
  const full = Math.floor(count / TILE_WIDTH)
  const tiles: EntryBundleId[] = []
  for (let index = 0; index < full; index++) tiles.push({ index, width: TILE_WIDTH })
  const partial = count % TILE_WIDTH
  if (partial !== 0) tiles.push({ index: full, width: partial })
  return tiles
}

function encodeTileIndex(index: number): string {
  if (!Number.isSafeInteger(index) || index < 0) {
    throw inputError(`tile index must be a non-negative safe integer, got ${String(index)}`)
  }
  let digits = String(index)
  digits = digits.padStart(Math.ceil(digits.length / 3) * 3, '0')
  const groups: string[] = []
  for (let i = 0; i < digits.length; i += 3) groups.push(digits.slice(i, i + 3))
  return groups.map((group, i) => (i < groups.length - 1 ? `x${group}` : group)).join('/')
}

function decodeTileIndex(text: string): number {
  const index = Number(text.replaceAll('x', '').replaceAll('/', ''))
  if (!Number.isSafeInteger(index)) throw inputError('tile index is above the largest safe integer')
  return index
}

function widthSuffix(width: number): string {
  if (!Number.isInteger(width) || width < 1 || width > TILE_WIDTH) {
    throw inputError(`tile width must be an integer from 1 to ${TILE_WIDTH}, got ${String(width)}`)
  }
  return width === TILE_WIDTH ? '' : `.p/${width}`
}

function assertTileLevel(level: number): void {
  if (!Number.isInteger(level) || level < 0 || level > MAX_TILE_LEVEL) {
    throw inputError(
      `tile level must be an integer from 0 to ${MAX_TILE_LEVEL}, got ${String(level)}`,
    )
  }
}

function assertSize(size: number): void {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw inputError(`tree size must be a non-negative safe integer, got ${String(size)}`)
  }
}

function inputError(message: string): WardError {
  return new WardError('ERR_INPUT_INVALID', message)
}

function bundleError(message: string, entry?: number): WardError {
  return new WardError('ERR_LOG_INVALID', message, {
    details: entry === undefined ? {} : { entry },
  })
}
