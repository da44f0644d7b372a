import { ed25519 } from '@noble/curves/ed25519.js'
import { p256 } from '@noble/curves/nist.js'
import { sha256 } from '@noble/hashes/sha2.js'

import {
  bytesEqual,
  concatBytes,
  fromBase64,
  fromHex,
  toBase64,
  toHex,
  utf8Decode,
  utf8Encode,
} from './encoding.js'
import { WardError } from './errors.js'
import { forbiddenNoteCharacterIndex, lineOfIndex } from './note-text.js'

/**
 * The signature algorithms Ward can verify in a signed note. Ward's own logs sign with
 * `ed25519` (signature type 0x01). `ecdsa-p256` (type 0x02 on NIST P-256) is accepted for
 * checking checkpoints of other logs, such as Sigstore's Rekor, that use it.
 */
export type NoteKeyAlgorithm = 'ed25519' | 'ecdsa-p256'

/**
 * A public key trusted to sign notes, as written in a C2SP verifier key. `publicKey` is the key
 * encoding the vkey carries after its type byte: the 32-byte RFC 8032 key for `ed25519`, the
 * DER SubjectPublicKeyInfo for `ecdsa-p256`. `keyId` is the 4-byte key ID that signature lines
 * name the key by, together with `name`.
 */
export type VerifierKey = {
  name: string
  keyId: Uint8Array
  algorithm: NoteKeyAlgorithm
  publicKey: Uint8Array
}

/** One signature line of a note: who claims to have signed, and the signature bytes. */
export type NoteSignature = { name: string; keyId: Uint8Array; signature: Uint8Array }

/** A parsed, not yet verified, signed note. `text` includes its final newline. */
export type Note = { text: string; signatures: NoteSignature[] }

/**
 * A note whose signatures checked out: `verified` names the trusted keys that signed it,
 * `unverified` the signers Ward has no key for and therefore ignored. Each name appears once.
 */
export type VerifiedNote = { text: string; verified: string[]; unverified: string[] }

/**
 * Something that can sign a note as the key `name`/`keyId`, without core holding the private
 * key: `sign` receives the UTF-8 note text and returns the raw signature.
 */
export type NoteSigner = {
  name: string
  keyId: Uint8Array
  sign: (message: Uint8Array) => Uint8Array
}

/** An Ed25519 {@link NoteSigner} that also carries its public half in every useful form. */
export type Ed25519NoteSigner = NoteSigner & {
  publicKey: Uint8Array
  verifierKey: VerifierKey
  vkey: string
}

/** The most signatures {@link parseNote} accepts in one note, bounding the work a note costs. */
export const MAX_NOTE_SIGNATURES = 100

const KEY_ID_SIZE = 4
const ED25519_PUBLIC_KEY_SIZE = 32
const ED25519_SIGNATURE_SIZE = 64
const SIGNATURE_PREFIX = '\u2014 '

const TYPE_BYTES: Readonly<Record<NoteKeyAlgorithm, number>> = { ed25519: 0x01, 'ecdsa-p256': 0x02 }
const ALGORITHMS_BY_TYPE: ReadonlyMap<number, NoteKeyAlgorithm> = new Map([
  [0x01, 'ed25519'],
  [0x02, 'ecdsa-p256'],
])

// DER SubjectPublicKeyInfo header for an uncompressed NIST P-256 point: the algorithm is
// id-ecPublicKey with namedCurve prime256v1, followed by the BIT STRING header. Keys are
// recognised by this exact prefix because DER allows only one encoding of it.
const P256_SPKI_PREFIX = fromHex('3059301306072a8648ce3d020106082a8648ce3d030107034200')
const P256_POINT_SIZE = 65

const KEY_ID_HEX = /^[0-9a-f]{8}$/
const WHITE_SPACE = /\p{White_Space}/u

/**
 * The C2SP key ID of a note key: for `ed25519`, the first 4 bytes of
 * SHA-256(name || 0x0A || 0x01 || public key); for `ecdsa-p256`, the first 4 bytes of
 * SHA-256 of the SubjectPublicKeyInfo, which does not involve the name.
 */
export function noteKeyId(
  name: string,
  publicKey: Uint8Array,
  algorithm: NoteKeyAlgorithm = 'ed25519',
): Uint8Array {
  const digest =
    algorithm === 'ecdsa-p256'
      ? sha256(publicKey)
      : sha256(concatBytes(utf8Encode(name), Uint8Array.of(0x0a, TYPE_BYTES[algorithm]), publicKey))
  return digest.slice(0, KEY_ID_SIZE)
}

