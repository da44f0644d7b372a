import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto'

import {
  WardError,
  fromHex,
  isSemanticVersion,
  isTufDate,
  toHex,
  tufCanonicalBytes,
  tufKeyId,
  type TufPublicKey,
} from '@ward/core'

// The four top-level roles of TUF 1.0 and the metadata each signs, as the specification
// names their fields. Ward serves no delegated targets roles.

/** A top-level TUF role. */
export type TufRole = 'root' | 'targets' | 'snapshot' | 'timestamp'

export const tufRoles: readonly TufRole[] = ['root', 'targets', 'snapshot', 'timestamp']

/** The TUF specification version Ward writes; it accepts any 1.0.x. */
export const tufSpecVersion = '1.0.31'

/** One signature over the canonical form of `signed`. */
export interface TufSignature {
  readonly keyid: string
  readonly sig: string
}

/** A metadata file: what is signed and the signatures over it. */
export interface TufEnvelope<T> {
  readonly signatures: readonly TufSignature[]
  readonly signed: T
}

/** The keys a role trusts and how many of them must sign. */
export interface TufRoleKeys {
  readonly keyids: readonly string[]
  readonly threshold: number
}

interface CommonSigned {
  readonly spec_version: string
  readonly version: number
  readonly expires: string
}

export interface RootSigned extends CommonSigned {
  readonly _type: 'root'
  readonly consistent_snapshot: boolean
  readonly keys: Readonly<Record<string, TufPublicKey>>
  readonly roles: Readonly<Record<TufRole, TufRoleKeys>>
}

/**
 * What the device must check beyond TUF's own checks, carried in a target's `custom.ward` and
 * so covered by the targets role's signature.
 */
export interface FirmwareFields {
  readonly version: string
  /** The lowest running version this image may be installed over. */
  readonly minVersion: string
  /** Device model names the image fits. */
  readonly models: readonly string[]
  /** Hardware revisions it fits; empty means every revision of those models. */
  readonly hardwareRevisions: readonly string[]
  readonly notes: string
  /** The software bill of materials published with the image, by hash. */
  readonly sbom?: { readonly length: number; readonly sha256: string }
}

export interface TargetFileInfo {
  readonly length: number
  readonly hashes: { readonly sha256: string }
  readonly custom: { readonly ward: FirmwareFields }
}

export interface TargetsSigned extends CommonSigned {
  readonly _type: 'targets'
  readonly targets: Readonly<Record<string, TargetFileInfo>>
}

export interface MetaFileInfo {
  readonly version: number
}

export interface SnapshotSigned extends CommonSigned {
  readonly _type: 'snapshot'
  readonly meta: { readonly 'targets.json': MetaFileInfo }
}

export interface TimestampSigned extends CommonSigned {
  readonly _type: 'timestamp'
  readonly meta: {
    readonly 'snapshot.json': MetaFileInfo & {
      readonly length: number
      readonly hashes: { readonly sha256: string }
    }
  }
}

/** Something that signs TUF metadata: a key and its id as root lists them. */
export interface TufSigner {
  readonly keyId: string
  readonly publicKey: TufPublicKey
  sign(message: Uint8Array): Uint8Array
}

/** Key types Ward signs and verifies with. */
export type TufKeyAlgorithm = 'ed25519' | 'ecdsa-p256'

/**
 * The TUF public key of a private or public key object: Ed25519 as hex of the raw key, ECDSA
 * P-256 as an SPKI PEM under scheme `ecdsa-sha2-nistp256`, as tuf-js and python-tuf read them.
 */
export function tufPublicKeyOf(key: KeyObject): TufPublicKey {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key
  if (publicKey.asymmetricKeyType === 'ed25519') {
    const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32)
    return { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: toHex(raw) } }
  }
  if (
    publicKey.asymmetricKeyType === 'ec' &&
    publicKey.asymmetricKeyDetails?.namedCurve === 'prime256v1'
  ) {
    const pem = publicKey.export({ format: 'pem', type: 'spki' }).toString()
    return { keytype: 'ecdsa', scheme: 'ecdsa-sha2-nistp256', keyval: { public: pem } }
  }
  throw new WardError('ERR_KEY_ALGORITHM_UNSUPPORTED', 'TUF keys must be Ed25519 or ECDSA P-256', {
    details: { allowed: 'ed25519, ecdsa-p256' },
  })
}

/** A signer for a PKCS#8 PEM private key (Ed25519 or ECDSA P-256). */
export function tufSignerFromPem(privateKeyPem: string): TufSigner {
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey(privateKeyPem)
  } catch (cause) {
    throw new WardError('ERR_KEY_INVALID', 'the private key file is not a PEM private key', {
      cause,
    })
  }
  return tufSignerFromKey(privateKey)
}

