import { createHash, randomBytes, randomUUID } from 'node:crypto'

import { WardError } from '@ward/core'

import type { Transaction } from '../store/index.js'
import { isRole, type Role, type RoleGrant } from './principal.js'

/** A person who signs in to Ward. Holds ids and the login name, nothing about health. */
export interface User {
  readonly id: string
  /** Null for platform operators. */
  readonly organizationId: string | null
  /** Case-folded; unique across Ward. */
  readonly loginName: string
  readonly status: 'active' | 'disabled'
  readonly patientPseudonym: string | null
  readonly createdAt: string
}

const loginNamePattern = /^[a-z0-9](?:[a-z0-9._@+-]{1,62}[a-z0-9])$/

/**
 * The login name as Ward stores and compares it: NFKC, then Unicode case folding (lowercase
 * after normalization), trimmed. Throws `ERR_INPUT_INVALID` naming what is allowed.
 */
export function foldLoginName(text: unknown): string {
  const folded = typeof text === 'string' ? text.normalize('NFKC').trim().toLowerCase() : ''
  if (!loginNamePattern.test(folded)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      'login name must be 3 to 64 characters: letters a-z, digits and . _ @ + -, ' +
        'starting and ending with a letter or digit',
      { details: { field: 'login' } },
    )
  }
  return folded
}

/**
 * Creates an active user without a password, with the given grants, and returns a one-time
 * setup token (shown once; only its SHA-256 is kept) with which the person chooses their
 * password. A user of an organization may hold only that organization's roles; a platform
 * operator has no organization and holds only `platform-operator`. A `patient` grant needs
 * `patientPseudonym`.
 */
export async function createUser(
  tx: Transaction,
  input: {
    readonly organizationId: string | null
    readonly loginName: string
    readonly roles: readonly Role[]
    readonly patientPseudonym?: string
  },
  now: Date,
  setupTokenTtlMs: number,
): Promise<{ user: User; setupToken: string; setupTokenExpiresAt: string }> {
  const loginName = foldLoginName(input.loginName)
  if (input.roles.length === 0) {
    throw new WardError('ERR_INPUT_INVALID', 'a user needs at least one role', {
      details: { field: 'roles' },
    })
  }
  for (const role of input.roles) checkGrant(input.organizationId, role)
  if (input.roles.includes('patient') !== (input.patientPseudonym !== undefined)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      'a user holding the patient role needs the patient pseudonym, and only such a user',
      { details: { field: 'patientPseudonym' } },
    )
  }
  const existing = await tx
    .selectFrom('users')
    .select('id')
    .where('login_name', '=', loginName)
    .executeTakeFirst()
  if (existing !== undefined) {
    throw new WardError('ERR_INPUT_INVALID', 'that login name is taken; choose another', {
      details: { field: 'login' },
    })
  }

  const user: User = {
    id: randomUUID(),
    organizationId: input.organizationId,
    loginName,
    status: 'active',
    patientPseudonym: input.patientPseudonym ?? null,
    createdAt: now.toISOString(),
  }
  await tx
    .insertInto('users')
    .values({
      id: user.id,
      organization_id: user.organizationId,
      login_name: user.loginName,
      status: user.status,
      patient_pseudonym: user.patientPseudonym,
      created_at: user.createdAt,
      updated_at: user.createdAt,
    })
    .execute()
  for (const role of new Set(input.roles)) await insertGrant(tx, user, role, now)
  const setup = await createSetupToken(tx, user.id, now, setupTokenTtlMs)
  return { user, setupToken: setup.token, setupTokenExpiresAt: setup.expiresAt }
}

/** A new one-time setup token for `userId`; any earlier unused one stops working. */
export async function createSetupToken(
  tx: Transaction,
  userId: string,
  now: Date,
  ttlMs: number,
): Promise<{ token: string; expiresAt: string }> {
  await tx
    .updateTable('user_setup_tokens')
    .set({ used_at: now.toISOString() })
    .where('user_id', '=', userId)
    .where('used_at', 'is', null)
    .execute()
  const token = `ward_setup_${randomBytes(32).toString('base64url')}`
  const expiresAt = new Date(now.getTime() + ttlMs).toISOString()
  await tx
    .insertInto('user_setup_tokens')
    .values({
      id: randomUUID(),
      user_id: userId,
      token_hash: tokenDigest(token),
      expires_at: expiresAt,
      used_at: null,
      created_at: now.toISOString(),
    })
    .execute()
  return { token, expiresAt }
}

/**
 * Spends a setup token: the user it belongs to, once. Unknown, used and expired tokens all
 * throw the same `ERR_UNAUTHENTICATED`.
 */
export async function redeemSetupToken(tx: Transaction, token: string, now: Date): Promise<User> {
  const row = await tx
    .selectFrom('user_setup_tokens')
    .selectAll()
    .where('token_hash', '=', tokenDigest(token))
    .executeTakeFirst()
  if (row === undefined || row.used_at !== null || Date.parse(row.expires_at) <= now.getTime()) {
    throw new WardError('ERR_UNAUTHENTICATED', 'the setup link is unknown, used or expired')
  }
  const spent = await tx
    .updateTable('user_setup_tokens')
    .set({ used_at: now.toISOString() })
    .where('id', '=', row.id)
    .where('used_at', 'is', null)
    .executeTakeFirst()
  if (spent.numUpdatedRows !== 1n) {
    throw new WardError('ERR_UNAUTHENTICATED', 'the setup link is unknown, used or expired')
  }
  const user = await findUser(tx, row.user_id)
  if (user.status !== 'active') {
    throw new WardError('ERR_UNAUTHENTICATED', 'the setup link is unknown, used or expired')
  }
  return user
}