/**
 * The verifier key of a named public key, with its key ID computed. Throws
 * `ERR_VERIFIER_KEY_INVALID` for an invalid key name or a public key of the wrong form.
 */
export function verifierKeyFromPublicKey(
  name: string,
  publicKey: Uint8Array,
  algorithm: NoteKeyAlgorithm = 'ed25519',
): VerifierKey {
  assertKeyName(name, 'ERR_VERIFIER_KEY_INVALID')
  const problem = publicKeyProblem(algorithm, publicKey)
  if (problem !== undefined) throw verifierKeyError(problem)
  return { name, keyId: noteKeyId(name, publicKey, algorithm), algorithm, publicKey }
}

/**
 * Writes the C2SP verifier key `<name>+<key ID hex>+<base64(type byte || public key)>` that
 * {@link parseVerifierKey} reads back. Throws as {@link verifierKeyFromPublicKey} does.
 */
export function formatVerifierKey(
  name: string,
  publicKey: Uint8Array,
  algorithm: NoteKeyAlgorithm = 'ed25519',
): string {
  const key = verifierKeyFromPublicKey(name, publicKey, algorithm)
  const encodedKey = toBase64(concatBytes(Uint8Array.of(TYPE_BYTES[algorithm]), publicKey))
  return `${name}+${toHex(key.keyId)}+${encodedKey}`
}

/**
 * Reads a C2SP verifier key strictly: a valid key name (non-empty, no whitespace, no `+`), a
 * key ID of exactly 8 lowercase hex digits, and canonical base64 of a known type byte followed
 * by a public key of exactly the right form, whose recomputed key ID must equal the stated one.
 * Anything else — including any truncation or altered byte of a valid key — throws
 * `ERR_VERIFIER_KEY_INVALID` naming the part at fault.
 */
export function parseVerifierKey(text: string): VerifierKey {
  const nameEnd = text.indexOf('+')
  if (nameEnd === -1) throw verifierKeyError("verifier key has no '+' after the key name")
  const name = text.slice(0, nameEnd)
  assertKeyName(name, 'ERR_VERIFIER_KEY_INVALID')

  const rest = text.slice(nameEnd + 1)
  const idEnd = rest.indexOf('+')
  if (idEnd === -1) throw verifierKeyError("verifier key has no '+' after the key ID")
  const idText = rest.slice(0, idEnd)
  if (!KEY_ID_HEX.test(idText)) throw verifierKeyError('key ID is not 8 lowercase hex digits')

  let encoded: Uint8Array
  try {
    encoded = fromBase64(rest.slice(idEnd + 1))
  } catch (cause) {
    throw verifierKeyError('public key is not canonical base64', cause)
  }
  const typeByte = encoded[0]
  if (typeByte === undefined) throw verifierKeyError('public key is empty')
  const algorithm = ALGORITHMS_BY_TYPE.get(typeByte)
  if (algorithm === undefined) {
    throw verifierKeyError(`unsupported signature algorithm 0x${toHex(Uint8Array.of(typeByte))}`)
  }
  const publicKey = encoded.slice(1)
  const problem = publicKeyProblem(algorithm, publicKey)
  if (problem !== undefined) throw verifierKeyError(problem)

  const keyId = fromHex(idText)
  if (!bytesEqual(keyId, noteKeyId(name, publicKey, algorithm))) {
    throw verifierKeyError('key ID does not match the key name and public key')
  }
  return { name, keyId, algorithm, publicKey }
}

/**
 * Splits a signed note into its text and signature lines, strictly per C2SP signed-note: valid
 * UTF-8 with no control character other than newline; a text ending in a newline; one blank
 * line (the last in the note); then 1 to {@link MAX_NOTE_SIGNATURES} lines of the form
 * `— <key name> <base64(key ID || signature)>`, each ending in a newline, and nothing else.
 * Throws `ERR_NOTE_MALFORMED` naming the 1-based line at fault. Checks no signature.
 */
export function parseNote(note: string | Uint8Array): Note {
  const { text, signatures } = parseNoteLines(note)
  return {
    text,
    signatures: signatures.map(({ name, keyId, signature }) => ({ name, keyId, signature })),
  }
}

