import {
  TILE_WIDTH,
  WardError,
  concatBytes,
  consistencyProofNodes,
  encodeEntryBundle,
  foldRight,
  inclusionProofNodes,
  type NodeId,
  type TileId,
} from '@ward/core'

import type { Transaction } from '../store/index.js'
import { nodeKey, readNodes, type AuditLogHead } from './log.js'

const hashSize = 32
const tileHeight = 8

/**
 * Hash tile `tile` of a tree of `size` entries: the hashes at tree level 8·L, indexes
 * N·256 … N·256+W−1. Refuses tiles that the tree of that size does not hold yet.
 */
export async function readHashTile(
  tx: Transaction,
  head: AuditLogHead,
  tile: TileId,
  size: number,
): Promise<Uint8Array> {
  const level = tile.level * tileHeight
  const span = 2 ** level
  const first = tile.index * TILE_WIDTH
  checkTileInTree(head, tile, Math.floor(size / span), `tile/${tile.level}`)

  const entries: number[] = []
  for (let offset = 0; offset < tile.width; offset += 1)
    entries.push((first + offset + 1) * span - 1)
  const query = tx
    .selectFrom('audit_entries')
    .select(['idx', 'hashes'])
    .where('log_id', '=', head.id)
  const rows =
    tile.level === 0
      ? await query
          .where('idx', '>=', first)
          .where('idx', '<', first + tile.width)
          .orderBy('idx')
          .execute()
      : await query.where('idx', 'in', entries).orderBy('idx').execute()

  if (rows.length !== tile.width) throw missingEntries(head, tile)
  return concatBytes(
    ...rows.map((row, position) => {
      if (row.idx !== entries[position] || row.hashes.length < (level + 1) * hashSize) {
        throw missingEntries(head, tile)
      }
      return row.hashes.subarray(level * hashSize, (level + 1) * hashSize)
    }),
  )
}

/** Entry bundle `index` (width `width`) of a tree of `size` entries, in tlog-tiles encoding. */
export async function readEntryBundle(
  tx: Transaction,
  head: AuditLogHead,
  tile: Omit<TileId, 'level'>,
  size: number,
): Promise<Uint8Array> {
  checkTileInTree(head, { ...tile, level: 0 }, size, 'tile/entries')
  const first = tile.index * TILE_WIDTH
  const rows = await tx
    .selectFrom('audit_entries')
    .select(['idx', 'body'])
    .where('log_id', '=', head.id)
    .where('idx', '>=', first)
    .where('idx', '<', first + tile.width)
    .orderBy('idx')
    .execute()
  if (rows.length !== tile.width) throw missingEntries(head, { ...tile, level: 0 })
  return encodeEntryBundle(rows.map((row) => row.body))
}

function checkTileInTree(head: AuditLogHead, tile: TileId, available: number, kind: string) {
  const last = tile.index * TILE_WIDTH + tile.width
  const fullTiles = Math.floor(available / TILE_WIDTH)
  // A partial tile is served only at the exact width the tree has now; full tiles never change.
  const valid =
    tile.width === TILE_WIDTH ? last <= available : tile.index === fullTiles && last <= available
  if (!valid) {
    throw new WardError(
      'ERR_NOT_FOUND',
      `${kind}: tile ${tile.index} width ${tile.width} is not in the tree`,
      {
        details: { log: head.name, index: tile.index, width: tile.width },
      },
    )
  }
}

function missingEntries(head: AuditLogHead, tile: TileId): WardError {
  return new WardError(
    'ERR_LOG_INVALID',
    `audit log ${head.name} is missing entries under tile ${tile.level}/${tile.index}`,
    { details: { log: head.name, level: tile.level, index: tile.index } },
  )
}

/** An inclusion proof as served: hex hashes in RFC 9162 order. */
export interface InclusionProof {
  readonly index: number
  readonly size: number
  readonly leafHash: Uint8Array
  readonly proof: Uint8Array[]
}

/** A consistency proof as served. */
export interface ConsistencyProof {
  readonly from: number
  readonly to: number
  readonly proof: Uint8Array[]
}

/**
 * Proves entry `index` is in the tree of `size` entries: a handful of stored subtree hashes,
 * fetched in one query, however large the log.
 */
export async function proveInclusion(
  tx: Transaction,
  head: AuditLogHead,
  index: number,
  size: number,
): Promise<InclusionProof> {
  checkSize(head, size)
  const elements = inclusionProofNodes(index, size)
  const leaf: NodeId = { level: 0, index }
  const hashes = await readNodes(tx, head, [leaf, ...elements.flat()])
  return {
    index,
    size,
    leafHash: hashes.get(nodeKey(leaf)) as Uint8Array,
    proof: assemble(elements, hashes),
  }
}

/** Proves the tree of `to` entries extends the tree of `from` entries. */
export async function proveConsistency(
  tx: Transaction,
  head: AuditLogHead,
  from: number,
  to: number,
): Promise<ConsistencyProof> {
  checkSize(head, to)
  const elements = consistencyProofNodes(from, to)
  const hashes = await readNodes(tx, head, elements.flat())
  return { from, to, proof: assemble(elements, hashes) }
}

function assemble(elements: NodeId[][], hashes: Map<string, Uint8Array>): Uint8Array[] {
  return elements.map((nodes) =>
    foldRight(nodes.map((node) => hashes.get(nodeKey(node)) as Uint8Array)),
  )
}

function checkSize(head: AuditLogHead, size: number) {
  if (size > head.size) {
    throw new WardError('ERR_PROOF_RANGE', `size ${size} is larger than the log (${head.size})`, {
      details: { size, logSize: head.size },
    })
  }
}
