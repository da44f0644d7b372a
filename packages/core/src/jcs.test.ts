import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, it } from 'node:test'

import { readVectors } from '../test/vectors.js'
import { toHex } from './encoding.js'
import { isWardError } from './errors.js'
import { canonicalBytes, canonicalize } from './jcs.js'

type JcsVectors = {
  vectors: {
    name: string
    input: string
    expected_output: string
    expected_output_hex: string
    expected_output_sha256: string
  }[]
  es6_number_serialization: {
    samples: { ieee754_hex: string; expected: string }[]
    generated_file_checksums: { rows: { sha256: string; lines: number; bytes: number }[] }
    sequence_definition: { static_u64: string[] }
  }
}

const vectors = readVectors<JcsVectors>('jcs.json')

function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

function doubleFromBits(bits: bigint): number {
  const view = new DataView(new ArrayBuffer(8))
  view.setBigUint64(0, bits)
  return view.getFloat64(0)
}

/**
 * The number sequence of the published checksums: the static values, then 2000 values from
 * the smallest normal double upwards, then doubles drawn from a SHA-256 chain.
 */
function* numberSequence(): Generator<bigint> {
  const { static_u64: staticValues } = vectors.es6_number_serialization.sequence_definition
  for (const hex of staticValues) yield BigInt(`0x${hex}`)
  for (let i = 0n; i < 2000n; i++) yield 0x0010000000000000n + i

  let block = new Uint8Array(32)
  for (;;) {
    block = new Uint8Array(createHash('sha256').update(block).digest())
    const view = new DataView(block.buffer)
    for (let offset = 0; offset < 32; offset += 8) {
      const bits = view.getBigUint64(offset, true)
      const value = doubleFromBits(bits)
      if (value !== 0 && Number.isFinite(value)) yield bits
    }
  }
}

describe('canonicalize', () => {
  for (const vector of vectors.vectors) {
    it(`produces the exact RFC 8785 bytes for the ${vector.name} vector`, () => {
      const bytes = canonicalBytes(JSON.parse(vector.input))
      assert.equal(toHex(bytes), vector.expected_output_hex)
      assert.equal(sha256Hex(bytes), vector.expected_output_sha256)
      assert.equal(canonicalize(JSON.parse(vector.input)), vector.expected_output)
    })
  }

  it('writes the published IEEE 754 samples as ECMAScript does', () => {
    for (const sample of vectors.es6_number_serialization.samples) {
      const value = doubleFromBits(BigInt(`0x${sample.ieee754_hex}`))
      assert.equal(canonicalize(value), sample.expected, sample.ieee754_hex)
    }
  })

  it('reproduces the checksums of the generated number sequence', () => {
    const rows = vectors.es6_number_serialization.generated_file_checksums.rows.filter(
      (row) => row.lines <= 10000,
    )
    assert.ok(rows.length > 0)
    const wanted = new Map(rows.map((row) => [row.lines, row]))
    const lines: string[] = []
    for (const bits of numberSequence()) {
      lines.push(`${bits.toString(16)},${canonicalize(doubleFromBits(bits))}\n`)
      const row = wanted.get(lines.length)
      if (row !== undefined) {
        const text = lines.join('')
        assert.equal(Buffer.byteLength(text), row.bytes, `bytes of the first ${row.lines} lines`)
        assert.equal(sha256Hex(text), row.sha256, `SHA-256 of the first ${row.lines} lines`)
        wanted.delete(row.lines)
      }
      if (wanted.size === 0) break
    }
  })

  it('sorts member names by UTF-16 code units, not code points or locale', () => {
    // U+FB33 sorts after U+1F602 by code point but before it by UTF-16 code unit.
    assert.equal(
      canonicalize({ '\ufb33': 1, '\u{1f602}': 2, a: 3 }),
      '{"a":3,"\u{1f602}":2,"\ufb33":1}',
    )
  })

  it('writes negative zero as 0 and keeps large integers exact', () => {
    assert.equal(canonicalize([-0, 1e21, 123456789012345680000]), '[0,1e+21,123456789012345680000]')
  })

  it('accepts objects without a prototype and repeated non-cyclic references', () => {
    const shared = { b: [1] }
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, {
      z: shared,
      y: shared,
    })
    assert.equal(canonicalize(bare), '{"y":{"b":[1]},"z":{"b":[1]}}')
  })

  const rejected: [string, unknown, string][] = [
    ['NaN', { a: NaN }, '$.a'],
    ['Infinity', { agent: [{ when: Infinity }] }, '$.agent[0].when'],
    ['undefined in an object', { a: { b: undefined } }, '$.a.b'],
    ['undefined at the top', undefined, '$'],
    ['a hole in an array', Object.assign(new Array<number>(3), { 0: 1, 2: 3 }), '$[1]'],
    ['a bigint', { count: 1n }, '$.count'],
    ['a function', { f: () => 1 }, '$.f'],
    ['a symbol', [Symbol('x')], '$[0]'],
    ['a Date', { agent: [{ when: new Date(0) }] }, '$.agent[0].when'],
    ['a Map', { m: new Map() }, '$.m'],
    ['a Uint8Array', { bytes: new Uint8Array(1) }, '$.bytes'],
    ['a class instance', { 'odd key': new (class Reading {})() }, '$["odd key"]'],
    ['a symbol-keyed property', { a: { [Symbol('hidden')]: 1 } }, '$.a'],
    ['an unpaired surrogate in a string', { text: 'a\ud800' }, '$.text'],
    ['an unpaired surrogate in a member name', { ['\udc00']: 1 }, '$["\\udc00"]'],
  ]
  for (const [what, value, path] of rejected) {
    it(`rejects ${what}, naming its path ${path}`, () => {
      assert.throws(
        () => canonicalize(value),
        (error) =>
          isWardError(error, 'ERR_JSON_NOT_CANONICAL') &&
          error.details.path === path &&
          error.message.startsWith(`${path}: `),
      )
    })
  }

  it('rejects a cycle, naming where it closes', () => {
    const event: { agent: { who: unknown }[] } = { agent: [{ who: null }] }
    event.agent[0]!.who = event
    assert.throws(
      () => canonicalize(event),
      (error) =>
        isWardError(error, 'ERR_JSON_NOT_CANONICAL') && error.details.path === '$.agent[0].who',
    )
  })
})
