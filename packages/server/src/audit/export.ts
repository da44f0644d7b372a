import {
  closeSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  renameSync,
  statSync,
  writeSync,
} from 'node:fs'
import { basename, dirname, join, relative } from 'node:path'

import {
  TILE_WIDTH,
  WardError,
  bytesEqual,
  concatBytes,
  emptyRoot,
  encodeEntryBundle,
  entryBundlePath,
  foldRight,
  tilePath,
} from '@ward/core'

import type { Store, Transaction } from '../store/index.js'
import {
  latestCheckpoint,
  signCheckpoint,
  type CheckpointSigner,
  type CheckpointWitness,
  type SignedCheckpoint,
} from './checkpoints.js'
import type { EntryKeys } from './entry-keys.js'
import type { AuditLogHead } from './log.js'
import { checkEntries } from './store-check.js'

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
  readonly checkpoint: SignedCheckpoint
}

/** What {@link exportTiles} needs beyond the log itself. */
export interface ExportContext {
  readonly store: Store
  readonly entryKeys: EntryKeys
  readonly signer: CheckpointSigner
  readonly witness: CheckpointWitness
}

/**
 * Writes the log into `directory` in the C2SP tlog-tiles layout — every hash tile, every entry
 * bundle, then `checkpoint` last — for write-once storage.
 *
 * By default every entry is checked while it is read (body against leaf hash, authentication
 * code, every stored subtree hash recomputed), and a checkpoint is signed only when all hold;
 * the first fault stops the export with `ERR_LOG_INVALID` naming the entry. `asStored` instead
 * writes exactly what the store holds, unchecked, under the newest checkpoint already signed:
 * the forensic copy an investigator verifies with `ward audit verify`.
 *
 * Files already there are kept when their bytes match and are an error when they differ,
 * because a full tile never changes. The directory must belong to the user running the
 * export and be writable by nobody else, and no symbolic link inside it is followed.
 */
export async function exportTiles(
  context: ExportContext,
  head: AuditLogHead,
  directory: string,
  options: { readonly asStored?: boolean } = {},
): Promise<ExportResult> {
  const writer = new ExportWriter(directory, head.origin)
  const db = context.store.db
  const upper: Uint8Array[][] = []
  let partial: Uint8Array[] = []
  let partialBodies: Uint8Array[] = []
  let tileIndex = 0

  // Entries are grouped by the tile their index falls in; an as-stored export with a missing
  // row writes a short tile, which the verifier names.
  const flush = (size: number) => {
    const width = Math.min(TILE_WIDTH, size - tileIndex * TILE_WIDTH)
    const tile = { level: 0, index: tileIndex, width }
    writer.write(tilePath(tile), concatBytes(...partial))
    writer.write(entryBundlePath(tile.index, tile.width), encodeEntryBundle(partialBodies))
    partial = []
    partialBodies = []
  }
  const take = (
    entries: readonly { index: number; body: Uint8Array; hashes: Uint8Array }[],
    size: number,
  ) => {
    for (const entry of entries) {
      const tile = Math.floor(entry.index / TILE_WIDTH)
      while (tile > tileIndex) {
        flush(size)
        tileIndex += 1
      }
      partial.push(entry.hashes.subarray(0, hashSize))
      partialBodies.push(entry.body)
      collectUpper(upper, entry.index, entry.hashes)
    }
  }
  const finish = (size: number) => {
    while (tileIndex * TILE_WIDTH < size) {
      flush(size)
      tileIndex += 1
    }
  }

  let checkpoint: SignedCheckpoint
  if (options.asStored === true) {
    const latest = await latestCheckpoint(context.witness, head)
    if (latest === undefined) {
      throw new WardError('ERR_LOG_INVALID', `audit log ${head.name} has no signed checkpoint yet`)
    }
    checkpoint = latest
    await readAsStored(db, head, checkpoint.size, (entries) => take(entries, checkpoint.size))
    finish(checkpoint.size)
  } else {
    const size = head.size
    const key = await context.entryKeys.key(head.id, head.wrappedEntryKey)
    const frontier = await checkEntries(db, head, key, { from: 0, to: size }, (entries) =>
      take(entries, size),
    )
    finish(size)
    const rootHash = frontier.length === 0 ? emptyRoot() : foldRight(frontier)
    // Every entry was checked just now, so signing need not read them again.
    checkpoint = await signCheckpoint(
      context.store,
      context.entryKeys,
      head,
      context.signer,
      context.witness,
      { size, rootHash, entriesChecked: true },
    )
  }

  let tiles = Math.ceil(checkpoint.size / TILE_WIDTH)
  for (let level = 1; level < upper.length; level += 1) {
    const hashes = upper[level] ?? []
    for (let first = 0; first < hashes.length; first += TILE_WIDTH) {
      const group = hashes.slice(first, first + TILE_WIDTH)
      writer.write(
        tilePath({ level, index: first / TILE_WIDTH, width: group.length }),
        concatBytes(...group),
      )
      tiles += 1
    }
  }

  writer.replace('checkpoint', new TextEncoder().encode(checkpoint.note))
  return {
    size: checkpoint.size,
    tiles,
    entryBundles: Math.ceil(checkpoint.size / TILE_WIDTH),
    unchanged: writer.unchanged,
    checkpoint,
  }
}

