import { randomBytes, randomUUID } from 'node:crypto'

import { WardError } from '@ward/core'

import type { Store, Transaction } from '../store/index.js'
import { sealedOverhead } from './aead.js'
import { unwrapDataKeyHalf, wrapDataKeyHalf } from './data-key-wrapping.js'
import {
  findKeyEncryptionKey,
  lockActiveKeyEncryptionKey,
  retireKeyEncryptionKeys,
  unwrapKeyEncryptionKey,
  type StoredKeyEncryptionKey,
} from './key-encryption-keys.js'
import type { Keyring } from './keyring.js'
import type { KeyWrappingProvider } from './master-key.js'
import { DataKey, type DataKeyOwner, type DataKeyOwnerType } from './record-sealing.js'

/** The public facts of a data key; its key bytes never leave the keys domain. */
export interface DataKeyRecord extends DataKeyOwner {
  readonly id: string
  readonly version: number
  readonly keyEncryptionKeyVersion: number
  readonly createdAt: string
  readonly destroyedAt: string | null
  readonly destructionReason: string | null
}

/** What {@link rewrapDataKeys} did. */
export interface RewrapResult {
  /** Data keys moved to the active key-encryption key. */
  readonly rewrapped: number
  /** Key-encryption key versions retired afterwards. */
  readonly retired: readonly number[]
}

const halfBytes = 32
const reasonPattern = /^[a-z][a-z0-9-]{0,63}$/

/**
 * Creates a data key for `owner`, made of two random 256-bit halves: one stored in the
 * database wrapped under the organization's active key-encryption key, one put in the key
 * share store outside it. Records sealed under it need both (see {@link destroyDataKey}).
 * The new key is cached in `keyring`, ready to seal. Throws `ERR_KEY_UNAVAILABLE` when the
 * organization has no active key-encryption key.
 *
 * The key share is stored before the row commits; if the transaction then fails, the share is
 * left behind, harmless: it opens nothing without its row.
 */
export async function createDataKey(
  tx: Transaction,
  keyring: Keyring,
  owner: DataKeyOwner,
): Promise<DataKeyRecord> {
  checkOwner(owner)

  const stored = await lockActiveKeyEncryptionKey(tx, owner.organizationId)
  const keyEncryptionKey = await keyring.keyEncryptionKey(stored)
  const latest = await tx
    .selectFrom('data_keys')
    .select((eb) => eb.fn.max('version').as('version'))
    .where('organization_id', '=', owner.organizationId)
    .where('owner_type', '=', owner.ownerType)
    .where('owner_id', '=', owner.ownerId)
    .executeTakeFirst()

  const record: DataKeyRecord = {
    id: randomUUID(),
    organizationId: owner.organizationId,
    ownerType: owner.ownerType,
    ownerId: owner.ownerId,
    version: Number(latest?.version ?? 0) + 1,
    keyEncryptionKeyVersion: stored.version,
    createdAt: new Date().toISOString(),
    destroyedAt: null,
    destructionReason: null,
  }
  const wrappedHalf = randomBytes(halfBytes)
  const keyShare = randomBytes(halfBytes)
  const wrappedKey = wrapDataKeyHalf(keyEncryptionKey, wrappedHalf, record)

  await keyring.keyShares.put(record.id, keyShare)
  await tx
    .insertInto('data_keys')
    .values({
      id: record.id,
      organization_id: record.organizationId,
      owner_type: record.ownerType,
      owner_id: record.ownerId,
      version: record.version,
      key_encryption_key_version: record.keyEncryptionKeyVersion,
      wrapped_key: wrappedKey,
      created_at: record.createdAt,
      rewrapped_at: null,
      destroyed_at: null,
      destruction_reason: null,
    })
    .execute()

  keyring.remember(DataKey.fromHalves(record, wrappedHalf, keyShare))
  wrappedHalf.fill(0)
  keyShare.fill(0)
  return record
}

