import { WardError } from './errors.js'

const HEX_DIGITS = '0123456789abcdef'
const BASE64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

// Lookup tables from character code to value; -1 marks a character outside the alphabet.
const HEX_VALUES = buildLookup('0123456789abcdef', 'ABCDEF', 10)
const BASE64_VALUES = buildLookup(BASE64_ALPHABET, '', 0)

const LONE_SURROGATE = /[\uD800-\uDFFF]/u

// Fatal, so malformed input is an error rather than silently becoming U+FFFD; ignoreBOM keeps a
// leading U+FEFF as text, because dropping it would change what a signature covers.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
const utf8Encoder = new TextEncoder()

function buildLookup(digits: string, extraDigits: string, extraStart: number): Int8Array {
  const table = new Int8Array(128).fill(-1)
  for (let i = 0; i < digits.length; i++) table[digits.charCodeAt(i)] = i
  for (let i = 0; i < extraDigits.length; i++) table[extraDigits.charCodeAt(i)] = extraStart + i
  return table
}

function lookup(table: Int8Array, code: number): number {
  return code < 128 ? (table[code] ?? -1) : -1
}

function invalid(message: string, position?: number): WardError {
  return new WardError('ERR_ENCODING_INVALID', message, {
    details: position === undefined ? {} : { position },
  })
}

/** Encodes bytes as lowercase hexadecimal, two digits per byte. */
export function toHex(bytes: Uint8Array): string {
  let text = ''
  for (const byte of bytes) text += HEX_DIGITS[byte >> 4]! + HEX_DIGITS[byte & 15]!
  return text
}

/**
 * Decodes hexadecimal text, in either letter case, into bytes. Throws `ERR_ENCODING_INVALID` for
 * an odd length or any character that is not a hex digit (including whitespace and `0x`).
 */
export function fromHex(text: string): Uint8Array {
  if (text.length % 2 !== 0) throw invalid('hex text has an odd number of digits')

  const bytes = new Uint8Array(text.length / 2)
  for (let i = 0; i < bytes.length; i++) {
    const high = lookup(HEX_VALUES, text.charCodeAt(2 * i))
    const low = lookup(HEX_VALUES, text.charCodeAt(2 * i + 1))
    if (high < 0 || low < 0) {
      throw invalid(
        `hex text has a non-hex character at position ${2 * i + (high < 0 ? 0 : 1)}`,
        2 * i,
      )
    }
    bytes[i] = (high << 4) | low
  }
  return bytes
}

/** Encodes bytes as standard base64 (RFC 4648 section 4) with `=` padding. */
export function toBase64(bytes: Uint8Array): string {
  let text = ''
  let i = 0
  for (; i + 2 < bytes.length; i += 3) {
    const chunk = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!
    text +=
      BASE64_ALPHABET[chunk >> 18]! +
      BASE64_ALPHABET[(chunk >> 12) & 63]! +
      BASE64_ALPHABET[(chunk >> 6) & 63]! +
      BASE64_ALPHABET[chunk & 63]!
  }
  const remaining = bytes.length - i
  if (remaining === 1) {
    const chunk = bytes[i]! << 16
    text += BASE64_ALPHABET[chunk >> 18]! + BASE64_ALPHABET[(chunk >> 12) & 63]! + '=='
  } else if (remaining === 2) {
    const chunk = (bytes[i]! << 16) | (bytes[i + 1]! << 8)
    text +=
      BASE64_ALPHABET[chunk >> 18]! +
      BASE64_ALPHABET[(chunk >> 12) & 63]! +
      BASE64_ALPHABET[(chunk >> 6) & 63]! +
      '='
  }
  return text
}

/**
 * Decodes standard padded base64 into bytes, accepting only the one canonical encoding of each
 * byte string: the length is a multiple of four, `=` appears only as final padding, unused bits
 * before the padding are zero, and there is no whitespace or URL-safe alphabet. Anything else
 * throws `ERR_ENCODING_INVALID`. Strictness matters because signatures and keys are compared as
 * text in places, and two spellings of one value would let a forged line slip past such checks.
 */
export function fromBase64(text: string): Uint8Array {
  if (text.length % 4 !== 0) throw invalid('base64 text length is not a multiple of 4')

  let padding = 0
  if (text.endsWith('==')) padding = 2
  else if (text.endsWith('=')) padding = 1

  const bytes = new Uint8Array((text.length / 4) * 3 - padding)
  const dataLength = text.length - padding
  let byteIndex = 0
  for (let i = 0; i < dataLength; i += 4) {
    let chunk = 0
    for (let j = 0; j < 4; j++) {
      const position = i + j
      let value = 0
      if (position < dataLength) {
        value = lookup(BASE64_VALUES, text.charCodeAt(position))
        if (value < 0) {
          throw invalid(`base64 text has an invalid character at position ${position}`, position)
        }
      }
      chunk = (chunk << 6) | value
    }
    const chunkBytes = Math.min(3, bytes.length - byteIndex)
    if (chunkBytes < 3) {
      // The bits after the last whole byte must be zero, or several texts would decode alike.
      const unusedBits = chunkBytes === 1 ? chunk & 0xffff : chunk & 0xff
      if (unusedBits !== 0) throw invalid('base64 text is not canonical: padding bits are set')
    }
    bytes[byteIndex++] = chunk >> 16
    if (chunkBytes > 1) bytes[byteIndex++] = (chunk >> 8) & 0xff
    if (chunkBytes > 2) bytes[byteIndex++] = chunk & 0xff
  }
  return bytes
}

/**
 * Encodes text as UTF-8. Throws `ERR_ENCODING_INVALID` for a string holding an unpaired
 * surrogate, which has no UTF-8 form; encoding it as U+FFFD would make two strings hash alike.
 */
export function utf8Encode(text: string): Uint8Array {
  if (LONE_SURROGATE.test(text)) throw invalid('text contains an unpaired UTF-16 surrogate')
  return utf8Encoder.encode(text)
}

/**
 * Decodes UTF-8 bytes into text, keeping a leading byte order mark. Throws
 * `ERR_ENCODING_INVALID` for any malformed sequence, overlong form or encoded surrogate.
 */
export function utf8Decode(bytes: Uint8Array): string {
  try {
    return utf8Decoder.decode(bytes)
  } catch (cause) {
    throw new WardError('ERR_ENCODING_INVALID', 'bytes are not valid UTF-8', { cause })
  }
}

/** Returns a new array holding the parts one after another. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let length = 0
  for (const part of parts) length += part.length
  const bytes = new Uint8Array(length)
  let offset = 0
  for (const part of parts) {
    bytes.set(part, offset)
    offset += part.length
  }
  return bytes
}

/**
 * True when both arrays hold the same bytes. The comparison takes the same time wherever the
 * first difference is, so comparing a secret-derived value does not leak how much matched.
 */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let difference = 0
  for (let i = 0; i < a.length; i++) difference |= a[i]! ^ b[i]!
  return difference === 0
}