/** A signer for a private key object. */
export function tufSignerFromKey(privateKey: KeyObject): TufSigner {
  const publicKey = tufPublicKeyOf(privateKey)
  const digest = publicKey.keytype === 'ed25519' ? null : 'sha256'
  return {
    keyId: tufKeyId(publicKey),
    publicKey,
    sign: (message) => new Uint8Array(sign(digest, message, privateKey)),
  }
}

/** True when `signature` (hex) is `key`'s signature over `message`. */
export function verifyTufSignature(
  key: TufPublicKey,
  message: Uint8Array,
  signature: string,
): boolean {
  try {
    const keyObject =
      key.keytype === 'ed25519'
        ? createPublicKey({
            key: Buffer.concat([ed25519SpkiPrefix, Buffer.from(fromHex(key.keyval.public))]),
            format: 'der',
            type: 'spki',
          })
        : createPublicKey(key.keyval.public)
    const digest = key.keytype === 'ed25519' ? null : 'sha256'
    return verify(digest, message, keyObject, fromHex(signature))
  } catch {
    return false
  }
}

// SubjectPublicKeyInfo for a raw Ed25519 key (RFC 8410).
const ed25519SpkiPrefix = Buffer.from('302a300506032b6570032100', 'hex')

/** Signs `signed` with each signer; the envelope's bytes are its JSON, two-space indented. */
export function signMetadata<T>(signed: T, signers: readonly TufSigner[]): TufEnvelope<T> {
  const message = tufCanonicalBytes(signed)
  return {
    signatures: signers.map((signer) => ({
      keyid: signer.keyId,
      sig: toHex(signer.sign(message)),
    })),
    signed,
  }
}