/**
 * Verifies a signed note against trusted keys, following C2SP signed-note: a signature whose
 * key name and key ID both match a trusted key must verify, or the whole note is rejected with
 * `ERR_NOTE_UNVERIFIED` naming the key; signatures by any other key are ignored and listed as
 * unverified; and at least one trusted key must have signed, or `ERR_NOTE_UNVERIFIED` again.
 * Malformed notes throw `ERR_NOTE_MALFORMED`, malformed keys `ERR_VERIFIER_KEY_INVALID`.
 * Only after this returns may the text be trusted.
 */
export function verifyNote(
  note: string | Uint8Array,
  verifiers: readonly VerifierKey[],
): VerifiedNote {
  const parsed = parseNoteLines(note)
  assertVerifierKeys(verifiers)

  const message = utf8Encode(parsed.text)
  const verified: string[] = []
  const unverified: string[] = []
  for (const { name, keyId, signature, line } of parsed.signatures) {
    const key = verifiers.find(
      (candidate) => candidate.name === name && bytesEqual(candidate.keyId, keyId),
    )
    if (key === undefined) {
      if (!unverified.includes(name)) unverified.push(name)
      continue
    }
    if (!signatureVerifies(key, message, signature)) {
      const keyLabel = `${key.name}+${toHex(key.keyId)}`
      throw new WardError(
        'ERR_NOTE_UNVERIFIED',
        `invalid signature for key ${keyLabel} on line ${line}`,
        {
          details: { keyName: key.name, keyId: toHex(key.keyId), line },
        },
      )
    }
    if (!verified.includes(name)) verified.push(name)
  }

  if (verified.length === 0) {
    throw new WardError('ERR_NOTE_UNVERIFIED', 'note has no verifiable signatures', {
      details: { signatures: parsed.signatures.length },
    })
  }
  return { text: parsed.text, verified, unverified }
}

/**
 * One signature line, `— <name> <base64(keyId || signature)>` with its final newline, for
 * {@link formatSignedNote}. Throws `ERR_NOTE_MALFORMED` for an invalid key name, a key ID that
 * is not 4 bytes, or an empty signature.
 */
export function noteSignatureLine(name: string, keyId: Uint8Array, signature: Uint8Array): string {
  assertKeyName(name, 'ERR_NOTE_MALFORMED')
  if (keyId.length !== KEY_ID_SIZE) {
    throw new WardError('ERR_NOTE_MALFORMED', `key ID must be ${KEY_ID_SIZE} bytes`)
  }
  if (signature.length === 0) throw new WardError('ERR_NOTE_MALFORMED', 'signature is empty')
  return `${SIGNATURE_PREFIX}${name} ${toBase64(concatBytes(keyId, signature))}\n`
}

/**
 * Assembles a signed note from its text and signature lines (as {@link noteSignatureLine}
 * writes them): the text, a blank line, then the lines. Throws `ERR_NOTE_MALFORMED` unless the
 * result is a note {@link parseNote} accepts with exactly this text and these lines.
 */
export function formatSignedNote(text: string, signatureLines: readonly string[]): string {
  assertNoteText(text)
  if (signatureLines.length === 0) {
    throw new WardError('ERR_NOTE_MALFORMED', 'a signed note needs at least one signature line')
  }
  if (signatureLines.length > MAX_NOTE_SIGNATURES) {
    throw new WardError(
      'ERR_NOTE_MALFORMED',
      `a note holds at most ${MAX_NOTE_SIGNATURES} signatures`,
    )
  }
  const firstLine = countNewlines(text) + 2
  signatureLines.forEach((line, i) => {
    const newline = line.indexOf('\n')
    if (newline !== line.length - 1) {
      throw malformed(firstLine + i, 'signature line must be one line ending in a newline')
    }
    const bad = forbiddenNoteCharacterIndex(line)
    if (bad !== -1)
      throw malformed(firstLine + i, 'contains a control character or unpaired surrogate')
    parseSignatureLine(line.slice(0, -1), firstLine + i)
  })
  return `${text}\n${signatureLines.join('')}`
}

/**
 * Signs note text with one signer and returns the signed note. The signer sees the exact
 * UTF-8 bytes that verifiers will check. Throws `ERR_NOTE_MALFORMED` for text that is not valid
 * note text (it must end in a newline and hold no control character other than newline).
 */
export function signNote(text: string, signer: NoteSigner): string {
  assertNoteText(text)
  const signature = signer.sign(utf8Encode(text))
  return formatSignedNote(text, [noteSignatureLine(signer.name, signer.keyId, signature)])
}

