import { utf8Encode } from './encoding.js'
import { WardError } from './errors.js'

const LONE_SURROGATE = /[\uD800-\uDFFF]/u
// Any surrogate code unit, paired or not: a cheap first test, since most text has none.
const ANY_SURROGATE = /[\uD800-\uDFFF]/
const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/

type PathSegment = string | number

/**
 * Serializes a JSON value in the RFC 8785 JSON Canonicalization Scheme: no whitespace, object
 * members sorted by the UTF-16 code units of their names, strings escaped exactly as ECMAScript
 * `JSON.stringify` escapes them, and numbers written as ECMAScript writes a double. Equal data
 * therefore always yields the same text, which is what lets Ward hash and sign it.
 *
 * Accepts only what JSON can represent without loss: `null`, booleans, finite numbers, strings
 * without unpaired surrogates, arrays without holes, and plain objects (prototype `Object` or
 * `null`) without symbol keys. Anything else — `undefined`, NaN, Infinity, bigint, functions,
 * symbols, Date, Map, typed arrays, class instances, cycles — throws `ERR_JSON_NOT_CANONICAL`
 * whose message and `details.path` name where it sits, such as `$.agent[0].when`, rather than
 * being dropped or converted silently the way `JSON.stringify` would.
 */
export function canonicalize(value: unknown): string {
  try {
    // Data built with its members already in canonical order is what JSON.stringify writes.
    if (inCanonicalOrder(value, 0)) return JSON.stringify(value)
    return fastCanonicalize(value, 0)
  } catch (error) {
    if (error !== notFast) throw error
  }
  // Something is not canonicalizable: the careful walk below finds and names it.
  return carefulCanonicalize(value)
}

// Thrown by the fast walk when it meets anything unusual; never escapes this module.
const notFast = Symbol('not canonicalizable on the fast path')
const maxFastDepth = 200

/**
 * True when `value` holds only JSON that `JSON.stringify` writes exactly as RFC 8785 does:
 * every object's members already in sorted order, and nothing `JSON.stringify` would drop,
 * convert or escape differently (undefined, non-finite numbers, unpaired surrogates, non-plain
 * objects, symbol keys). Throws `notFast` for values the careful walk must judge.
 */
function inCanonicalOrder(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
      if (ANY_SURROGATE.test(value) && LONE_SURROGATE.test(value)) throw notFast
      return true
    case 'boolean':
      return true
    case 'number':
      if (!Number.isFinite(value)) throw notFast
      return true
    case 'object':
      break
    default:
      throw notFast
  }
  if (value === null) return true
  if (depth > maxFastDepth) throw notFast
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      if (!inCanonicalOrder(value[i], depth + 1)) return false
    }
    return true
  }
  const prototype: unknown = Object.getPrototypeOf(value)
  if (prototype !== Object.prototype && prototype !== null) throw notFast
  if (Object.getOwnPropertySymbols(value).length > 0) throw notFast
  const object = value as Record<string, unknown>
  const names = Object.keys(object)
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string
    // Sorted by UTF-16 code units, as Array.prototype.sort compares them.
    if (i > 0 && !((names[i - 1] as string) < name)) return false
    if (ANY_SURROGATE.test(name) && LONE_SURROGATE.test(name)) throw notFast
    if (!inCanonicalOrder(object[name], depth + 1)) return false
  }
  return true
}

/**
 * The common case, done quickly: one string built in a single pass, with no path bookkeeping.
 * Any value the careful walk would reject, and any nesting deep enough to hide a cycle, sends
 * the caller to the careful walk, so both always agree.
 */