/** The facts of data key `dataKeyId` of `organizationId`; `ERR_KEY_UNAVAILABLE` when none. */
export async function findDataKey(
  tx: Transaction,
  organizationId: string,
  dataKeyId: string,
): Promise<DataKeyRecord> {
  const row = await tx
    .selectFrom('data_keys')
    .selectAll()
    .where('id', '=', dataKeyId)
    .where('organization_id', '=', organizationId)
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError(
      'ERR_KEY_UNAVAILABLE',
      `organization ${organizationId} has no data key ${dataKeyId}`,
      { details: { organization: organizationId, key: dataKeyId } },
    )
  }
  return {
    id: row.id,
    organizationId: row.organization_id,
    ownerType: row.owner_type as DataKeyOwnerType,
    ownerId: row.owner_id,
    version: row.version,
    keyEncryptionKeyVersion: row.key_encryption_key_version,
    createdAt: row.created_at,
    destroyedAt: row.destroyed_at,
    destructionReason: row.destruction_reason,
  }
}

/**
 * Crypto-shreds data key `dataKeyId`: erases its key share from the key share store,
 * overwrites its wrapped half in the database and records when and why (`reason` is a short
 * code such as `retention`, `patient-request` or `decommission`, never free text). From then
 * on everything sealed under it fails with `ERR_DATA_KEY_DESTROYED`, here and in every copy
 * of the database — backups, replicas, dumps, however old — because each copy holds at most
 * the wrapped half, and the half it lacks existed only in the key share store. Overwriting
 * the wrapped half adds nothing to that guarantee (the database may keep old row versions);
 * it only keeps the live row from looking usable.
 *
 * Erasing cannot be rolled back: call this as the transaction's last step, after its audit
 * event is appended. If the transaction fails afterwards, the key stays destroyed and the
 * next read says so. Destroying a destroyed key erases again and changes nothing else.
 */
export async function destroyDataKey(
  tx: Transaction,
  keyring: Keyring,
  input: { readonly organizationId: string; readonly dataKeyId: string; readonly reason: string },
): Promise<DataKeyRecord> {
  if (!reasonPattern.test(input.reason)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      'destruction reason must be a code of 1–64 lowercase letters, digits and hyphens',
      { details: { field: 'reason' } },
    )
  }
  const existing = await findDataKey(tx, input.organizationId, input.dataKeyId)

  let record = existing
  if (existing.destroyedAt === null) {
    record = { ...existing, destroyedAt: new Date().toISOString(), destructionReason: input.reason }
    await tx
      .updateTable('data_keys')
      .set({
        // Same length as before, so that SQLite can overwrite the bytes in place.
        wrapped_key: new Uint8Array(sealedOverhead + halfBytes),
        destroyed_at: record.destroyedAt,
        destruction_reason: record.destructionReason,
      })
      .where('id', '=', existing.id)
      .where('destroyed_at', 'is', null)
      .execute()
  }

  // Last, and allowed to fail the transaction: a destruction is recorded only if it happened.
  await keyring.keyShares.erase(existing.id)
  keyring.forget(existing.id)
  return record
}

/**
 * Moves up to `batchSize` of the organization's live data keys from older key-encryption key
 * versions to the active one, in the caller's transaction, and returns how many it moved.
 * Only the wrapped halves change; sealed records and cached keys stay valid throughout.
 */
export async function rewrapDataKeyBatch(
  tx: Transaction,
  provider: KeyWrappingProvider,
  organizationId: string,
  options: { readonly batchSize: number },
): Promise<number> {
  const unwrapped = new Map<number, Uint8Array>()
  try {
    return await rewrapBatch(
      tx,
      provider,
      organizationId,
      checkBatchSize(options.batchSize),
      unwrapped,
    )
  } finally {
    for (const key of unwrapped.values()) key.fill(0)
  }
}

/**
 * The rewrap job: moves every live data key of the organization onto the active
 * key-encryption key, `batchSize` keys per transaction so that reads and writes go on between
 * batches, then retires the versions no live key needs any more.
 */
