import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'

import {
  TILE_WIDTH,
  WardError,
  bytesEqual,
  concatBytes,
  encodeEntryBundle,
  entryBundlePath,
  tilePath,
} from '@ward/core'

import type { Transaction } from '../store/index.js'
import type { SignedCheckpoint } from './checkpoints.js'
import type { AuditLogHead } from './log.js'

const hashSize = 32
const tileHeight = 8
const rowsPerQuery = TILE_WIDTH * 16

/** What an export wrote. */
export interface ExportResult {
  readonly size: number
  readonly tiles: number
  readonly entryBundles: number
  /** Files already present with the same bytes, left as they were. */
  readonly unchanged: number
}

/**
 * Writes the log up to `checkpoint.size` into `directory` in the C2SP tlog-tiles layout: every
 * hash tile, every entry bundle, then `checkpoint` last. Files already there are kept when
 * their bytes match and are an error when they differ, because a full tile never changes: a
 * difference means the log was rewritten after an earlier export.
 *
 * Reads the entries once, in index order, in chunks; the caller should not hold a write
 * transaction, since entries below the checkpoint's size never change.
 */
export async function exportTiles(
  db: Transaction,
  head: AuditLogHead,
  checkpoint: SignedCheckpoint,
  directory: string,
): Promise<ExportResult> {
  const size = checkpoint.size
  const writer = new ExportWriter(directory)
  // upper[L] collects the hashes at tree level 8·L, the contents of tile level L.
  const upper: Uint8Array[][] = []

  for (let start = 0; start < size; start += rowsPerQuery) {
    const end = Math.min(start + rowsPerQuery, size)
    const rows = await db
      .selectFrom('audit_entries')
      .select(['idx', 'body', 'hashes'])
      .where('log_id', '=', head.id)
      .where('idx', '>=', start)
      .where('idx', '<', end)
      .orderBy('idx')
      .execute()

    for (let tileStart = start; tileStart < end; tileStart += TILE_WIDTH) {
      const width = Math.min(TILE_WIDTH, end - tileStart)
      // A missing row is exported as missing, for the verifier to name; nothing is invented.
      const present = rows.filter((row) => row.idx >= tileStart && row.idx < tileStart + width)
      const tile = { level: 0, index: tileStart / TILE_WIDTH, width }
      writer.write(tilePath(tile), concatBytes(...present.map((row) => leafHash(row.hashes))))
      writer.write(
        entryBundlePath(tile.index, width),
        encodeEntryBundle(present.map((row) => row.body)),
      )
      for (const row of present) collectUpper(upper, row.idx, row.hashes)
    }
  }

  let tiles = Math.ceil(size / TILE_WIDTH)
  for (let level = 1; level < upper.length; level += 1) {
    const hashes = upper[level] ?? []
    for (let first = 0; first < hashes.length; first += TILE_WIDTH) {
      const group = hashes.slice(first, first + TILE_WIDTH)
      const tile = { level, index: first / TILE_WIDTH, width: group.length }
      writer.write(tilePath(tile), concatBytes(...group))
      tiles += 1
    }
  }

  writer.replace('checkpoint', new TextEncoder().encode(checkpoint.note))
  return { size, tiles, entryBundles: Math.ceil(size / TILE_WIDTH), unchanged: writer.unchanged }
}

function leafHash(hashes: Uint8Array): Uint8Array {
  return hashes.subarray(0, hashSize)
}

function collectUpper(upper: Uint8Array[][], index: number, hashes: Uint8Array) {
  for (let level = 1; ; level += 1) {
    const span = 2 ** (level * tileHeight)
    if ((index + 1) % span !== 0) return
    const offset = level * tileHeight * hashSize
    const list = upper[level] ?? (upper[level] = [])
    list.push(hashes.subarray(offset, offset + hashSize))
  }
}

class ExportWriter {
  readonly #directory: string
  unchanged = 0

  constructor(directory: string) {
    this.#directory = directory
    mkdirSync(directory, { recursive: true })
  }

  /** Writes a tile or bundle once; an existing file must hold the same bytes. */
  write(path: string, bytes: Uint8Array) {
    const target = join(this.#directory, path)
    if (existsSync(target)) {
      if (bytesEqual(readFileSync(target), bytes)) {
        this.unchanged += 1
        return
      }
      throw new WardError(
        'ERR_LOG_INVALID',
        `${path} already exists in ${this.#directory} with other content: the log was rewritten ` +
          'after an earlier export, or the directory holds another log',
        { details: { path } },
      )
    }
    this.replace(path, bytes)
  }

  /** Writes through a temporary file and a rename, so no reader sees half a file. */
  replace(path: string, bytes: Uint8Array) {
    const target = join(this.#directory, path)
    mkdirSync(dirname(target), { recursive: true })
    writeFileSync(`${target}.tmp`, bytes)
    renameSync(`${target}.tmp`, target)
  }
}