/**
 * An Ed25519 note signer for the key `name` derived from a 32-byte RFC 8032 seed, built on
 * @noble/curves. Ed25519 signatures are deterministic, so it signs byte-for-byte as any other
 * correct implementation (Node's crypto, Go's) does with the same seed. Meant for tests and
 * tools; the server signs with keys it never hands to core. Throws `ERR_KEY_INVALID` for a seed
 * that is not 32 bytes or an invalid key name.
 */
export function ed25519Signer(name: string, seed: Uint8Array): Ed25519NoteSigner {
  assertKeyName(name, 'ERR_KEY_INVALID')
  if (seed.length !== 32) throw new WardError('ERR_KEY_INVALID', 'Ed25519 seed must be 32 bytes')

  // Copied so that later changes to the caller's array cannot change the key.
  const secretKey = seed.slice()
  const publicKey = ed25519.getPublicKey(secretKey)
  const verifierKey = verifierKeyFromPublicKey(name, publicKey)
  return {
    name,
    keyId: verifierKey.keyId,
    publicKey,
    verifierKey,
    vkey: formatVerifierKey(name, publicKey),
    sign: (message) => ed25519.sign(message, secretKey),
  }
}

type ParsedSignature = NoteSignature & { line: number }

function parseNoteLines(note: string | Uint8Array): {
  text: string
  signatures: ParsedSignature[]
} {
  const message = typeof note === 'string' ? note : decodeNote(note)
  const bad = forbiddenNoteCharacterIndex(message)
  if (bad !== -1) {
    throw malformed(lineOfIndex(message, bad), 'contains a control character or unpaired surrogate')
  }

  const split = message.lastIndexOf('\n\n')
  if (split === -1) {
    const lastLine = Math.max(1, countNewlines(message) + (message.endsWith('\n') ? 0 : 1))
    throw malformed(lastLine, 'no blank line separates the text from signatures')
  }
  const text = message.slice(0, split + 1)
  const block = message.slice(split + 2)
  const firstLine = countNewlines(text) + 2
  if (block === '') throw malformed(firstLine, 'note has no signature lines')
  if (!block.endsWith('\n')) {
    throw malformed(firstLine + countNewlines(block), 'signature line does not end with a newline')
  }

  const lines = block.slice(0, -1).split('\n')
  if (lines.length > MAX_NOTE_SIGNATURES) {
    throw malformed(
      firstLine + MAX_NOTE_SIGNATURES,
      `note has more than ${MAX_NOTE_SIGNATURES} signatures`,
    )
  }
  return { text, signatures: lines.map((line, i) => parseSignatureLine(line, firstLine + i)) }
}

function parseSignatureLine(line: string, lineNumber: number): ParsedSignature {
  if (!line.startsWith(SIGNATURE_PREFIX)) {
    throw malformed(lineNumber, 'not a signature line (em dash, space, key name, space, signature)')
  }
  const rest = line.slice(SIGNATURE_PREFIX.length)
  const nameEnd = rest.indexOf(' ')
  if (nameEnd === -1) throw malformed(lineNumber, 'signature line has no space after the key name')
  const name = rest.slice(0, nameEnd)
  const problem = keyNameProblem(name)
  if (problem !== undefined) throw malformed(lineNumber, `key name ${problem}`)

  let bytes: Uint8Array
  try {
    bytes = fromBase64(rest.slice(nameEnd + 1))
  } catch (cause) {
    throw malformed(lineNumber, 'signature is not canonical base64', cause)
  }
  if (bytes.length <= KEY_ID_SIZE) {
    throw malformed(lineNumber, 'signature is too short to hold a key ID and a signature')
  }
  return {
    name,
    keyId: bytes.slice(0, KEY_ID_SIZE),
    signature: bytes.slice(KEY_ID_SIZE),
    line: lineNumber,
  }
}

function decodeNote(bytes: Uint8Array): string {
  try {
    return utf8Decode(bytes)
  } catch (cause) {
    // Decode again line by line only to say which line holds the bad bytes.
    let line = 1
    let start = 0
    for (let end = bytes.indexOf(0x0a); ; end = bytes.indexOf(0x0a, start)) {
      try {
        utf8Decode(bytes.subarray(start, end === -1 ? bytes.length : end))
      } catch {
        break
      }
      if (end === -1) break
      line++
      start = end + 1
    }
    throw malformed(line, 'note is not valid UTF-8', cause)
  }
}

