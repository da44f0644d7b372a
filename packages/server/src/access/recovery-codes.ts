import { randomInt, randomUUID } from 'node:crypto'

import { WardError } from '@ward/core'

import type { Transaction } from '../store/index.js'
import { tokenDigest } from './accounts.js'

/** How many recovery codes a set holds. */
export const recoveryCodeCount = 10

const alphabet = 'abcdefghjkmnpqrstuvwxyz23456789'

/**
 * Replaces the user's recovery codes with a new set and returns it, to be shown once. Each
 * code is 16 characters from a 31-letter alphabet without look-alikes (about 79 bits), so a
 * plain SHA-256 is enough to store it: nobody can guess one from its digest.
 */
export async function replaceRecoveryCodes(
  tx: Transaction,
  userId: string,
  now: Date,
): Promise<string[]> {
  await tx.deleteFrom('user_recovery_codes').where('user_id', '=', userId).execute()
  const codes: string[] = []
  for (let index = 0; index < recoveryCodeCount; index += 1) {
    const code = newCode()
    codes.push(code)
    await tx
      .insertInto('user_recovery_codes')
      .values({
        id: randomUUID(),
        user_id: userId,
        code_hash: tokenDigest(normalizeCode(code)),
        used_at: null,
        created_at: now.toISOString(),
      })
      .execute()
  }
  return codes
}

/** Spends one recovery code of the user; `ERR_UNAUTHENTICATED` when unknown or already spent. */
export async function redeemRecoveryCode(
  tx: Transaction,
  userId: string,
  code: string,
  now: Date,
): Promise<{ remaining: number }> {
  const spent = await tx
    .updateTable('user_recovery_codes')
    .set({ used_at: now.toISOString() })
    .where('user_id', '=', userId)
    .where('code_hash', '=', tokenDigest(normalizeCode(code)))
    .where('used_at', 'is', null)
    .executeTakeFirst()
  if (spent.numUpdatedRows !== 1n) {
    throw new WardError('ERR_UNAUTHENTICATED', 'the recovery code is wrong or already used')
  }
  const row = await tx
    .selectFrom('user_recovery_codes')
    .select((eb) => eb.fn.countAll<number | string | bigint>().as('count'))
    .where('user_id', '=', userId)
    .where('used_at', 'is', null)
    .executeTakeFirstOrThrow()
  return { remaining: Number(row.count) }
}

function newCode(): string {
  let code = ''
  for (let index = 0; index < 16; index += 1) code += alphabet[randomInt(alphabet.length)]
  return `${code.slice(0, 4)}-${code.slice(4, 8)}-${code.slice(8, 12)}-${code.slice(12, 16)}`
}

function normalizeCode(code: string): string {
  return code.toLowerCase().replace(/[^a-z0-9]/g, '')
}
