import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'

import { WardError, verifyTileLog, type VerifierKey } from '@ward/core'

// A full entry bundle is at most 256 entries of 64 KiB; nothing in an export is larger.
const maxFileBytes = 256 * (2 + 65_535)

/**
 * Verifies an exported audit log directory offline with only the log's verifier key: the
 * checkpoint signature, every entry against the level-0 tiles, every tile level against the
 * one below, the root against the checkpoint and, given one, consistency with an earlier
 * checkpoint. Throws a `WardError` naming the first file at fault.
 */
export function verifyExport(directory: string, key: VerifierKey, previousCheckpoint?: string) {
  if (!existsSync(directory) || !statSync(directory).isDirectory()) {
    throw new WardError('ERR_INPUT_INVALID', `${directory} is not a directory`)
  }
  return verifyTileLog({
    verifierKey: key,
    ...(previousCheckpoint === undefined ? {} : { previousCheckpoint }),
    read: (path) => {
      const file = join(directory, path)
      if (!existsSync(file)) return undefined
      const size = statSync(file).size
      if (size > maxFileBytes) {
        throw new WardError('ERR_LOG_INVALID', `${path}: ${size} bytes is larger than any tile`, {
          details: { path },
        })
      }
      return new Uint8Array(readFileSync(file))
    },
  })
}
