/** The keys domain's tables, as Kysely sees them; see `store/schema.ts` for conventions. */
export interface KeysTables {
  key_encryption_keys: KeyEncryptionKeyTable
  data_keys: DataKeyTable
  authentication_keys: AuthenticationKeyTable
}

/** Where a key-encryption key stands in its organization's rotation. */
export type KeyEncryptionKeyState = 'active' | 'superseded' | 'retired'

/**
 * keys: one version of an organization's key-encryption key, wrapped by the master key under
 * a context naming the organization and the version. Exactly one version per organization is
 * `active` and wraps new data keys; `superseded` versions still open the data keys not yet
 * rewrapped; a `retired` version opens nothing and its wrapped bytes are gone (null).
 */
export interface KeyEncryptionKeyTable {
  organization_id: string
  version: number
  state: KeyEncryptionKeyState
  provider: string
  wrapped_key: Uint8Array | null
  created_at: string
  retired_at: string | null
}

/**
 * keys: one data key, the key that seals one owner's records (a patient's identity and
 * readings). `wrapped_key` is its database half, wrapped under the organization's
 * key-encryption key of version `key_encryption_key_version`; its other half lives in the key
 * share store, outside the database. A destroyed key keeps its row, with the wrapped bytes
 * overwritten, so that the destruction itself stays on record.
 */
export interface DataKeyTable {
  id: string
  organization_id: string
  owner_type: string
  owner_id: string
  version: number
  key_encryption_key_version: number
  wrapped_key: Uint8Array
  created_at: string
  rewrapped_at: string | null
  destroyed_at: string | null
  destruction_reason: string | null
}

/**
 * keys: an organization's key for authenticating one kind of row (`purpose`, see
 * `AuthenticationKeys`), wrapped by the master key under a context naming the purpose and the
 * organization.
 */
export interface AuthenticationKeyTable {
  organization_id: string
  purpose: string
  provider: string
  wrapped_key: Uint8Array
  created_at: string
}
