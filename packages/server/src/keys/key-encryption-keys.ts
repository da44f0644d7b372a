import { randomBytes } from 'node:crypto'

import { WardError } from '@ward/core'

import type { Transaction } from '../store/index.js'
import type { KeyWrappingProvider } from './master-key.js'
import type { KeyEncryptionKeyState } from './tables.js'

/** The public facts of one version of an organization's key-encryption key. */
export interface KeyEncryptionKeyRecord {
  readonly organizationId: string
  readonly version: number
  readonly state: KeyEncryptionKeyState
  readonly provider: string
  readonly createdAt: string
  readonly retiredAt: string | null
}

/** A key-encryption key row as the functions that unwrap it need it. */
export interface StoredKeyEncryptionKey {
  readonly organizationId: string
  readonly version: number
  readonly provider: string
  readonly wrappedKey: Uint8Array | null
}

const keyBytes = 32

/**
 * Creates version 1 of `organizationId`'s key-encryption key: 256 random bits, stored only
 * wrapped by `provider` under a context naming the organization and the version. Runs when
 * the organization is created; refuses an organization that already has one.
 */
export async function createKeyEncryptionKey(
  tx: Transaction,
  provider: KeyWrappingProvider,
  organizationId: string,
): Promise<KeyEncryptionKeyRecord> {
  const existing = await tx
    .selectFrom('key_encryption_keys')
    .select('version')
    .where('organization_id', '=', organizationId)
    .executeTakeFirst()
  if (existing !== undefined) {
    throw new WardError(
      'ERR_ALREADY_INITIALIZED',
      `organization ${organizationId} already has a key-encryption key`,
      { details: { organization: organizationId } },
    )
  }
  return insertVersion(tx, provider, organizationId, 1)
}

/**
 * Adds version n+1 of the organization's key-encryption key and makes it the active one, which
 * wraps every data key created from now on. Older versions become `superseded`: they still
 * open the data keys they wrapped until {@link rewrapDataKeys} has moved those keys to the
 * active version, and {@link retireKeyEncryptionKeys} then erases them.
 */
export async function rotateKeyEncryptionKey(
  tx: Transaction,
  provider: KeyWrappingProvider,
  organizationId: string,
): Promise<KeyEncryptionKeyRecord> {
  const previous = await lockActiveKeyEncryptionKey(tx, organizationId, 'superseded')
  return insertVersion(tx, provider, organizationId, previous.version + 1)
}

/**
 * Retires every superseded version that no live data key is wrapped under: marks it retired
 * and erases its wrapped bytes. Returns the versions retired now. Versions that still wrap a
 * data key stay, so running this before the rewrap has finished is harmless.
 */
export async function retireKeyEncryptionKeys(
  tx: Transaction,
  organizationId: string,
): Promise<number[]> {
  const candidates = await tx
    .selectFrom('key_encryption_keys')
    .select('version')
    .where('organization_id', '=', organizationId)
    .where('state', '=', 'superseded')
    .orderBy('version')
    .execute()

  const retired: number[] = []
  for (const { version } of candidates) {
    const result = await tx
      .updateTable('key_encryption_keys')
      .set({ state: 'retired', wrapped_key: null, retired_at: new Date().toISOString() })
      .where('organization_id', '=', organizationId)
      .where('version', '=', version)
      .where('state', '=', 'superseded')
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('data_keys')
              .select('data_keys.id')
              .where('data_keys.organization_id', '=', organizationId)
              .where('data_keys.key_encryption_key_version', '=', version)
              .where('data_keys.destroyed_at', 'is', null),
          ),
        ),
      )
      .executeTakeFirst()
    if (Number(result.numUpdatedRows) === 1) retired.push(version)
  }
  return retired
}

/** Every version of the organization's key-encryption key, oldest first, without key bytes. */
export async function listKeyEncryptionKeys(
  tx: Transaction,
  organizationId: string,
): Promise<KeyEncryptionKeyRecord[]> {
  const rows = await tx
    .selectFrom('key_encryption_keys')
    .select(['organization_id', 'version', 'state', 'provider', 'created_at', 'retired_at'])
    .where('organization_id', '=', organizationId)
    .orderBy('version')
    .execute()
  return rows.map((row) => ({
    organizationId: row.organization_id,
    version: row.version,
    state: row.state,
    provider: row.provider,
    createdAt: row.created_at,
    retiredAt: row.retired_at,
  }))
}