function signatureVerifies(key: VerifierKey, message: Uint8Array, signature: Uint8Array): boolean {
  try {
    if (key.algorithm === 'ed25519') {
      // Strict RFC 8032 verification (not ZIP 215), matching Go and OpenSSL.
      return (
        signature.length === ED25519_SIGNATURE_SIZE &&
        ed25519.verify(signature, message, key.publicKey, { zip215: false })
      )
    }
    // Signers of type 0x02 (Go's crypto/ecdsa among them) do not normalise S, so high-S
    // signatures are valid here.
    const point = key.publicKey.subarray(P256_SPKI_PREFIX.length)
    return p256.verify(signature, message, point, { format: 'der', prehash: true, lowS: false })
  } catch {
    // noble throws on encodings it cannot parse; for a signature that simply means invalid.
    return false
  }
}

function publicKeyProblem(algorithm: NoteKeyAlgorithm, publicKey: Uint8Array): string | undefined {
  if (algorithm === 'ed25519') {
    if (publicKey.length !== ED25519_PUBLIC_KEY_SIZE) {
      return `Ed25519 public key is not ${ED25519_PUBLIC_KEY_SIZE} bytes`
    }
    if (!ed25519.utils.isValidPublicKey(publicKey, false))
      return 'Ed25519 public key is not a curve point'
    return undefined
  }
  if (
    publicKey.length !== P256_SPKI_PREFIX.length + P256_POINT_SIZE ||
    !bytesEqual(publicKey.subarray(0, P256_SPKI_PREFIX.length), P256_SPKI_PREFIX)
  ) {
    return 'ECDSA public key is not an uncompressed P-256 SubjectPublicKeyInfo'
  }
  if (!p256.utils.isValidPublicKey(publicKey.subarray(P256_SPKI_PREFIX.length), false)) {
    return 'ECDSA public key is not a P-256 curve point'
  }
  return undefined
}

function assertVerifierKeys(verifiers: readonly VerifierKey[]): void {
  verifiers.forEach((key, i) => {
    assertKeyName(key.name, 'ERR_VERIFIER_KEY_INVALID')
    if (key.keyId.length !== KEY_ID_SIZE)
      throw verifierKeyError(`key ID must be ${KEY_ID_SIZE} bytes`)
    if (!Object.hasOwn(TYPE_BYTES, key.algorithm))
      throw verifierKeyError('unsupported signature algorithm')
    const problem = publicKeyProblem(key.algorithm, key.publicKey)
    if (problem !== undefined) throw verifierKeyError(problem)
    // Two trusted keys with one name and key ID would make "the key that signed" ambiguous.
    const twin = verifiers.findIndex(
      (other) => other.name === key.name && bytesEqual(other.keyId, key.keyId),
    )
    if (twin !== i)
      throw verifierKeyError(
        `two verifier keys share name ${key.name} and key ID ${toHex(key.keyId)}`,
      )
  })
}

function keyNameProblem(name: string): string | undefined {
  if (name === '') return 'is empty'
  if (WHITE_SPACE.test(name)) return 'contains whitespace'
  if (name.includes('+')) return "contains '+'"
  if (forbiddenNoteCharacterIndex(name) !== -1) return 'contains a control character'
  return undefined
}

function assertKeyName(
  name: string,
  code: 'ERR_VERIFIER_KEY_INVALID' | 'ERR_NOTE_MALFORMED' | 'ERR_KEY_INVALID',
): void {
  const problem = keyNameProblem(name)
  if (problem !== undefined) throw new WardError(code, `key name ${problem}`)
}

function assertNoteText(text: string): void {
  const bad = forbiddenNoteCharacterIndex(text)
  if (bad !== -1)
    throw malformed(lineOfIndex(text, bad), 'contains a control character or unpaired surrogate')
  if (!text.endsWith('\n'))
    throw malformed(countNewlines(text) + 1, 'note text does not end with a newline')
}

function countNewlines(text: string): number {
  let count = 0
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) count++
  return count
}

function malformed(line: number, reason: string, cause?: unknown): WardError {
  return new WardError('ERR_NOTE_MALFORMED', `note line ${line}: ${reason}`, {
    cause,
    details: { line },
  })
}

function verifierKeyError(reason: string, cause?: unknown): WardError {
  return new WardError('ERR_VERIFIER_KEY_INVALID', reason, { cause })
}
