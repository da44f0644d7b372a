import { createHash } from 'node:crypto'

import { WardError } from '@ward/core'

import type { Transaction } from '../store/index.js'

/**
 * How failed sign-ins are throttled. Three counters, each keyed by a SHA-256 digest so no
 * typed login name is stored, and each the same for a login name that exists and one that
 * does not:
 *
 * - the (login name, address) pair is blocked hard after a few failures: it is the guesser
 *   working on one account, and blocking it hurts nobody else;
 * - the address is blocked hard after many failures across accounts: it is a sprayer — but
 *   not for an account that signed in from that address before, which still has its pair
 *   limit: people behind one hospital NAT share an address with whoever sprays from it, and
 *   must not be locked out with them;
 * - the login name alone is only slowed: past a number of failures each further attempt from
 *   an address the account has not signed in from waits a delay that doubles up to a bounded
 *   maximum. Addresses the account signed in from before are not slowed, so somebody who
 *   fails on purpose from elsewhere cannot keep the owner out: that is what makes the lockout
 *   useless as a weapon.
 */
export const signInThrottlePolicy = {
  windowMs: 15 * 60_000,
  pairFailures: 5,
  pairBlockMs: 15 * 60_000,
  addressFailures: 50,
  addressBlockMs: 15 * 60_000,
  accountFreeFailures: 10,
  accountMaxDelayMs: 60_000,
  knownAddressMs: 90 * 86_400_000,
  secondFactorFailures: 10,
  secondFactorBlockMs: 15 * 60_000,
} as const

type ThrottleKind = 'pair' | 'address' | 'account'

/** What one sign-in attempt is counted under. */
export interface SignInAttemptKeys {
  readonly loginName: string
  readonly address: string
}

/**
 * Refuses the attempt with `ERR_RATE_LIMITED` (and `details.retryAfterSeconds`) while any of
 * its counters blocks it. `knownUserId` is the account the login name names, when it names
 * one: an address that account signed in from recently is exempt from the account delay and
 * from the address block, though never from the pair block.
 */
export async function checkSignInThrottle(
  tx: Transaction,
  attempt: SignInAttemptKeys,
  knownUserId: string | undefined,
  now: Date,
): Promise<void> {
  const keys = throttleKeys(attempt)
  const rows = await tx
    .selectFrom('sign_in_throttles')
    .selectAll()
    .where('key_hash', 'in', [keys.pair, keys.address, keys.account])
    .execute()
  let exempt: boolean | undefined
  for (const row of rows) {
    if (row.blocked_until === null || Date.parse(row.blocked_until) <= now.getTime()) continue
    const kind = row.kind as ThrottleKind
    if (row.key_hash !== keys[kind]) continue
    if (kind === 'account' || kind === 'address') {
      exempt ??= knownUserId !== undefined && (await isKnownAddress(tx, knownUserId, attempt, now))
      if (exempt) continue
    }
    const retryAfterSeconds = Math.max(
      1,
      Math.ceil((Date.parse(row.blocked_until) - now.getTime()) / 1000),
    )
    throw new WardError('ERR_RATE_LIMITED', 'too many failed sign-ins; wait before trying again', {
      details: { retryAfterSeconds },
    })
  }
}

/** Counts one failed attempt on all three counters, blocking those that pass their limit. */
export async function recordSignInFailure(
  tx: Transaction,
  attempt: SignInAttemptKeys,
  now: Date,
): Promise<void> {
  const keys = throttleKeys(attempt)
  const policy = signInThrottlePolicy
  for (const kind of ['pair', 'address', 'account'] as const) {
    const row = await tx
      .selectFrom('sign_in_throttles')
      .selectAll()
      .where('kind', '=', kind)
      .where('key_hash', '=', keys[kind])
      .executeTakeFirst()
    const fresh =
      row === undefined || now.getTime() - Date.parse(row.window_start) > policy.windowMs
    const failures = fresh ? 1 : row.failures + 1
    const windowStart = fresh ? now.toISOString() : row.window_start
    const blockMs = blockFor(kind, failures)
    const blockedUntil =
      blockMs === undefined
        ? (row?.blocked_until ?? null)
        : new Date(now.getTime() + blockMs).toISOString()
    if (row === undefined) {
      await tx
        .insertInto('sign_in_throttles')
        .values({
          kind,
          key_hash: keys[kind],
          failures,
          window_start: windowStart,
          blocked_until: blockedUntil,
        })
        .execute()
    } else {
      await tx
        .updateTable('sign_in_throttles')
        .set({ failures, window_start: windowStart, blocked_until: blockedUntil })
        .where('kind', '=', kind)
        .where('key_hash', '=', keys[kind])
        .execute()
    }
  }
}

/**
 * A successful sign-in: the pair and account counters start over, and the address becomes
 * one the account is known to sign in from. The address counter keeps counting, since one
 * success does not make a sprayer honest.
 */
