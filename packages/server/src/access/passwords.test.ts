import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { isWardError } from '@ward/core'

import {
  argon2idParameters,
  hashPassword,
  needsRehash,
  prepareHashOfNothing,
  verifyAgainstNothing,
  verifyPassword,
} from './password-hashing.js'
import {
  checkNewPassword,
  maximumPasswordLength,
  minimumPasswordLength,
  normalizePassword,
} from './password-policy.js'

const loginName = 'dr.okafor'

function refusedRule(password: string, login = loginName): string | undefined {
  try {
    checkNewPassword(password, { loginName: login })
    return undefined
  } catch (error) {
    assert.ok(isWardError(error, 'ERR_INPUT_INVALID'))
    assert.ok(!error.message.includes(password), 'the message repeats the password')
    return String(error.details['rule'])
  }
}

describe('password rules', () => {
  test('accepts a long passphrase with no digits, capitals or symbols', () => {
    assert.equal(refusedRule('violet harbour lantern quietly'), undefined)
    assert.equal(refusedRule('correcthorsebatterystaple'), undefined)
  })

  test('counts length in characters after normalization, from the NIST floor to a generous cap', () => {
    assert.equal(minimumPasswordLength, 15)
    assert.equal(refusedRule('lantern harbour'), undefined)
    assert.equal(refusedRule('lantern harbou'), 'length')
    // 15 characters of which several take two UTF-16 units still count as 15.
    assert.equal(refusedRule('𝒱iolet harbour𝒳'), undefined)
    const longest = [
      'aardvark badger cheetah dingo emu ferret gazelle hyena ibis jackal koala lemur marmot',
      'narwhal ocelot panther quokka raccoon salamander tapir urchin vole walrus yak zebra',
    ]
      .join(' ')
      .slice(0, maximumPasswordLength)
    assert.equal([...longest].length, maximumPasswordLength)
    assert.equal(refusedRule(longest), undefined)
    assert.equal(refusedRule(`${longest}z`), 'length')
  })

  test('normalizes Unicode so the same passphrase typed differently is the same password', () => {
    assert.equal(normalizePassword('cafe\u0301 au lait'), normalizePassword('caf\u00e9 au lait'))
    assert.equal(normalizePassword('ｐａｓｓｐｈｒａｓｅ'), 'passphrase')
  })

  test('refuses common passwords, also with digits or symbols appended or in full width', () => {
    assert.equal(refusedRule('password1234567'), 'common')
    assert.equal(refusedRule('Qwertyuiop!!!!!'), 'common')
    assert.equal(refusedRule('ｐａｓｓｗｏｒｄ１２３４５６７'), 'common')
  })

  test('refuses passwords built from the login name or the word ward', () => {
    assert.equal(refusedRule('dr.okafor2026!!!'), 'context')
    assert.equal(refusedRule('DrOkaforDrOkafor'), 'context')
    assert.equal(refusedRule('wardwardward2026'), 'context')
    assert.equal(refusedRule('ward-okafor-1234'), 'context')
  })

  test('refuses a password that is one shorter part repeated, whatever its case or separators', () => {
    for (const password of [
      'passwordpassword',
      'iloveyouiloveyou',
      'qwertyuiopqwertyuiop',
      'letmein-letmein-letmein',
      'Password1Password1',
      'Sunflower.sunflower',
      'harbour lantern harbour lantern',
      'bluebirdbluebird2026!',
    ]) {
      assert.equal(refusedRule(password), 'repeated', password)
    }
    // Nor is a repeat with a character changed or added.
    for (const password of [
      'dragon99dragon99x',
      'iloveyouiloveyouX',
      'Xiloveyouiloveyou',
      'password1password2',
      'P@ssw0rdP@ssw0rdxx',
    ]) {
      assert.equal(refusedRule(password), 'repeated', password)
    }
    // Words that recur inside a longer passphrase are not a repeat of the whole.
    assert.equal(refusedRule('violet harbour lantern violet quietly'), undefined)
    assert.equal(refusedRule('seven silver swans swim south slowly'), undefined)
  })

  test('checks the common list without separators, punctuation or trailing digits', () => {
    assert.equal(refusedRule('p.a.s.s.w.o.r.d-2026!'), 'common')
    assert.equal(refusedRule('I-Love-You 123456789'), 'common')
  })

  test('refuses repeated and sequential characters', () => {
    assert.equal(refusedRule('aaaaaaaaaaaaaaaa'), 'repetition')
    assert.equal(refusedRule('abcdefghijklmnopq'), 'repetition')
    assert.equal(refusedRule('1234567890987654'), 'repetition')
    assert.equal(refusedRule('zzzzzzzzyyyyyyyy'), 'repetition')
  })
})

describe('Argon2id password hashing', () => {
  test('hashes with Argon2id at RFC 9106 memory and passes, above the OWASP minimum', async () => {
    assert.ok(argon2idParameters.memoryCost >= 19_456)
    assert.ok(argon2idParameters.timeCost >= 2)
    const hash = await hashPassword('violet harbour lantern quietly')
    assert.match(hash, /^\$argon2id\$v=19\$m=65536,t=3,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/)
    assert.equal(needsRehash(hash), false)
    assert.equal(needsRehash('$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaA'), true)
  })

  test('verifies the password, its other Unicode spellings, and nothing else', async () => {
    const hash = await hashPassword('caf\u00e9 au lait on the terrace')
    assert.equal(await verifyPassword(hash, 'caf\u00e9 au lait on the terrace'), true)
    assert.equal(await verifyPassword(hash, 'cafe\u0301 au lait on the terrace'), true)
    assert.equal(await verifyPassword(hash, 'cafe au lait on the terrace'), false)
    assert.equal(await verifyPassword('not a hash', 'anything'), false)
  })

  test('salts every hash', async () => {
    const one = await hashPassword('violet harbour lantern quietly')
    const two = await hashPassword('violet harbour lantern quietly')
    assert.notEqual(one, two)
  })

  test('verifying against no account costs an Argon2id verification too', async () => {
    // The same cost by construction, not by a clock a shared machine makes unreliable: the
    // hash checked for an unknown login name has exactly the parameters of a real one.
    const parameters = (phc: string) => phc.split('$').slice(1, 4).join('$')
    const real = await hashPassword('violet harbour lantern quietly')
    assert.match(real, /^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$/)
    assert.equal(parameters(await prepareHashOfNothing()), parameters(real))
    assert.equal(await verifyAgainstNothing('violet harbour lantern quietly'), false)
  })
})
