import { existsSync, mkdirSync, statSync } from 'node:fs'
import { mkdir, open, readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'

import { WardError } from '@ward/core'

/**
 * Holds the half of every data key that is kept outside the database: the key share. A copy
 * of the database holds everything else — the wrapped data keys and the key-encryption keys
 * that wrap them, themselves wrapped by the master key, which does not change — so if a data
 * key lived wholly in the database, an old copy and the master key would open it for ever,
 * whatever was erased later. A record opens only with both halves; erasing a share here makes
 * everything sealed under that data key unreadable in every copy of the database, however
 * old, even for someone who also holds the master key. That is the whole of crypto-shredding.
 *
 * The guarantee reaches exactly as far as the store's own copies: a backup of the store taken
 * before an erasure, together with a database copy and the master key, still opens what was
 * erased. Back it up apart from the database, keep its backups only as long as a restore needs
 * them, or use a store (an HSM or a KMS) that destroys keys in every copy it keeps.
 */
export interface KeyShareStore {
  /** Stable name, for operators and logs. */
  readonly name: string
  /** Stores `share` durably as the share of data key `dataKeyId`; refuses to replace one. */
  put(dataKeyId: string, share: Uint8Array): Promise<void>
  /** The share of `dataKeyId`, or undefined when this store holds none (erased or never put). */
  get(dataKeyId: string): Promise<Uint8Array | undefined>
  /** Erases the share of `dataKeyId` for good; succeeds when there is none. */
  erase(dataKeyId: string): Promise<void>
}

const shareBytes = 32
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/**
 * The default key share store: a directory only its owner may enter, with one 32-byte file
 * per data key, fanned out by the first two characters of the key id. Every write and every
 * erasure is flushed to disk, with its directory, before the call returns, so a share exists
 * before the database row that needs it commits and is gone before the destruction commits.
 *
 * Erasing overwrites the file with zeros, flushes, then unlinks it. On a file system that
 * writes in place that removes the bytes; copy-on-write file systems, snapshots and SSD
 * wear-levelling may keep the old blocks, which only a store that destroys keys in hardware
 * avoids. The directory belongs to one machine: Ward nodes that share a PostgreSQL database
 * must share a key share store as well, which this one cannot be.
 *
 * Shares are stored unwrapped on purpose: a share opens nothing without the wrapped half in
 * the database, and that half opens only under the master key.
 */
export class LocalKeyShareStore implements KeyShareStore {
  readonly name = 'local-directory'
  readonly #directory: string

  private constructor(directory: string) {
    this.#directory = directory
  }

  /** Creates the directory with mode 0700; refuses one that already exists. */
  static create(directory: string): LocalKeyShareStore {
    if (existsSync(directory)) {
      throw new WardError(
        'ERR_ALREADY_INITIALIZED',
        `key share store ${directory} already exists`,
        {
          details: { path: directory },
        },
      )
    }
    mkdirSync(directory, { recursive: true, mode: 0o700 })
    return new LocalKeyShareStore(directory)
  }

  /**
   * Opens an existing directory. Refuses a missing one rather than starting empty, because an
   * empty store makes every data key look destroyed; refuses one that group or others may
   * enter, because its shares are half of every data key.
   */
  static open(directory: string): LocalKeyShareStore {
    if (!existsSync(directory) || !statSync(directory).isDirectory()) {
      throw new WardError(
        'ERR_NOT_INITIALIZED',
        `key share store ${directory} does not exist; run ward init`,
        { details: { path: directory } },
      )
    }
    const mode = statSync(directory).mode & 0o777
    if ((mode & 0o077) !== 0) {
      throw new WardError(
        'ERR_KEY_UNAVAILABLE',
        `key share store ${directory} has mode ${mode.toString(8)}; only its owner may enter it (chmod 700)`,
        { details: { path: directory, mode: mode.toString(8) } },
      )
    }
    return new LocalKeyShareStore(directory)
  }

  async put(dataKeyId: string, share: Uint8Array): Promise<void> {
    if (share.length !== shareBytes) {
      throw new WardError('ERR_KEY_INVALID', `key share must hold ${shareBytes} bytes`)
    }
    const { folder, file } = this.#pathOf(dataKeyId)
    await mkdir(folder, { recursive: true, mode: 0o700 })

    let handle
    try {
      handle = await open(file, 'wx', 0o600)
    } catch (cause) {
      throw new WardError('ERR_KEY_UNAVAILABLE', `key share of data key ${dataKeyId} exists`, {
        cause,
        details: { key: dataKeyId },
      })
    }
    try {
      await handle.writeFile(share)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await syncDirectory(folder)
  }

  async get(dataKeyId: string): Promise<Uint8Array | undefined> {
    const { file } = this.#pathOf(dataKeyId)
    let share: Buffer
    try {
      share = await readFile(file)
    } catch (cause) {
      if (isMissing(cause)) return undefined
      throw new WardError('ERR_KEY_UNAVAILABLE', `cannot read key share of ${dataKeyId}`, {
        cause,
        details: { key: dataKeyId },
      })
    }
    if (share.length !== shareBytes) {
      throw new WardError('ERR_KEY_INVALID', `key share of data key ${dataKeyId} is damaged`, {
        details: { key: dataKeyId },
      })
    }
    return new Uint8Array(share)
  }

  async erase(dataKeyId: string): Promise<void> {
    const { folder, file } = this.#pathOf(dataKeyId)
    let handle
    try {
      handle = await open(file, 'r+')
    } catch (cause) {
      if (isMissing(cause)) return
      throw new WardError('ERR_KEY_UNAVAILABLE', `cannot erase key share of ${dataKeyId}`, {
        cause,
        details: { key: dataKeyId },
      })
    }
    try {
      const { size } = await handle.stat()
      await handle.write(new Uint8Array(Math.max(size, shareBytes)), 0, undefined, 0)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await unlink(file)
    await syncDirectory(folder)
  }

  #pathOf(dataKeyId: string): { folder: string; file: string } {
    // Ids become file names, so only Ward's own UUIDs may reach the file system.
    if (!uuidPattern.test(dataKeyId)) {
      throw new WardError('ERR_INPUT_INVALID', 'data key id must be a lowercase UUID', {
        details: { field: 'dataKeyId' },
      })
    }
    const folder = join(this.#directory, dataKeyId.slice(0, 2))
    return { folder, file: join(folder, dataKeyId) }
  }
}

async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

function isMissing(error: unknown): boolean {
  return error instanceof Error && 'code' in error && error.code === 'ENOENT'
}
