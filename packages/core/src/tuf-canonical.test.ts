import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, test } from 'node:test'

import { isWardError } from './errors.js'
import {
  isTufDate,
  tufCanonicalBytes,
  tufCanonicalize,
  tufDate,
  tufKeyId,
} from './tuf-canonical.js'

function holey(): unknown[] {
  const array: unknown[] = [1]
  array[2] = 3
  return array
}

describe('TUF canonical JSON', () => {
  test('sorts members by UTF-16 code units and writes no whitespace', () => {
    const text = tufCanonicalize({
      b: 1,
      a: [true, false, null],
      A: { z: 'x', é: 0, '\u{1F600}': 1 },
    })
    assert.equal(text, '{"A":{"z":"x","é":0,"\u{1F600}":1},"a":[true,false,null],"b":1}')
  })

  test('escapes only backslash and double quote, leaving control characters raw', () => {
    assert.equal(tufCanonicalize('a"b\\c\nd\te\u0001'), '"a\\"b\\\\c\nd\te\u0001"')
    // RFC 8785 would write the newline as \n: the two forms differ, and TUF signs this one.
    assert.notEqual(tufCanonicalize('x\ny'), JSON.stringify('x\ny'))
  })

  test('signs the UTF-8 bytes of the text', () => {
    assert.deepEqual([...tufCanonicalBytes({ n: 'é' })], [...Buffer.from('{"n":"é"}', 'utf8')])
  })

  test('writes integers, and -0 as 0', () => {
    assert.equal(tufCanonicalize([0, -0, 7, -12, 9007199254740991]), '[0,0,7,-12,9007199254740991]')
  })

  for (const [name, value, path] of [
    ['a fraction', { signed: { version: 1.5 } }, '$.signed.version'],
    ['NaN', [Number.NaN], '$[0]'],
    ['an unsafe integer', { n: 2 ** 60 }, '$.n'],
    ['undefined', { a: undefined }, '$.a'],
    ['a bigint', { a: 1n }, '$.a'],
    ['a Date', { when: new Date(0) }, '$.when'],
    ['an array hole', { a: holey() }, '$.a[1]'],
  ] as const) {
    test(`refuses ${name}, naming where it sits`, () => {
      assert.throws(
        () => tufCanonicalize(value),
        (error: unknown) =>
          isWardError(error, 'ERR_JSON_NOT_CANONICAL') && error.details['path'] === path,
      )
    })
  }

  test('refuses a cycle', () => {
    const cyclic: Record<string, unknown> = {}
    cyclic['self'] = cyclic
    assert.throws(() => tufCanonicalize(cyclic), /cycle/)
  })
})

describe('TUF key ids', () => {
  test('are the SHA-256 of the canonical key object', () => {
    const key = {
      keytype: 'ed25519',
      scheme: 'ed25519',
      keyval: { public: 'ab'.repeat(32) },
    }
    const expected = createHash('sha256')
      .update(`{"keytype":"ed25519","keyval":{"public":"${'ab'.repeat(32)}"},"scheme":"ed25519"}`)
      .digest('hex')
    assert.equal(tufKeyId(key), expected)
  })

  test('change with any member of the key', () => {
    const key = { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: 'ab'.repeat(32) } }
    assert.notEqual(tufKeyId(key), tufKeyId({ ...key, keyval: { public: 'ac'.repeat(32) } }))
    assert.notEqual(tufKeyId(key), tufKeyId({ ...key, scheme: 'ecdsa-sha2-nistp256' }))
  })
})

describe('TUF dates', () => {
  test('accepts exactly YYYY-MM-DDTHH:MM:SSZ', () => {
    assert.equal(isTufDate('2030-01-31T23:59:59Z'), true)
    for (const text of [
      '2030-01-31T23:59:59.000Z',
      '2030-01-31T23:59:59+00:00',
      '2030-01-31 23:59:59Z',
      '2030-01-31T23:59:59z',
      '2030-02-30T00:00:00Z',
      '2030-01-31T24:00:00Z',
      ' 2030-01-31T23:59:59Z',
      '30-01-31T23:59:59Z',
    ]) {
      assert.equal(isTufDate(text), false, text)
    }
  })

  test('are written without milliseconds', () => {
    assert.equal(tufDate(new Date('2031-05-06T07:08:09.987Z')), '2031-05-06T07:08:09Z')
  })
})
