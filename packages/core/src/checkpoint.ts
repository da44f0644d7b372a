import { fromBase64, toBase64 } from './encoding.js'
import { WardError } from './errors.js'
import { HASH_SIZE } from './merkle.js'
import { forbiddenNoteCharacterIndex } from './note-text.js'

const DECIMAL = /^(0|[1-9][0-9]*)$/

/**
 * The body of a C2SP tlog-checkpoint: which log (`origin`), how many entries it held
 * (`size`), the RFC 9162 root hash of those entries, and any extension lines, which are opaque
 * to Ward and carried through unchanged.
 */
export type Checkpoint = {
  origin: string
  size: number
  rootHash: Uint8Array
  extensions: string[]
}

/**
 * Writes a checkpoint as note text: origin, decimal size and base64 root hash, then each
 * extension, each line ending in a newline. Throws `ERR_CHECKPOINT_MALFORMED` for anything
 * {@link parseCheckpoint} would reject, so whatever this writes can be read back.
 */
export function formatCheckpoint(checkpoint: Checkpoint): string {
  const { origin, size, rootHash, extensions } = checkpoint
  if (origin === '') throw malformed(1, 'origin is empty')
  assertLineText(origin, 1, 'origin')
  if (!Number.isSafeInteger(size) || size < 0) {
    throw malformed(2, 'tree size must be a non-negative safe integer')
  }
  if (rootHash.length !== HASH_SIZE) throw malformed(3, `root hash is not ${HASH_SIZE} bytes`)
  extensions.forEach((extension, i) => {
    if (extension === '') throw malformed(4 + i, 'extension line is empty')
    assertLineText(extension, 4 + i, 'extension line')
  })

  return [origin, String(size), toBase64(rootHash), ...extensions]
    .map((line) => `${line}\n`)
    .join('')
}

/**
 * Reads checkpoint note text strictly per C2SP tlog-checkpoint: a non-empty origin line; the
 * tree size in decimal without leading zeros, at most `Number.MAX_SAFE_INTEGER`; the root hash
 * as canonical base64 of exactly 32 bytes; then zero or more non-empty extension lines; every
 * line ending in a newline. Throws `ERR_CHECKPOINT_MALFORMED` naming the line at fault. It does
 * not check any signature: pass it the text {@link verifyNote} returns.
 */
export function parseCheckpoint(text: string): Checkpoint {
  if (!text.endsWith('\n')) throw malformed(lineCount(text), 'text does not end with a newline')
  const lines = text.slice(0, -1).split('\n')
  if (lines.length < 3) {
    throw malformed(lines.length + 1, 'a checkpoint needs origin, tree size and root hash lines')
  }
  lines.forEach((line, i) => assertLineText(line, i + 1, 'line'))

  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string, ...string[]]
  if (origin === '') throw malformed(1, 'origin is empty')
  if (!DECIMAL.test(sizeText)) {
    throw malformed(2, 'tree size is not a decimal number without leading zeros')
  }
  const size = Number(sizeText)
  if (!Number.isSafeInteger(size)) throw malformed(2, 'tree size is above the largest safe integer')

  let rootHash: Uint8Array
  try {
    rootHash = fromBase64(rootText)
  } catch (cause) {
    throw malformed(3, 'root hash is not canonical base64', cause)
  }
  if (rootHash.length !== HASH_SIZE) throw malformed(3, `root hash is not ${HASH_SIZE} bytes`)

  extensions.forEach((extension, i) => {
    if (extension === '') throw malformed(4 + i, 'extension line is empty')
  })
  return { origin, size, rootHash, extensions }
}

function assertLineText(text: string, line: number, what: string): void {
  if (text.includes('\n')) throw malformed(line, `${what} contains a newline`)
  // A signed note may not carry these, so a checkpoint holding one could never be signed.
  if (forbiddenNoteCharacterIndex(text) !== -1) {
    throw malformed(line, `${what} contains a control character or unpaired surrogate`)
  }
}

function lineCount(text: string): number {
  return text.split('\n').length
}

function malformed(line: number, reason: string, cause?: unknown): WardError {
  return new WardError('ERR_CHECKPOINT_MALFORMED', `checkpoint line ${line}: ${reason}`, {
    cause,
    details: { line },
  })
}
