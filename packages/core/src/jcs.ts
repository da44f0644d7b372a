import { utf8Encode } from './encoding.js'
import { WardError } from './errors.js'

const LONE_SURROGATE = /[\uD800-\uDFFF]/u
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
