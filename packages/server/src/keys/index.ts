export {
  AuthenticationKeys,
  authenticationCode,
  authenticationCodeMatches,
  masterKeyNeeded,
  type AuthenticationKeyPurpose,
} from './authentication-keys.js'
export {
  createDataKey,
  destroyDataKey,
  findDataKey,
  rewrapDataKeyBatch,
  rewrapDataKeys,
  type DataKeyRecord,
  type RewrapResult,
} from './data-keys.js'
export {
  createKeyEncryptionKey,
  listKeyEncryptionKeys,
  retireKeyEncryptionKeys,
  rotateKeyEncryptionKey,
  type KeyEncryptionKeyRecord,
} from './key-encryption-keys.js'
export { LocalKeyShareStore, type KeyShareStore } from './key-shares.js'
export { Keyring, type KeyringOptions } from './keyring.js'
export { LocalKeyFileProvider, type KeyWrappingProvider } from './master-key.js'
export {
  openRecord,
  sealRecord,
  type DataKey,
  type DataKeyOwner,
  type DataKeyOwnerType,
  type RecordBinding,
  type RecordPlace,
} from './record-sealing.js'
export {
  createSigningKey,
  findSigningKey,
  loadNoteSigner,
  unwrapSigningKey,
  type NoteSigner,
  type SigningKeyPurpose,
  type SigningKeyRecord,
} from './signing-keys.js'
export type { KeyEncryptionKeyState } from './tables.js'
