import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomUUID,
  sign,
  type KeyObject,
} from 'node:crypto'

import { WardError, bytesEqual, noteKeyId } from '@ward/core'

import type { Transaction } from '../store/index.js'
import type { KeyWrappingProvider } from './master-key.js'

/** What a signing key is for; part of the wrapping context, so keys cannot swap roles. */
export type SigningKeyPurpose = 'audit-log' | 'update-snapshot' | 'update-timestamp'

/** The public facts of a signing key. */
export interface SigningKeyRecord {
  readonly id: string
  readonly purpose: SigningKeyPurpose
  readonly algorithm: 'ed25519'
  readonly publicKey: Uint8Array
  readonly provider: string
}

/** Signs C2SP notes under a name; `keyId` is the note key id for that name and key. */
export interface NoteSigner {
  readonly name: string
  readonly keyId: Uint8Array
  readonly publicKey: Uint8Array
  sign(message: Uint8Array): Uint8Array
}

// PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410).
const ed25519Pkcs8Prefix = Buffer.from('302e020100300506032b657004220420', 'hex')

/**
 * Creates an Ed25519 key, stores its private half wrapped by `provider` and returns the public
 * record. The private key exists in clear only in this process's memory.
 */
export async function createSigningKey(
  tx: Transaction,
  provider: KeyWrappingProvider,
  purpose: SigningKeyPurpose,
): Promise<SigningKeyRecord> {
  const id = randomUUID()
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const seed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32)
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32)

  const record: SigningKeyRecord = {
    id,
    purpose,
    algorithm: 'ed25519',
    publicKey: new Uint8Array(raw),
    provider: provider.name,
  }
  await tx
    .insertInto('signing_keys')
    .values({
      id,
      purpose,
      algorithm: record.algorithm,
      public_key: record.publicKey,
      wrapped_private_key: await provider.wrap(seed, wrappingContext(id, purpose)),
      provider: provider.name,
      created_at: new Date().toISOString(),
    })
    .execute()
  seed.fill(0)
  return record
}

/** The public record of signing key `id`. */
export async function findSigningKey(tx: Transaction, id: string): Promise<SigningKeyRecord> {
  const row = await tx
    .selectFrom('signing_keys')
    .select(['id', 'purpose', 'algorithm', 'public_key', 'provider'])
    .where('id', '=', id)
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError('ERR_KEY_UNAVAILABLE', `signing key ${id} does not exist`, {
      details: { key: id },
    })
  }
  return {
    id: row.id,
    purpose: row.purpose as SigningKeyPurpose,
    algorithm: 'ed25519',
    publicKey: new Uint8Array(row.public_key),
    provider: row.provider,
  }
}

/**
 * Unwraps signing key `id` and returns a note signer named `name`. Checks that the unwrapped
 * private key matches the stored public key, so a swapped row cannot sign under a wrong name.
 */
export async function loadNoteSigner(
  tx: Transaction,
  provider: KeyWrappingProvider,
  id: string,
  name: string,
): Promise<NoteSigner> {
  const { privateKey, publicKey } = await unwrapSigningKey(tx, provider, id)
  return {
    name,
    keyId: noteKeyId(name, publicKey),
    publicKey,
    sign: (message) => new Uint8Array(sign(null, message, privateKey)),
  }
}

/**
 * Unwraps signing key `id`, checking that the private key matches the stored public key, and
 * returns both. The private key object lives only in this process's memory.
 */
export async function unwrapSigningKey(
  tx: Transaction,
  provider: KeyWrappingProvider,
  id: string,
): Promise<{ privateKey: KeyObject; publicKey: Uint8Array; purpose: SigningKeyPurpose }> {
  const row = await tx
    .selectFrom('signing_keys')
    .selectAll()
    .where('id', '=', id)
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError('ERR_KEY_UNAVAILABLE', `signing key ${id} does not exist`)
  }
  if (row.provider !== provider.name) {
    throw new WardError('ERR_KEY_UNAVAILABLE', `signing key ${id} is held by ${row.provider}`)
  }
  const purpose = row.purpose as SigningKeyPurpose
  const seed = await provider.unwrap(row.wrapped_private_key, wrappingContext(id, purpose))
  const privateKey = createPrivateKey({
    key: Buffer.concat([ed25519Pkcs8Prefix, seed]),
    format: 'der',
    type: 'pkcs8',
  })
  const derived = new Uint8Array(
    createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(-32),
  )
  if (!bytesEqual(derived, row.public_key)) {
    throw new WardError('ERR_KEY_INVALID', `signing key ${id} does not match its public key`)
  }
  return { privateKey, publicKey: derived, purpose }
}

function wrappingContext(id: string, purpose: SigningKeyPurpose): string {
  return `signing-key ${purpose} ${id}`
}