/** The user with id `userId`; `ERR_NOT_FOUND` otherwise. */
export async function findUser(tx: Transaction, userId: string): Promise<User> {
  const row = await tx.selectFrom('users').selectAll().where('id', '=', userId).executeTakeFirst()
  if (row === undefined) throw new WardError('ERR_NOT_FOUND', 'no such user')
  return toUser(row)
}

/** The user whose folded login name is `loginName`, if any. */
export async function findUserByLoginName(
  tx: Transaction,
  loginName: string,
): Promise<User | undefined> {
  const row = await tx
    .selectFrom('users')
    .selectAll()
    .where('login_name', '=', loginName)
    .executeTakeFirst()
  return row === undefined ? undefined : toUser(row)
}

/** True when any user holds `platform-operator`. */
export async function hasPlatformOperator(tx: Transaction): Promise<boolean> {
  const row = await tx
    .selectFrom('user_role_grants')
    .select('id')
    .where('role', '=', 'platform-operator')
    .executeTakeFirst()
  return row !== undefined
}

/** Every role `userId` holds. */
export async function listGrants(tx: Transaction, userId: string): Promise<RoleGrant[]> {
  const rows = await tx
    .selectFrom('user_role_grants')
    .select(['role', 'organization_id'])
    .where('user_id', '=', userId)
    .orderBy('created_at')
    .orderBy('id')
    .execute()
  return rows.flatMap((row) =>
    isRole(row.role) ? [{ role: row.role, organizationId: row.organization_id }] : [],
  )
}

/** Grants `role` to `user` in the user's own organization; a no-op when already held. */
export async function grantRole(
  tx: Transaction,
  user: User,
  role: Role,
  now: Date,
): Promise<boolean> {
  checkGrant(user.organizationId, role)
  if (role === 'patient' && user.patientPseudonym === null) {
    throw new WardError('ERR_INPUT_INVALID', 'the patient role needs a linked patient pseudonym', {
      details: { field: 'role' },
    })
  }
  const held = await listGrants(tx, user.id)
  if (held.some((grant) => grant.role === role)) return false
  await insertGrant(tx, user, role, now)
  return true
}

/**
 * Links `user` to the patient `pseudonym` (checked by the caller to be of the user's
 * organization). Linking the same patient again is a no-op; a user linked to another patient
 * is refused, since a person is one patient.
 */
export async function linkPatient(
  tx: Transaction,
  user: User,
  pseudonym: string,
  now: Date,
): Promise<User> {
  if (user.patientPseudonym === pseudonym) return user
  if (user.patientPseudonym !== null) {
    throw new WardError('ERR_INPUT_INVALID', 'this person is linked to another patient already', {
      details: { field: 'patient' },
    })
  }
  await tx
    .updateTable('users')
    .set({ patient_pseudonym: pseudonym, updated_at: now.toISOString() })
    .where('id', '=', user.id)
    .execute()
  return { ...user, patientPseudonym: pseudonym }
}

/** Revokes `role` from `user`; false when the user did not hold it. */
export async function revokeRole(tx: Transaction, user: User, role: Role): Promise<boolean> {
  const result = await tx
    .deleteFrom('user_role_grants')
    .where('user_id', '=', user.id)
    .where('role', '=', role)
    .executeTakeFirst()
  return result.numDeletedRows > 0n
}

/** Disables `user`: sign-in stops working and every session and API token ends now. */
export async function disableUser(tx: Transaction, user: User, now: Date): Promise<void> {
  const at = now.toISOString()
  await tx
    .updateTable('users')
    .set({ status: 'disabled', updated_at: at })
    .where('id', '=', user.id)
    .execute()
  await tx
    .updateTable('user_sessions')
    .set({ ended_at: at })
    .where('user_id', '=', user.id)
    .where('ended_at', 'is', null)
    .execute()
  await tx
    .updateTable('user_api_tokens')
    .set({ revoked_at: at })
    .where('user_id', '=', user.id)
    .where('revoked_at', 'is', null)
    .execute()
}

function checkGrant(organizationId: string | null, role: Role): void {
  if (!isRole(role)) {
    throw new WardError('ERR_INPUT_INVALID', 'unknown role', { details: { field: 'role' } })
  }
  if ((role === 'platform-operator') !== (organizationId === null)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      'platform-operator is held without an organization, and every other role within one',
      { details: { field: 'role', role } },
    )
  }
}

async function insertGrant(tx: Transaction, user: User, role: Role, now: Date): Promise<void> {
  await tx
    .insertInto('user_role_grants')
    .values({
      id: randomUUID(),
      user_id: user.id,
      organization_id: user.organizationId,
      role,
      created_at: now.toISOString(),
    })
    .execute()
}

function toUser(row: {
  id: string
  organization_id: string | null
  login_name: string
  status: string
  patient_pseudonym: string | null
  created_at: string
}): User {
  return {
    id: row.id,
    organizationId: row.organization_id,
    loginName: row.login_name,
    status: row.status === 'active' ? 'active' : 'disabled',
    patientPseudonym: row.patient_pseudonym,
    createdAt: row.created_at,
  }
}

/** SHA-256 of a high-entropy token, as stored; tokens are random, so no salt is needed. */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex')
}
