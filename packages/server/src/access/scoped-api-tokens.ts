import { randomBytes, randomUUID } from 'node:crypto'

import { WardError } from '@ward/core'

import type { Transaction } from '../store/index.js'
import { tokenDigest } from './accounts.js'
import { tokenScopeNames } from './policy.js'

/** An API token as listed: never the token itself, which is shown once at issue. */
export interface ApiTokenRecord {
  readonly id: string
  readonly userId: string
  readonly label: string
  readonly scopes: readonly string[]
  readonly createdAt: string
  readonly expiresAt: string
  readonly revokedAt: string | null
  readonly lastUsedAt: string | null
}

const scopePattern = /^[a-z][a-z0-9-]{0,39}(:[a-z][a-z0-9-]{0,39}){0,3}$/
const maxScopes = 20
const maxTokensPerUser = 50

/**
 * Issues an API token for `userId` carrying `scopes` (each like `observation:read`, see `tokenScopeNames`), valid
 * for `ttlMs`. The token is 256 random bits, returned once; only its SHA-256 is stored. The
 * token acts as its user, narrowed to its scopes: the policy grants nothing beyond both.
 */
export async function issueApiToken(
  tx: Transaction,
  input: {
    readonly userId: string
    readonly label: string
    readonly scopes: readonly string[]
    readonly ttlMs: number
  },
  now: Date,
): Promise<{ token: string; record: ApiTokenRecord }> {
  if (!/^[\p{L}\p{N} ._-]{1,80}$/u.test(input.label)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      'label must be 1 to 80 letters, digits, spaces, dots, underscores or hyphens',
      { details: { field: 'label' } },
    )
  }
  const scopes = [...new Set(input.scopes)]
  if (
    scopes.length === 0 ||
    scopes.length > maxScopes ||
    !scopes.every((s) => scopePattern.test(s) && tokenScopeNames.has(s))
  ) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `scopes must be 1 to ${maxScopes} of Ward's scopes: an action with colons for dots, such ` +
        'as observation:read or device:list, or fhir:read or fhir:audit',
      { details: { field: 'scopes' } },
    )
  }
  const live = await listApiTokens(tx, input.userId, now)
  if (live.length >= maxTokensPerUser) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `at most ${maxTokensPerUser} live API tokens per person; revoke one first`,
    )
  }
  const token = `ward_at_${randomBytes(32).toString('base64url')}`
  const record: ApiTokenRecord = {
    id: randomUUID(),
    userId: input.userId,
    label: input.label,
    scopes,
    createdAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + input.ttlMs).toISOString(),
    revokedAt: null,
    lastUsedAt: null,
  }
  await tx
    .insertInto('user_api_tokens')
    .values({
      id: record.id,
      user_id: record.userId,
      label: record.label,
      token_hash: tokenDigest(token),
      scopes: scopes.join(' '),
      created_at: record.createdAt,
      expires_at: record.expiresAt,
      revoked_at: null,
      last_used_at: null,
    })
    .execute()
  return { token, record }
}

/** The user's tokens that are neither revoked nor expired, newest first. */
export async function listApiTokens(
  tx: Transaction,
  userId: string,
  now: Date,
): Promise<ApiTokenRecord[]> {
  const rows = await tx
    .selectFrom('user_api_tokens')
    .selectAll()
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', now.toISOString())
    .orderBy('created_at', 'desc')
    .execute()
  return rows.map(toRecord)
}

/** Revokes the user's token `tokenId`; `ERR_NOT_FOUND` when the user has no such live token. */
export async function revokeApiToken(
  tx: Transaction,
  userId: string,
  tokenId: string,
  now: Date,
): Promise<void> {
  const result = await tx
    .updateTable('user_api_tokens')
    .set({ revoked_at: now.toISOString() })
    .where('id', '=', tokenId)
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .executeTakeFirst()
  if (result.numUpdatedRows !== 1n) throw new WardError('ERR_NOT_FOUND', 'no such API token')
}

/** Revokes every unrevoked API token of `userId`; returns how many there were. */
export async function revokeAllApiTokens(
  tx: Transaction,
  userId: string,
  now: Date,
): Promise<number> {
  const result = await tx
    .updateTable('user_api_tokens')
    .set({ revoked_at: now.toISOString() })
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .executeTakeFirst()
  return Number(result.numUpdatedRows)
}

/** The live token `token` names, marked used now; undefined for anything else. */
export async function resolveApiToken(
  tx: Transaction,
  token: string,
  now: Date,
): Promise<ApiTokenRecord | undefined> {
  const row = await tx
    .selectFrom('user_api_tokens')
    .selectAll()
    .where('token_hash', '=', tokenDigest(token))
    .executeTakeFirst()
  if (row === undefined || row.revoked_at !== null) return undefined
  if (Date.parse(row.expires_at) <= now.getTime()) return undefined
  await tx
    .updateTable('user_api_tokens')
    .set({ last_used_at: now.toISOString() })
    .where('id', '=', row.id)
    .execute()
  return toRecord(row)
}

function toRecord(row: {
  id: string
  user_id: string
  label: string
  scopes: string
  created_at: string
  expires_at: string
  revoked_at: string | null
  last_used_at: string | null
}): ApiTokenRecord {
  return {
    id: row.id,
    userId: row.user_id,
    label: row.label,
    scopes: row.scopes.split(' ').filter(Boolean),
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    lastUsedAt: row.last_used_at,
  }
}
