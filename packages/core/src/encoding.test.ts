import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

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
import { isWardError } from './errors.js'

const isEncodingError = (error: unknown): boolean => isWardError(error, 'ERR_ENCODING_INVALID')

describe('hex', () => {
  it('round-trips every byte value as lowercase hex', () => {
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i)
    const text = toHex(bytes)
    assert.equal(text, Buffer.from(bytes).toString('hex'))
    assert.deepEqual(fromHex(text), bytes)
  })

  it('accepts uppercase digits', () => {
    assert.deepEqual(fromHex('ABCDEF'), Uint8Array.of(0xab, 0xcd, 0xef))
  })

  it('rejects odd lengths, whitespace, prefixes and non-hex characters', () => {
    for (const text of ['a', 'abc', ' ab', 'ab ', '0x00', 'zz', 'a\u0660', 'é0']) {
      assert.throws(() => fromHex(text), isEncodingError, JSON.stringify(text))
    }
  })
})

describe('base64', () => {
  it('matches the RFC 4648 test vectors in both directions', () => {
    const cases: [string, string][] = [
      ['', ''],
      ['f', 'Zg=='],
      ['fo', 'Zm8='],
      ['foo', 'Zm9v'],
      ['foob', 'Zm9vYg=='],
      ['fooba', 'Zm9vYmE='],
      ['foobar', 'Zm9vYmFy'],
    ]
    for (const [plain, encoded] of cases) {
      assert.equal(toBase64(utf8Encode(plain)), encoded)
      assert.equal(utf8Decode(fromBase64(encoded)), plain)
    }
  })

  it('agrees with Node for random lengths', () => {
    for (let length = 0; length < 100; length++) {
      const bytes = Uint8Array.from({ length }, (_, i) => (i * 131 + length * 7) & 0xff)
      const expected = Buffer.from(bytes).toString('base64')
      assert.equal(toBase64(bytes), expected)
      assert.deepEqual(fromBase64(expected), bytes)
    }
  })

  it('rejects missing padding, misplaced padding and bad characters', () => {
    for (const text of [
      'Zg',
      'Zg=',
      'Zm8',
      'Z===',
      '====',
      'Zg==Zg==',
      'Zm=v',
      'Zm9v\n',
      ' Zm9v',
    ]) {
      assert.throws(() => fromBase64(text), isEncodingError, JSON.stringify(text))
    }
    for (const text of ['Zm9-', 'Zm9_', 'Zm9.', 'Zm9é']) {
      assert.throws(() => fromBase64(text), isEncodingError, JSON.stringify(text))
    }
  })

  it('rejects non-canonical encodings whose padding bits are set', () => {
    assert.throws(() => fromBase64('Zh=='), isEncodingError)
    assert.throws(() => fromBase64('Zm9='), isEncodingError)
    assert.deepEqual(fromBase64('Zg=='), Uint8Array.of(0x66))
  })
})

describe('UTF-8', () => {
  it('round-trips text outside the Basic Multilingual Plane and keeps a byte order mark', () => {
    const text = '\ufeffé€😂'
    assert.deepEqual(utf8Encode(text), Uint8Array.from(Buffer.from(text, 'utf8')))
    assert.equal(utf8Decode(utf8Encode(text)), text)
  })

  it('rejects malformed, overlong and surrogate byte sequences', () => {
    for (const hex of ['ff', 'c0af', 'e08080', 'eda080', 'f4908080', 'e282']) {
      assert.throws(() => utf8Decode(fromHex(hex)), isEncodingError, hex)
    }
  })

  it('rejects strings with unpaired surrogates instead of replacing them', () => {
    assert.throws(() => utf8Encode('a\ud800b'), isEncodingError)
    assert.throws(() => utf8Encode('\udc00'), isEncodingError)
  })
})

describe('byte helpers', () => {
  it('concatenates parts in order', () => {
    assert.deepEqual(concatBytes(), new Uint8Array(0))
    assert.deepEqual(
      concatBytes(Uint8Array.of(1), new Uint8Array(0), Uint8Array.of(2, 3)),
      Uint8Array.of(1, 2, 3),
    )
  })

  it('compares bytes by content and length', () => {
    assert.equal(bytesEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 2)), true)
    assert.equal(bytesEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 3)), false)
    assert.equal(bytesEqual(Uint8Array.of(1), Uint8Array.of(1, 0)), false)
  })
})
