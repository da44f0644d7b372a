import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, test } from 'node:test'

import { HOTP, Secret, TOTP } from 'otpauth'

import { isWardError } from '@ward/core'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  testConfig,
  type TestDatabase,
} from '../../test/support.js'
import { systemContext } from '../context.js'
import { Ward, initializeWard } from '../ward.js'
import { verifyTotp, wrapTotpSecret } from './totp.js'

interface OtpVectors {
  hotp_rfc4226: { secret_hex: string; vectors: { counter: number; hotp_6_digits: string }[] }
  totp_rfc6238: {
    step_seconds: number
    keys: Record<'SHA1' | 'SHA256' | 'SHA512', { hex: string }>
    vectors: {
      unix_time: number
      algorithm: 'SHA1' | 'SHA256' | 'SHA512'
      totp_8_digits: string
      totp_6_digits_derived: string
    }[]
    wrong_key_trap: {
      unix_time: number
      algorithm: 'SHA256' | 'SHA512'
      code_with_20_byte_key_WRONG: string
    }[]
  }
}

// Read in place from the shared directory beside the checkout, or WARD_SHARED_DIR.
const sharedDir =
  process.env['WARD_SHARED_DIR'] ?? fileURLToPath(new URL('../../../../../shared', import.meta.url))
const vectors = JSON.parse(
  readFileSync(join(sharedDir, 'vectors', 'otp.json'), 'utf8'),
) as OtpVectors
const totpVectors = vectors.totp_rfc6238

const secretOf = (hex: string) => Secret.fromHex(hex)

describe('one-time password vectors', () => {
  test('the OTP library reproduces RFC 4226 Appendix D', () => {
    const hotp = new HOTP({ secret: secretOf(vectors.hotp_rfc4226.secret_hex), digits: 6 })
    assert.ok(vectors.hotp_rfc4226.vectors.length >= 10)
    for (const vector of vectors.hotp_rfc4226.vectors) {
      assert.equal(hotp.generate({ counter: vector.counter }), vector.hotp_6_digits)
    }
  })

  test('the OTP library reproduces RFC 6238 Appendix B with each row’s own seed', () => {
    assert.ok(totpVectors.vectors.length >= 18)
    for (const vector of totpVectors.vectors) {
      const totp = new TOTP({
        algorithm: vector.algorithm,
        digits: 8,
        period: totpVectors.step_seconds,
        secret: secretOf(totpVectors.keys[vector.algorithm].hex),
      })
      assert.equal(totp.generate({ timestamp: vector.unix_time * 1000 }), vector.totp_8_digits)
    }
    for (const trap of totpVectors.wrong_key_trap) {
      const totp = new TOTP({
        algorithm: trap.algorithm,
        digits: 8,
        period: totpVectors.step_seconds,
        secret: secretOf(totpVectors.keys.SHA1.hex),
      })
      assert.equal(
        totp.generate({ timestamp: trap.unix_time * 1000 }),
        trap.code_with_20_byte_key_WRONG,
      )
    }
  })
})

for (const { dialect, skip } of dialects) {
  describe(`Ward's TOTP check on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let ward: Ward
    let userId: string

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      const config = testConfig(join(directory.path, 'home'), database.url)
      await initializeWard(config, systemContext('test'))
      ward = await Ward.open(config)
      const created = await ward.people.createFirstPlatformOperator(
        systemContext('test'),
        'otp.operator',
      )
      userId = created.user.id
    })

    after(async () => {
      await ward?.close()
      await database?.drop()
      directory?.remove()
    })

    /** Stores the RFC's SHA-1 seed as the user's confirmed authenticator. */
    async function storeRfcSecret(credentialId: string) {
      await ward.store.db
        .deleteFrom('user_totp_credentials')
        .where('user_id', '=', userId)
        .execute()
      await ward.store.db
        .insertInto('user_totp_credentials')
        .values({
          id: credentialId,
          user_id: userId,
          wrapped_secret: await wrapTotpSecret(
            ward.keys,
            userId,
            credentialId,
            Buffer.from(totpVectors.keys.SHA1.hex, 'hex'),
          ),
          confirmed_at: new Date(0).toISOString(),
          last_step: null,
          created_at: new Date(0).toISOString(),
        })
        .execute()
    }

    const check = (code: string, unixTime: number) =>
      ward.store.transaction((tx) =>
        verifyTotp(tx, ward.keys, userId, code, new Date(unixTime * 1000)),
      )

    const refused = async (code: string, unixTime: number) => {
      await assert.rejects(check(code, unixTime), (error) =>
        isWardError(error, 'ERR_UNAUTHENTICATED'),
      )
    }

    test('accepts each RFC 6238 SHA-1 row at its time, with a secret wrapped under the master key', async () => {
      const rows = totpVectors.vectors.filter((vector) => vector.algorithm === 'SHA1')
      assert.ok(rows.length >= 6)
      for (const [index, vector] of rows.entries()) {
        await storeRfcSecret(`00000000-0000-4000-8000-00000000000${index}`)
        await check(vector.totp_6_digits_derived, vector.unix_time)
      }
    })

    test('refuses a code replayed in its own time step, and any earlier step', async () => {
      const vector = totpVectors.vectors.find(
        (row) => row.algorithm === 'SHA1' && row.unix_time === 1111111109,
      )
      assert.ok(vector !== undefined)
      await storeRfcSecret('00000000-0000-4000-8000-0000000000aa')
      await check(vector.totp_6_digits_derived, vector.unix_time)
      await refused(vector.totp_6_digits_derived, vector.unix_time)
      await refused(vector.totp_6_digits_derived, vector.unix_time + 20)
    })

    test('accepts one step of drift either side and no more', async () => {
      const vector = totpVectors.vectors.find(
        (row) => row.algorithm === 'SHA1' && row.unix_time === 1234567890,
      )
      assert.ok(vector !== undefined)
      await storeRfcSecret('00000000-0000-4000-8000-0000000000bb')
      await refused(vector.totp_6_digits_derived, vector.unix_time + 61)
      await check(vector.totp_6_digits_derived, vector.unix_time + 30)
      await storeRfcSecret('00000000-0000-4000-8000-0000000000cc')
      await refused(vector.totp_6_digits_derived, vector.unix_time - 61)
      await check(vector.totp_6_digits_derived, vector.unix_time - 30)
    })

    test('a wrapped secret moved to another credential does not open', async () => {
      await storeRfcSecret('00000000-0000-4000-8000-0000000000dd')
      await ward.store.db
        .updateTable('user_totp_credentials')
        .set({ id: '00000000-0000-4000-8000-0000000000ee' })
        .where('user_id', '=', userId)
        .execute()
      await assert.rejects(check('287082', 59), (error) => isWardError(error, 'ERR_KEY_INVALID'))
    })
  })
}