/** The bytes Ward stores and serves for an envelope. */
export function metadataBytes(envelope: TufEnvelope<unknown>): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(envelope, null, 2)}\n`)
}

/**
 * The key ids of `role` in `root` whose valid signatures `envelope` carries. Signatures by keys
 * the role does not list are ignored, as are repeated key ids.
 */
export function validSigners(
  envelope: TufEnvelope<unknown>,
  root: RootSigned,
  role: TufRole,
): Set<string> {
  const trusted = new Set(root.roles[role].keyids)
  const message = tufCanonicalBytes(envelope.signed)
  const valid = new Set<string>()
  for (const { keyid, sig } of envelope.signatures) {
    const key = root.keys[keyid]
    if (!trusted.has(keyid) || key === undefined || valid.has(keyid)) continue
    if (verifyTufSignature(key, message, sig)) valid.add(keyid)
  }
  return valid
}

/**
 * Checks that `envelope` is signed by at least the threshold of `role`'s keys in `root`;
 * `ERR_SIGNATURE_INVALID` saying how many of how many signed otherwise.
 */
export function checkThreshold(
  envelope: TufEnvelope<unknown>,
  root: RootSigned,
  role: TufRole,
  what: string,
): void {
  const valid = validSigners(envelope, root, role)
  const { threshold } = root.roles[role]
  if (valid.size < threshold) {
    throw new WardError(
      'ERR_SIGNATURE_INVALID',
      `${what} is signed by ${valid.size} of the ${threshold} ${role} keys of root version ` +
        `${root.version} it needs`,
      { details: { file: what, role, valid: valid.size, threshold, rootVersion: root.version } },
    )
  }
}

// Parsing: what publishing accepts, checked field by field so a bad file is refused with the
// field named, never stored. Limits keep one file's cost bounded.
const maxMetadataBytes = 4 * 1024 * 1024
const maxKeys = 64
const maxTargets = 10_000
const targetNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/
const modelPattern = /^\P{Cc}{1,128}$/u
const maxNotesLength = 8192

/** Parses metadata bytes of `role`, checking every field TUF and Ward rely on. */
export function parseMetadata(
  bytes: Uint8Array,
  role: 'root',
  file: string,
): TufEnvelope<RootSigned>
export function parseMetadata(
  bytes: Uint8Array,
  role: 'targets',
  file: string,
): TufEnvelope<TargetsSigned>
export function parseMetadata(
  bytes: Uint8Array,
  role: TufRole,
  file: string,
): TufEnvelope<RootSigned | TargetsSigned>
export function parseMetadata(
  bytes: Uint8Array,
  role: TufRole,
  file: string,
): TufEnvelope<RootSigned | TargetsSigned> {
  if (bytes.length > maxMetadataBytes) {
    throw invalid(file, `is larger than ${maxMetadataBytes} bytes`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    throw invalid(file, 'is not UTF-8 JSON')
  }
  const envelope = object(parsed, file, '$')
  only(envelope, ['signatures', 'signed'], file, '$')
  const signatures = array(envelope['signatures'], file, '$.signatures').map((entry, index) => {
    const signature = object(entry, file, `$.signatures[${index}]`)
    return {
      keyid: hex(signature['keyid'], file, `$.signatures[${index}].keyid`, 64),
      sig: hex(signature['sig'], file, `$.signatures[${index}].sig`),
    }
  })
  if (signatures.length > maxKeys) throw invalid(file, `carries more than ${maxKeys} signatures`)
  const signed = object(envelope['signed'], file, '$.signed')
  checkCommon(signed, role, file)
  // Values TUF's canonical form cannot sign (fractions) are refused here, with their place.
  try {
    tufCanonicalBytes(signed)
  } catch (cause) {
    throw invalid(file, (cause as Error).message)
  }
  if (role === 'root') return { signatures, signed: checkRoot(signed, file) }
  if (role === 'targets') return { signatures, signed: checkTargets(signed, file) }
  throw invalid(file, `${role} metadata is signed by Ward, not published`)
}

function checkCommon(signed: Record<string, unknown>, role: TufRole, file: string): void {
  if (signed['_type'] !== role) throw invalid(file, `$.signed._type must be "${role}"`)
  const spec = signed['spec_version']
  if (typeof spec !== 'string' || !/^1\.0\.\d{1,4}$/.test(spec)) {
    throw invalid(file, '$.signed.spec_version must be 1.0.x')
  }
  const version = signed['version']
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) {
    throw invalid(file, '$.signed.version must be an integer of at least 1')
  }
  const expires = signed['expires']
  if (typeof expires !== 'string' || !isTufDate(expires)) {
    throw invalid(file, '$.signed.expires must be a date written YYYY-MM-DDTHH:MM:SSZ')
  }
}

function checkRoot(signed: Record<string, unknown>, file: string): RootSigned {
  only(
    signed,
    ['_type', 'spec_version', 'version', 'expires', 'consistent_snapshot', 'keys', 'roles'],
    file,
    '$.signed',
  )
  if (signed['consistent_snapshot'] !== true) {
    throw invalid(
      file,
      '$.signed.consistent_snapshot must be true: Ward serves consistent snapshots',
    )
  }
  const keys = object(signed['keys'], file, '$.signed.keys')
  if (Object.keys(keys).length > maxKeys) throw invalid(file, `lists more than ${maxKeys} keys`)
  for (const [keyId, value] of Object.entries(keys)) {
    const path = `$.signed.keys.${keyId}`
    const key = object(value, file, path)
    only(key, ['keytype', 'scheme', 'keyval'], file, path)
    const keyval = object(key['keyval'], file, `${path}.keyval`)
    only(keyval, ['public'], file, `${path}.keyval`)
    const supported =
      (key['keytype'] === 'ed25519' &&
        key['scheme'] === 'ed25519' &&
        typeof keyval['public'] === 'string' &&
        /^[0-9a-f]{64}$/.test(keyval['public'])) ||
      (key['keytype'] === 'ecdsa' &&
        key['scheme'] === 'ecdsa-sha2-nistp256' &&
        typeof keyval['public'] === 'string' &&
        keyval['public'].startsWith('-----BEGIN PUBLIC KEY-----'))
    if (!supported) {
      throw invalid(
        file,
        `${path} must be an ed25519 key (hex) or an ecdsa-sha2-nistp256 key (PEM)`,
      )
    }
    const expected = tufKeyId(key as unknown as TufPublicKey)
    if (keyId !== expected) {
      throw invalid(file, `${path} has key id ${keyId} but its key hashes to ${expected}`)
    }
  }
  const roles = object(signed['roles'], file, '$.signed.roles')
  only(roles, tufRoles, file, '$.signed.roles')
  for (const role of tufRoles) {
    const path = `$.signed.roles.${role}`
    const entry = object(roles[role], file, path)
    only(entry, ['keyids', 'threshold'], file, path)
    const keyids = array(entry['keyids'], file, `${path}.keyids`).map((id, index) =>
      hex(id, file, `${path}.keyids[${index}]`, 64),
    )
    if (new Set(keyids).size !== keyids.length) throw invalid(file, `${path}.keyids repeats a key`)
    for (const id of keyids) {
      if (keys[id] === undefined)
        throw invalid(file, `${path} names key ${id} that keys does not list`)
    }
    const threshold = entry['threshold']
    if (
      typeof threshold !== 'number' ||
      !Number.isSafeInteger(threshold) ||
      threshold < 1 ||
      threshold > keyids.length
    ) {
      throw invalid(file, `${path}.threshold must be between 1 and the number of its keys`)
    }
  }
  return signed as unknown as RootSigned
}

function checkTargets(signed: Record<string, unknown>, file: string): TargetsSigned {
  if ('delegations' in signed) {
    throw invalid(file, '$.signed.delegations: Ward serves no delegated targets roles')
  }
  only(signed, ['_type', 'spec_version', 'version', 'expires', 'targets'], file, '$.signed')
  const targets = object(signed['targets'], file, '$.signed.targets')
  if (Object.keys(targets).length > maxTargets) {
    throw invalid(file, `lists more than ${maxTargets} targets`)
  }
  for (const [name, value] of Object.entries(targets)) {
    const path = `$.signed.targets.${name}`
    if (!targetNamePattern.test(name)) {
      throw invalid(file, `${path}: a target name is 1 to 128 of A-Z a-z 0-9 . _ - and no /`)
    }
    const target = object(value, file, path)
    only(target, ['length', 'hashes', 'custom'], file, path)
    count(target['length'], file, `${path}.length`)
    const hashes = object(target['hashes'], file, `${path}.hashes`)
    only(hashes, ['sha256'], file, `${path}.hashes`)
    hex(hashes['sha256'], file, `${path}.hashes.sha256`, 64)
    const custom = object(target['custom'], file, `${path}.custom`)
    only(custom, ['ward'], file, `${path}.custom`)
    checkFirmwareFields(
      object(custom['ward'], file, `${path}.custom.ward`),
      file,
      `${path}.custom.ward`,
    )
  }
  return signed as unknown as TargetsSigned
}

function checkFirmwareFields(fields: Record<string, unknown>, file: string, path: string): void {
  only(
    fields,
    ['version', 'minVersion', 'models', 'hardwareRevisions', 'notes', 'sbom'],
    file,
    path,
  )
  for (const name of ['version', 'minVersion']) {
    const value = fields[name]
    if (typeof value !== 'string' || !isSemanticVersion(value)) {
      throw invalid(file, `${path}.${name} must be a semantic version such as 1.2.0`)
    }
  }
  const models = array(fields['models'], file, `${path}.models`)
  if (models.length === 0 || models.length > 64) {
    throw invalid(file, `${path}.models must name 1 to 64 device models`)
  }
  const revisions = array(fields['hardwareRevisions'], file, `${path}.hardwareRevisions`)
  if (revisions.length > 64) throw invalid(file, `${path}.hardwareRevisions lists more than 64`)
  for (const [index, value] of [...models, ...revisions].entries()) {
    if (typeof value !== 'string' || !modelPattern.test(value)) {
      throw invalid(file, `${path}: model ${index} is not 1 to 128 printable characters`)
    }
  }
  if (typeof fields['notes'] !== 'string' || fields['notes'].length > maxNotesLength) {
    throw invalid(file, `${path}.notes must be text of at most ${maxNotesLength} characters`)
  }
  if (fields['sbom'] !== undefined) {
    const sbom = object(fields['sbom'], file, `${path}.sbom`)
    only(sbom, ['length', 'sha256'], file, `${path}.sbom`)
    count(sbom['length'], file, `${path}.sbom.length`)
    hex(sbom['sha256'], file, `${path}.sbom.sha256`, 64)
  }
}

function object(value: unknown, file: string, path: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(file, `${path} must be an object`)
  }
  return value as Record<string, unknown>
}

function array(value: unknown, file: string, path: string): unknown[] {
  if (!Array.isArray(value)) throw invalid(file, `${path} must be an array`)
  return value
}

function only(
  value: Record<string, unknown>,
  allowed: readonly string[],
  file: string,
  path: string,
) {
  for (const name of Object.keys(value)) {
    if (!allowed.includes(name)) {
      throw invalid(file, `${path}.${name} is not allowed here (allowed: ${allowed.join(', ')})`)
    }
  }
}

function hex(value: unknown, file: string, path: string, length?: number): string {
  if (
    typeof value !== 'string' ||
    !/^[0-9a-f]*$/.test(value) ||
    value.length === 0 ||
    value.length % 2 !== 0 ||
    value.length > 1024 ||
    (length !== undefined && value.length !== length)
  ) {
    throw invalid(
      file,
      `${path} must be lowercase hex${length === undefined ? '' : ` of ${length} digits`}`,
    )
  }
  return value
}

function count(value: unknown, file: string, path: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalid(file, `${path} must be a non-negative integer`)
  }
  return value
}

function invalid(file: string, reason: string): WardError {
  return new WardError('ERR_UPDATE_METADATA_INVALID', `${file}: ${reason}`, {
    details: { file },
  })
}