export async function rewrapDataKeys(
  store: Store,
  provider: KeyWrappingProvider,
  organizationId: string,
  options: { readonly batchSize: number },
): Promise<RewrapResult> {
  const batchSize = checkBatchSize(options.batchSize)
  // Unwrapped once for the whole job rather than once per batch.
  const unwrapped = new Map<number, Uint8Array>()
  let rewrapped = 0
  try {
    for (;;) {
      const moved = await store.transaction((tx) =>
        rewrapBatch(tx, provider, organizationId, batchSize, unwrapped),
      )
      rewrapped += moved
      if (moved < batchSize) break
    }
  } finally {
    for (const key of unwrapped.values()) key.fill(0)
  }
  const retired = await store.transaction((tx) => retireKeyEncryptionKeys(tx, organizationId))
  return { rewrapped, retired }
}

async function rewrapBatch(
  tx: Transaction,
  provider: KeyWrappingProvider,
  organizationId: string,
  batchSize: number,
  unwrapped: Map<number, Uint8Array>,
): Promise<number> {
  // Held to commit: a rotation waits for this batch, so no key lands on a retiring version.
  const active = await lockActiveKeyEncryptionKey(tx, organizationId)
  const keyOf = async (stored: StoredKeyEncryptionKey) => {
    let key = unwrapped.get(stored.version)
    if (key === undefined) {
      key = await unwrapKeyEncryptionKey(provider, stored)
      unwrapped.set(stored.version, key)
    }
    return key
  }
  const activeKey = await keyOf(active)

  const rows = await tx
    .selectFrom('data_keys')
    .select([
      'id',
      'owner_type',
      'owner_id',
      'version',
      'key_encryption_key_version',
      'wrapped_key',
    ])
    .where('organization_id', '=', organizationId)
    .where('key_encryption_key_version', '<>', active.version)
    .where('destroyed_at', 'is', null)
    .orderBy('id')
    .limit(batchSize)
    .execute()

  const rewrappedAt = new Date().toISOString()
  for (const row of rows) {
    const facts = {
      id: row.id,
      organizationId,
      ownerType: row.owner_type as DataKeyOwnerType,
      ownerId: row.owner_id,
      version: row.version,
    }
    const oldKey = await keyOf(
      await findKeyEncryptionKey(tx, organizationId, row.key_encryption_key_version),
    )
    const half = unwrapDataKeyHalf(oldKey, row.wrapped_key, {
      ...facts,
      keyEncryptionKeyVersion: row.key_encryption_key_version,
    })
    const wrappedKey = wrapDataKeyHalf(activeKey, half, {
      ...facts,
      keyEncryptionKeyVersion: active.version,
    })
    half.fill(0)
    // Guarded, so a key destroyed meanwhile is never given its wrapped half back.
    await tx
      .updateTable('data_keys')
      .set({
        wrapped_key: wrappedKey,
        key_encryption_key_version: active.version,
        rewrapped_at: rewrappedAt,
      })
      .where('id', '=', row.id)
      .where('key_encryption_key_version', '=', row.key_encryption_key_version)
      .where('destroyed_at', 'is', null)
      .execute()
  }
  return rows.length
}

function checkOwner(owner: DataKeyOwner): void {
  if (owner.ownerType !== 'patient') {
    throw new WardError('ERR_INPUT_INVALID', 'data key owner type must be patient', {
      details: { field: 'ownerType' },
    })
  }
  if (owner.ownerId.length === 0 || owner.ownerId.length > 200) {
    throw new WardError('ERR_INPUT_INVALID', 'data key owner id must be 1–200 characters', {
      details: { field: 'ownerId' },
    })
  }
}

function checkBatchSize(batchSize: number): number {
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) {
    throw new WardError('ERR_INPUT_INVALID', 'rewrap batch size must be an integer 1–10000', {
      details: { field: 'batchSize' },
    })
  }
  return batchSize
}
