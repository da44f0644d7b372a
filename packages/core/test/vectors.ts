// Reads the published test vectors in place from the shared directory, which sits next to the
// repository checkout unless WARD_SHARED_DIR points elsewhere.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const sharedDir: string | URL =
  process.env.WARD_SHARED_DIR ?? new URL('../../../../shared', import.meta.url)

/** The absolute path of a file in the shared vectors directory. */
export function vectorPath(file: string): string {
  const dir = typeof sharedDir === 'string' ? sharedDir : fileURLToPath(sharedDir)
  return join(dir, 'vectors', file)
}

/**
 * Parses a vectors file as JSON. The caller states the shape it relies on; the tests fail
 * loudly if the file does not have it.
 */
export function readVectors<T>(file: string): T {
  return JSON.parse(readFileSync(vectorPath(file), 'utf8')) as T
}