function fastCanonicalize(value: unknown, depth: number): string {
  switch (typeof value) {
    case 'string':
      if (ANY_SURROGATE.test(value) && LONE_SURROGATE.test(value)) throw notFast
      return JSON.stringify(value)
    case 'boolean':
      return value ? 'true' : 'false'
    case 'number':
      if (!Number.isFinite(value)) throw notFast
      return String(value)
    case 'object':
      break
    default:
      throw notFast
  }
  if (value === null) return 'null'
  if (depth > maxFastDepth) throw notFast
  if (Array.isArray(value)) {
    let text = '['
    for (let i = 0; i < value.length; i++) {
      if (i > 0) text += ','
      text += fastCanonicalize(value[i], depth + 1)
    }
    return text + ']'
  }
  const prototype: unknown = Object.getPrototypeOf(value)
  if (prototype !== Object.prototype && prototype !== null) throw notFast
  if (Object.getOwnPropertySymbols(value).length > 0) throw notFast
  const object = value as Record<string, unknown>
  const names = Object.keys(object).sort()
  let text = '{'
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string
    if (ANY_SURROGATE.test(name) && LONE_SURROGATE.test(name)) throw notFast
    if (i > 0) text += ','
    text += JSON.stringify(name) + ':' + fastCanonicalize(object[name], depth + 1)
  }
  return text + '}'
}

function carefulCanonicalize(value: unknown): string {
  const path: PathSegment[] = []
  const ancestors = new Set<object>()

  function fail(reason: string): never {
    const where = formatPath(path)
    throw new WardError('ERR_JSON_NOT_CANONICAL', `${where}: ${reason}`, {
      details: { path: where },
    })
  }

  function writeString(text: string): string {
    if (LONE_SURROGATE.test(text)) fail('string contains an unpaired UTF-16 surrogate')
    return JSON.stringify(text)
  }

  function write(current: unknown): string {
    switch (typeof current) {
      case 'string':
        return writeString(current)
      case 'boolean':
        return current ? 'true' : 'false'
      case 'number':
        if (!Number.isFinite(current)) fail(`${current} is not a JSON number`)
        // ECMAScript Number::toString is the serialization RFC 8785 prescribes; it also writes
        // negative zero as 0.
        return String(current)
      case 'undefined':
        return fail('undefined has no JSON form')
      case 'bigint':
        return fail('a bigint has no JSON form; use a string or a safe integer')
      case 'function':
        return fail('a function has no JSON form')
      case 'symbol':
        return fail('a symbol has no JSON form')
    }
    if (current === null) return 'null'
    return writeContainer(current as object)
  }

  function writeContainer(container: object): string {
    if (ancestors.has(container)) fail('value contains itself (a cycle)')
    ancestors.add(container)

    let text: string
    if (Array.isArray(container)) {
      text = writeArray(container)
    } else {
      const prototype: unknown = Object.getPrototypeOf(container)
      if (prototype !== Object.prototype && prototype !== null) {
        fail(`${describeObject(container)} is not a plain object`)
      }
      text = writeObject(container as Record<string, unknown>)
    }

    ancestors.delete(container)
    return text
  }

  function writeArray(array: unknown[]): string {
    const items: string[] = []
    for (let i = 0; i < array.length; i++) {
      path.push(i)
      // A hole reads as undefined and is rejected like an explicit undefined.
      items.push(write(array[i]))
      path.pop()
    }
    return `[${items.join(',')}]`
  }

  function writeObject(object: Record<string, unknown>): string {
    if (Object.getOwnPropertySymbols(object).length > 0) fail('object has a symbol-keyed property')

    // The default sort compares UTF-16 code units, which is the order RFC 8785 requires.
    const names = Object.keys(object).sort()
    const members: string[] = []
    for (const name of names) {
      path.push(name)
      members.push(`${writeString(name)}:${write(object[name])}`)
      path.pop()
    }
    return `{${members.join(',')}}`
  }

  return write(value)
}

/** The RFC 8785 canonical form of `value` (see {@link canonicalize}) as UTF-8 bytes. */
export function canonicalBytes(value: unknown): Uint8Array {
  return utf8Encode(canonicalize(value))
}

function formatPath(path: readonly PathSegment[]): string {
  let text = '$'
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`
    else if (IDENTIFIER.test(segment)) text += `.${segment}`
    else text += `[${JSON.stringify(segment)}]`
  }
  return text
}

function describeObject(object: object): string {
  const constructorName: unknown = (object as { constructor?: { name?: unknown } }).constructor
    ?.name
  return typeof constructorName === 'string' && constructorName !== ''
    ? `a ${constructorName}`
    : 'an object with a custom prototype'
}
