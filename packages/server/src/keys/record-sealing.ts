import { hkdfSync } from 'node:crypto'

import { WardError } from '@ward/core'

import type { Transaction } from '../store/index.js'
import { associatedData, openBytes, sealBytes, transientAssociatedData } from './aead.js'
import type { Keyring } from './keyring.js'

/** What a data key protects: for now, one patient's identity and readings. */
export type DataKeyOwnerType = 'patient'

/** The owner a data key belongs to. */
export interface DataKeyOwner {
  readonly organizationId: string
  readonly ownerType: DataKeyOwnerType
  readonly ownerId: string
}

/** The row a sealed record belongs to; every field is bound into the ciphertext. */
export interface RecordPlace {
  readonly organizationId: string
  /** The table the record is stored in, e.g. `observations`. */
  readonly table: string
  readonly recordId: string
  /**
   * What the row holds in clear beside the sealed record (such as the code and times a
   * reading is searched by), in a fixed order. Bound into the ciphertext as well, so that a
   * record whose row had any of them changed no longer opens.
   */
  readonly clearColumns?: readonly string[]
}

/** A record's place and the data key that seals it. */
export interface RecordBinding extends RecordPlace {
  readonly dataKeyId: string
}

/**
 * An unwrapped data key in this process's memory, ready to seal and open records. It is built
 * from the two halves of the stored key — the wrapped half from the database and the key share
 * from outside it — and holds only the key derived from both. Once destroyed it refuses every
 * use, and its bytes are overwritten.
 */
export class DataKey {
  readonly id: string
  readonly organizationId: string
  readonly ownerType: DataKeyOwnerType
  readonly ownerId: string
  /** The owner's data key generation, bound into every record it seals. */
  readonly version: number
  readonly #recordKey: Uint8Array
  #destroyed = false

  private constructor(
    facts: DataKeyOwner & { id: string; version: number },
    recordKey: Uint8Array,
  ) {
    this.id = facts.id
    this.organizationId = facts.organizationId
    this.ownerType = facts.ownerType
    this.ownerId = facts.ownerId
    this.version = facts.version
    this.#recordKey = recordKey
  }

  /**
   * Derives the key that seals records from the wrapped half and the key share (HKDF-SHA256
   * over both, bound to the data key id). Neither half alone says anything about it.
   */
  static fromHalves(
    facts: DataKeyOwner & { id: string; version: number },
    wrappedHalf: Uint8Array,
    keyShare: Uint8Array,
  ): DataKey {
    const material = Buffer.concat([wrappedHalf, keyShare])
    const recordKey = new Uint8Array(
      hkdfSync(
        'sha256',
        material,
        new Uint8Array(0),
        associatedData(['ward record key v1', facts.id]),
        32,
      ),
    )
    material.fill(0)
    return new DataKey(facts, recordKey)
  }

  /** True once the key was destroyed in this process; it then seals and opens nothing. */
  get destroyed(): boolean {
    return this.#destroyed
  }

  /**
   * Seals `plaintext` for the record at `place` with AES-256-GCM and a fresh random nonce. The
   * associated data binds organization, table, record id, data key id and version, so the
   * result opens only at this place under this key.
   */
  seal(place: RecordPlace, plaintext: Uint8Array): Uint8Array {
    this.#usable()
    if (place.organizationId !== this.organizationId) {
      throw new WardError(
        'ERR_KEY_INVALID',
        `data key ${this.id} does not belong to organization ${place.organizationId}`,
        { details: { key: this.id, organization: place.organizationId } },
      )
    }
    return sealBytes(this.#recordKey, plaintext, this.#associatedData(place))
  }

  /**
   * Opens what {@link seal} sealed for the same place. Throws `ERR_RECORD_UNREADABLE` when
   * the bytes were changed or belong to another record, table, organization or key, or when
   * the row's clear columns are not those it was sealed with.
   */
  open(place: RecordPlace, sealed: Uint8Array): Uint8Array {
    this.#usable()
    const plaintext =
      place.organizationId === this.organizationId
        ? openBytes(this.#recordKey, sealed, this.#associatedData(place))
        : undefined
    if (plaintext === undefined) {
      throw new WardError(
        'ERR_RECORD_UNREADABLE',
        `record ${place.table}/${place.recordId} does not open under data key ${this.id}: it was altered or sealed for another row`,
        { details: { table: place.table, record: place.recordId, key: this.id } },
      )
    }
    return plaintext
  }

  /** Overwrites the key in memory and refuses all further use; for the keyring's destruction. */
  destroy(): void {
    this.#destroyed = true
    this.#recordKey.fill(0)
  }

  #usable(): void {
    if (this.#destroyed) throw dataKeyDestroyed(this.id)
  }

  #associatedData(place: RecordPlace): Uint8Array {
    const fields = [
      'ward record v1',
      place.organizationId,
      place.table,
      place.recordId,
      this.id,
      this.version,
    ]
    // One field more, itself a JSON list, so that no two lists of columns read alike.
    if (place.clearColumns !== undefined) fields.push(JSON.stringify(place.clearColumns))
    return transientAssociatedData(fields)
  }
}

/**
 * Seals `plaintext` for one record under data key `binding.dataKeyId`, which the keyring
 * serves from its cache or loads from the store. Sealing many records under one key is
 * cheaper through {@link Keyring.dataKey} and {@link DataKey.seal}.
 */
export async function sealRecord(
  tx: Transaction,
  keyring: Keyring,
  binding: RecordBinding,
  plaintext: Uint8Array,
): Promise<Uint8Array> {
  const dataKey = await keyring.dataKey(tx, binding)
  return dataKey.seal(binding, plaintext)
}

/**
 * Opens one sealed record. Checks the store first that its data key has not been destroyed,
 * even when the key is cached; throws `ERR_DATA_KEY_DESTROYED` when it has, and
 * `ERR_RECORD_UNREADABLE` when the bytes do not belong to this row.
 */
export async function openRecord(
  tx: Transaction,
  keyring: Keyring,
  binding: RecordBinding,
  sealed: Uint8Array,
): Promise<Uint8Array> {
  const dataKey = await keyring.dataKey(tx, binding, { recheck: true })
  return dataKey.open(binding, sealed)
}

/** The error for any use of a destroyed data key; the same wherever it is detected. */
export function dataKeyDestroyed(dataKeyId: string): WardError {
  return new WardError(
    'ERR_DATA_KEY_DESTROYED',
    `data key ${dataKeyId} was destroyed; what it sealed cannot be opened`,
    { details: { key: dataKeyId } },
  )
}