/**
 * Reads the organization's active key-encryption key and holds it until the transaction ends,
 * setting its state to `nextState` (`active` keeps it). Whoever wraps a data key under the
 * active version holds this lock, so a rotation waits for them and a retirement can never
 * erase a version that a data key about to commit depends on. The lock is an update because
 * that is the one row lock both SQLite (whose transactions already hold the write lock) and
 * PostgreSQL accept in the same SQL.
 */
export async function lockActiveKeyEncryptionKey(
  tx: Transaction,
  organizationId: string,
  nextState: 'active' | 'superseded' = 'active',
): Promise<StoredKeyEncryptionKey> {
  // A concurrent rotation may supersede the row this statement waited for; the next attempt,
  // a new statement, sees the version that rotation made active.
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const row = await tx
      .updateTable('key_encryption_keys')
      .set({ state: nextState })
      .where('organization_id', '=', organizationId)
      .where('state', '=', 'active')
      .returning(['version', 'provider', 'wrapped_key'])
      .executeTakeFirst()
    if (row !== undefined) {
      return {
        organizationId,
        version: row.version,
        provider: row.provider,
        wrappedKey: row.wrapped_key,
      }
    }
  }
  throw new WardError(
    'ERR_KEY_UNAVAILABLE',
    `organization ${organizationId} has no active key-encryption key`,
    { details: { organization: organizationId } },
  )
}

/** Reads one version of the organization's key-encryption key, in whatever state it is. */
export async function findKeyEncryptionKey(
  tx: Transaction,
  organizationId: string,
  version: number,
): Promise<StoredKeyEncryptionKey> {
  const row = await tx
    .selectFrom('key_encryption_keys')
    .select(['provider', 'wrapped_key'])
    .where('organization_id', '=', organizationId)
    .where('version', '=', version)
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError(
      'ERR_KEY_UNAVAILABLE',
      `organization ${organizationId} has no key-encryption key version ${version}`,
      { details: { organization: organizationId, version } },
    )
  }
  return { organizationId, version, provider: row.provider, wrappedKey: row.wrapped_key }
}

/**
 * Unwraps a stored key-encryption key with `provider`. Throws `ERR_KEY_UNAVAILABLE` for a
 * retired version or one held by another provider, `ERR_KEY_INVALID` when the wrapped bytes
 * do not open under this organization and version.
 */
export async function unwrapKeyEncryptionKey(
  provider: KeyWrappingProvider,
  stored: StoredKeyEncryptionKey,
): Promise<Uint8Array> {
  const { organizationId, version } = stored
  if (stored.wrappedKey === null) {
    throw new WardError(
      'ERR_KEY_UNAVAILABLE',
      `key-encryption key version ${version} of organization ${organizationId} is retired`,
      { details: { organization: organizationId, version } },
    )
  }
  if (stored.provider !== provider.name) {
    throw new WardError(
      'ERR_KEY_UNAVAILABLE',
      `key-encryption key version ${version} of organization ${organizationId} is held by ${stored.provider}`,
      { details: { organization: organizationId, version, provider: stored.provider } },
    )
  }
  const key = await provider.unwrap(stored.wrappedKey, wrappingContext(organizationId, version))
  if (key.length !== keyBytes) {
    throw new WardError(
      'ERR_KEY_INVALID',
      `key-encryption key version ${version} of organization ${organizationId} has a wrong length`,
      { details: { organization: organizationId, version } },
    )
  }
  return key
}

async function insertVersion(
  tx: Transaction,
  provider: KeyWrappingProvider,
  organizationId: string,
  version: number,
): Promise<KeyEncryptionKeyRecord> {
  const key = randomBytes(keyBytes)
  const record: KeyEncryptionKeyRecord = {
    organizationId,
    version,
    state: 'active',
    provider: provider.name,
    createdAt: new Date().toISOString(),
    retiredAt: null,
  }
  await tx
    .insertInto('key_encryption_keys')
    .values({
      organization_id: organizationId,
      version,
      state: 'active',
      provider: provider.name,
      wrapped_key: await provider.wrap(key, wrappingContext(organizationId, version)),
      created_at: record.createdAt,
      retired_at: null,
    })
    .execute()
  key.fill(0)
  return record
}

function wrappingContext(organizationId: string, version: number): string {
  return `key-encryption-key ${organizationId} ${version}`
}
