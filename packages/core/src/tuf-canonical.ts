import { sha256 } from '@noble/hashes/sha2.js'

import { toHex, utf8Encode } from './encoding.js'
import { WardError } from './errors.js'

/**
 * Serializes a JSON value in the canonical form TUF signs: the OLPC canonical JSON that
 * python-tuf, go-tuf and tuf-js all verify against, which is not RFC 8785. Object members are
 * sorted by the UTF-16 code units of their names, nothing is written between tokens, a string
 * is its raw characters between double quotes with only `\` and `"` escaped (a newline stays
 * a newline), and the only numbers are integers. The bytes signed are this text as UTF-8.
 *
 * Accepts `null`, booleans, safe integers, strings, arrays without holes and plain objects.
 * Anything else — fractions, NaN, `undefined`, bigint, Date, class instances, cycles — throws
 * `ERR_JSON_NOT_CANONICAL` naming where it sits (`$.signed.version`), since TUF metadata with
 * such a value cannot be signed in a form every client reads the same way.
 */
export function tufCanonicalize(value: unknown): string {
  const parts: string[] = []
  write(value, '$', parts, new Set())
  return parts.join('')
}

/** The UTF-8 bytes of {@link tufCanonicalize}: exactly what a TUF signature covers. */
export function tufCanonicalBytes(value: unknown): Uint8Array {
  return utf8Encode(tufCanonicalize(value))
}

function write(value: unknown, path: string, parts: string[], open: Set<object>): void {
  if (value === null) {
    parts.push('null')
  } else if (typeof value === 'boolean') {
    parts.push(value ? 'true' : 'false')
  } else if (typeof value === 'string') {
    parts.push(quote(value))
  } else if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) {
      throw notCanonical(path, 'TUF canonical JSON allows only integers')
    }
    // -0 is written as 0, as JSON.stringify writes it.
    parts.push(String(value === 0 ? 0 : value))
  } else if (Array.isArray(value)) {
    if (open.has(value)) throw notCanonical(path, 'a cycle cannot be serialized')
    open.add(value)
    parts.push('[')
    for (let index = 0; index < value.length; index++) {
      if (!(index in value)) throw notCanonical(`${path}[${index}]`, 'an array hole is not JSON')
      if (index > 0) parts.push(',')
      write(value[index], `${path}[${index}]`, parts, open)
    }
    parts.push(']')
    open.delete(value)
  } else if (typeof value === 'object' && isPlainObject(value)) {
    if (open.has(value)) throw notCanonical(path, 'a cycle cannot be serialized')
    open.add(value)
    parts.push('{')
    const record = value as Record<string, unknown>
    const names = Object.keys(record).sort()
    names.forEach((name, index) => {
      if (index > 0) parts.push(',')
      parts.push(quote(name), ':')
      write(record[name], `${path}.${name}`, parts, open)
    })
    parts.push('}')
    open.delete(value)
  } else {
    const kind = value === undefined ? 'undefined' : typeof value
    throw notCanonical(path, `${kind} is not a JSON value`)
  }
}

function quote(text: string): string {
  return `"${text.replace(/[\\"]/g, (character) => `\\${character}`)}"`
}

function isPlainObject(value: object): boolean {
  const prototype = Object.getPrototypeOf(value) as unknown
  return (
    (prototype === Object.prototype || prototype === null) &&
    Object.getOwnPropertySymbols(value).length === 0
  )
}

function notCanonical(path: string, reason: string): WardError {
  return new WardError('ERR_JSON_NOT_CANONICAL', `${path}: ${reason}`, { details: { path } })
}

/** A public key as TUF metadata lists it under `keys`. */
export interface TufPublicKey {
  readonly keytype: string
  readonly scheme: string
  readonly keyval: { readonly public: string }
}

/**
 * The key id TUF gives `key`: the lowercase hex SHA-256 of the key object's canonical JSON.
 * Clients do not recompute it, so Ward does, and refuses metadata whose ids do not match.
 */
export function tufKeyId(key: TufPublicKey): string {
  return toHex(sha256(tufCanonicalBytes(key)))
}

const tufDatePattern = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$/

/**
 * True when `text` is a TUF date: `YYYY-MM-DDTHH:MM:SSZ` exactly (no fraction, no offset) and
 * a real calendar instant, so that every client parses it to the same moment.
 */
export function isTufDate(text: string): boolean {
  const match = tufDatePattern.exec(text)
  if (match === null) return false
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ]
  const instant = new Date(Date.UTC(year, month - 1, day, hour, minute, second))
  return (
    instant.getUTCFullYear() === year &&
    instant.getUTCMonth() === month - 1 &&
    instant.getUTCDate() === day &&
    instant.getUTCHours() === hour &&
    instant.getUTCMinutes() === minute &&
    instant.getUTCSeconds() === second
  )
}

/** `date` as a TUF date, its milliseconds dropped. */
export function tufDate(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`
}