export async function recordSignInSuccess(
  tx: Transaction,
  attempt: SignInAttemptKeys,
  userId: string,
  now: Date,
): Promise<void> {
  const keys = throttleKeys(attempt)
  await tx
    .deleteFrom('sign_in_throttles')
    .where((eb) =>
      eb.or([
        eb.and([eb('kind', '=', 'pair'), eb('key_hash', '=', keys.pair)]),
        eb.and([eb('kind', '=', 'account'), eb('key_hash', '=', keys.account)]),
      ]),
    )
    .execute()
  const addressHash = digest(`address\n${attempt.address}`)
  await tx
    .insertInto('sign_in_known_addresses')
    .values({ user_id: userId, address_hash: addressHash, last_success_at: now.toISOString() })
    .onConflict((conflict) =>
      conflict
        .columns(['user_id', 'address_hash'])
        .doUpdateSet({ last_success_at: now.toISOString() }),
    )
    .execute()
}

/**
 * Second factors are throttled per account, across sessions: whoever gives them already
 * passed the password, so blocking the account's second factor for a while after many wrong
 * codes hurts only somebody who holds the password, and stops them from trying every code by
 * signing in again and again.
 */
export async function checkSecondFactorThrottle(
  tx: Transaction,
  userId: string,
  now: Date,
): Promise<void> {
  const row = await tx
    .selectFrom('sign_in_throttles')
    .selectAll()
    .where('kind', '=', 'second-factor')
    .where('key_hash', '=', digest(`second-factor\n${userId}`))
    .executeTakeFirst()
  if (row?.blocked_until == null || Date.parse(row.blocked_until) <= now.getTime()) return
  const retryAfterSeconds = Math.ceil((Date.parse(row.blocked_until) - now.getTime()) / 1000)
  throw new WardError('ERR_RATE_LIMITED', 'too many wrong codes; wait before trying again', {
    details: { retryAfterSeconds: Math.max(1, retryAfterSeconds) },
  })
}

/** Counts a wrong second factor of `userId`; blocks the account's second factor past the limit. */
export async function recordSecondFactorThrottleFailure(
  tx: Transaction,
  userId: string,
  now: Date,
): Promise<void> {
  const policy = signInThrottlePolicy
  const key = digest(`second-factor\n${userId}`)
  const row = await tx
    .selectFrom('sign_in_throttles')
    .selectAll()
    .where('kind', '=', 'second-factor')
    .where('key_hash', '=', key)
    .executeTakeFirst()
  const fresh = row === undefined || now.getTime() - Date.parse(row.window_start) > policy.windowMs
  const failures = fresh ? 1 : row.failures + 1
  const values = {
    failures,
    window_start: fresh ? now.toISOString() : row.window_start,
    blocked_until:
      failures >= policy.secondFactorFailures
        ? new Date(now.getTime() + policy.secondFactorBlockMs).toISOString()
        : (row?.blocked_until ?? null),
  }
  if (row === undefined) {
    await tx
      .insertInto('sign_in_throttles')
      .values({ kind: 'second-factor', key_hash: key, ...values })
      .execute()
  } else {
    await tx
      .updateTable('sign_in_throttles')
      .set(values)
      .where('kind', '=', 'second-factor')
      .where('key_hash', '=', key)
      .execute()
  }
}

function blockFor(kind: ThrottleKind, failures: number): number | undefined {
  const policy = signInThrottlePolicy
  switch (kind) {
    case 'pair':
      return failures >= policy.pairFailures ? policy.pairBlockMs : undefined
    case 'address':
      return failures >= policy.addressFailures ? policy.addressBlockMs : undefined
    case 'account': {
      const over = failures - policy.accountFreeFailures
      if (over < 0) return undefined
      return Math.min(policy.accountMaxDelayMs, 1000 * 2 ** Math.min(over, 16))
    }
  }
}

async function isKnownAddress(
  tx: Transaction,
  userId: string,
  attempt: SignInAttemptKeys,
  now: Date,
): Promise<boolean> {
  const row = await tx
    .selectFrom('sign_in_known_addresses')
    .select('last_success_at')
    .where('user_id', '=', userId)
    .where('address_hash', '=', digest(`address\n${attempt.address}`))
    .executeTakeFirst()
  return (
    row !== undefined &&
    now.getTime() - Date.parse(row.last_success_at) < signInThrottlePolicy.knownAddressMs
  )
}

function throttleKeys(attempt: SignInAttemptKeys): Record<ThrottleKind, string> {
  return {
    pair: digest(`pair\n${attempt.loginName}\n${attempt.address}`),
    address: digest(`address\n${attempt.address}`),
    account: digest(`account\n${attempt.loginName}`),
  }
}

function digest(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex')
}