/** Reads rows as stored, without any check: a missing row is simply absent from its tile. */
async function readAsStored(
  db: Transaction,
  head: AuditLogHead,
  size: number,
  each: (entries: { index: number; body: Uint8Array; hashes: Uint8Array }[]) => void,
) {
  for (let start = 0; start < size; start += rowsPerQuery) {
    const rows = await db
      .selectFrom('audit_entries')
      .select(['idx', 'body', 'hashes'])
      .where('log_id', '=', head.id)
      .where('idx', '>=', start)
      .where('idx', '<', Math.min(start + rowsPerQuery, size))
      .orderBy('idx')
      .execute()
    each(rows.map((row) => ({ index: row.idx, body: row.body, hashes: row.hashes })))
  }
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

const largestFile = 256 * (2 + 65_535)

class ExportWriter {
  readonly #directory: string
  unchanged = 0

  constructor(directory: string, origin: string) {
    mkdirSync(directory, { recursive: true, mode: 0o750 })
    this.#directory = realpathSync(directory)
    const status = statSync(this.#directory)
    const owner = process.getuid?.()
    if (
      !status.isDirectory() ||
      (owner !== undefined && status.uid !== owner) ||
      (status.mode & 0o022) !== 0
    ) {
      throw new WardError(
        'ERR_INPUT_INVALID',
        `export directory ${directory} must be a directory that belongs to you and that no one ` +
          'else may write to',
        { details: { path: directory } },
      )
    }
    const existing = this.#read('checkpoint')
    if (existing !== undefined) {
      const text = new TextDecoder().decode(existing)
      const firstLine = text.slice(0, text.indexOf('\n'))
      if (firstLine !== origin) {
        throw new WardError(
          'ERR_INPUT_INVALID',
          `export directory ${directory} holds the log ${JSON.stringify(firstLine.slice(0, 200))}, not ${origin}`,
          { details: { path: directory } },
        )
      }
    }
  }

  /** Writes a tile or bundle once; an existing file must hold the same bytes. */
  write(path: string, bytes: Uint8Array) {
    const existing = this.#read(path)
    if (existing !== undefined) {
      if (bytesEqual(existing, bytes)) {
        this.unchanged += 1
        return
      }
      throw new WardError(
        'ERR_LOG_INVALID',
        `${path} already exists in ${this.#directory} with other content: the log was rewritten ` +
          'after an earlier export',
        { details: { path } },
      )
    }
    this.replace(path, bytes)
  }

  /**
   * Writes through a temporary file created exclusively (so a planted link is never followed)
   * and a rename, so no reader sees half a file.
   */
  replace(path: string, bytes: Uint8Array) {
    const target = this.#place(path)
    const temporary = join(dirname(target), `.${basename(target)}.${process.pid}.tmp`)
    // No fsync per file: an interrupted export is simply run again, and the rename already keeps
    // readers from seeing half a file.
    const descriptor = openSync(temporary, 'wx', 0o640)
    try {
      writeSync(descriptor, bytes)
    } finally {
      closeSync(descriptor)
    }
    renameSync(temporary, target)
  }

  /** The file at `path` if there is one; refuses anything but a regular file. */
  #read(path: string): Uint8Array | undefined {
    const target = this.#place(path)
    let status
    try {
      status = lstatSync(target)
    } catch {
      return undefined
    }
    if (!status.isFile() || status.size > largestFile) {
      throw new WardError(
        'ERR_INPUT_INVALID',
        `${path} in the export directory is not a regular file`,
        {
          details: { path },
        },
      )
    }
    return readFileSync(target)
  }

  /** The absolute path of `path`, creating its folders; refuses links on the way. */
  #place(path: string): string {
    const parts = path.split('/')
    let folder = this.#directory
    for (const part of parts.slice(0, -1)) {
      folder = join(folder, part)
      try {
        const status = lstatSync(folder)
        if (!status.isDirectory()) {
          throw new WardError(
            'ERR_INPUT_INVALID',
            `${relative(this.#directory, folder)} in the export directory is not a plain folder`,
          )
        }
      } catch (error) {
        if ((error as { code?: string }).code !== 'ENOENT') throw error
        mkdirSync(folder, { mode: 0o750 })
      }
    }
    return join(folder, parts[parts.length - 1] as string)
  }
}
