export { LocalKeyFileProvider, type KeyWrappingProvider } from './master-key.js'
export {
  createSigningKey,
  findSigningKey,
  loadNoteSigner,
  type NoteSigner,
  type SigningKeyPurpose,
  type SigningKeyRecord,
} from './signing-keys.js'
