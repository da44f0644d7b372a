import { WardError } from '@ward/core'

import { associatedData, openBytes, sealBytes } from './aead.js'
import type { DataKeyOwner } from './record-sealing.js'

/** Everything a data key's wrapped half is bound to. */
export interface DataKeyWrapping extends DataKeyOwner {
  readonly id: string
  readonly version: number
  readonly keyEncryptionKeyVersion: number
}

/**
 * Wraps a data key's database half under a key-encryption key with AES-256-GCM. The
 * associated data binds organization, data key id, owner, data key version and the
 * key-encryption key version, so a wrapped half moved to another row does not unwrap.
 */
export function wrapDataKeyHalf(
  keyEncryptionKey: Uint8Array,
  half: Uint8Array,
  wrapping: DataKeyWrapping,
): Uint8Array {
  return sealBytes(keyEncryptionKey, half, wrappingData(wrapping))
}

/** Reverses {@link wrapDataKeyHalf}; throws `ERR_KEY_INVALID` when the bytes do not match. */
export function unwrapDataKeyHalf(
  keyEncryptionKey: Uint8Array,
  wrapped: Uint8Array,
  wrapping: DataKeyWrapping,
): Uint8Array {
  const half = openBytes(keyEncryptionKey, wrapped, wrappingData(wrapping))
  if (half === undefined) {
    throw new WardError(
      'ERR_KEY_INVALID',
      `data key ${wrapping.id} does not unwrap under key-encryption key version ${wrapping.keyEncryptionKeyVersion}`,
      { details: { key: wrapping.id, version: wrapping.keyEncryptionKeyVersion } },
    )
  }
  return half
}

function wrappingData(wrapping: DataKeyWrapping): Uint8Array {
  return associatedData([
    'ward data key v1',
    wrapping.organizationId,
    wrapping.id,
    wrapping.ownerType,
    wrapping.ownerId,
    wrapping.version,
    wrapping.keyEncryptionKeyVersion,
  ])
}
