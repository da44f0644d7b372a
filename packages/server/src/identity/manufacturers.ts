import { X509Certificate as NodeCertificate, randomUUID, verify } from 'node:crypto'

import { WardError } from '@ward/core'

import type { Transaction } from '../store/index.js'
import { checkId } from './device-uri.js'
import type { ManufacturerAuthorityTable } from './tables.js'
import {
  isP256PublicKey,
  parseCertificate,
  pemBlocks,
  publicKeyFacts,
  sha256Hex,
  x509,
} from './x509.js'

/** A manufacturer's CA an organization trusts to vouch for its devices' factory identities. */
export interface ManufacturerAuthority {
  readonly id: string
  readonly organizationId: string
  readonly name: string
  readonly subject: string
  /** Lowercase hex, when the certificate has a subject key identifier. */
  readonly subjectKeyIdentifier: string | null
  readonly fingerprintSha256: string
  readonly certificatePem: string
  readonly notBefore: string
  readonly notAfter: string
  readonly createdAt: string
}

/** Who a verified factory certificate says the device is, and who vouched for it. */
export interface FactoryIdentity {
  /**
   * The device serial the factory certificate names: its subject serialNumber attribute, or
   * its common name when it has none. Enrollment compares it with the serial being enrolled.
   */
  readonly deviceSerial: string
  readonly subject: string
  readonly fingerprintSha256: string
  readonly manufacturerAuthorityId: string
  readonly manufacturerName: string
}

/** Most certificates in a factory chain: the factory certificate and up to three CAs above it. */
const maxChainLength = 4
const serialNumberAttribute = '2.5.4.5'

/**
 * Registers a manufacturer's CA certificate as a trust anchor for the organization's factory
 * identities. It must be a CA certificate (basic constraints CA:true and key usage
 * keyCertSign; `ERR_CERTIFICATE_INVALID` otherwise), valid now (`ERR_CERTIFICATE_EXPIRED`),
 * with an ECDSA P-256 or P-384 key or an RSA key of at least 2048 bits
 * (`ERR_KEY_ALGORITHM_UNSUPPORTED`). Registering the same certificate twice is
 * `ERR_AUTHORITY_EXISTS`. The name is for people and must be 1–200 characters without control
 * characters.
 */
export async function registerManufacturerAuthority(
  tx: Transaction,
  input: {
    readonly organizationId: string
    readonly certificatePem: string
    readonly name: string
  },
): Promise<ManufacturerAuthority> {
  checkId(input.organizationId, 'organizationId')
  const name = input.name.trim()
  if (name.length === 0 || name.length > 200 || /\p{Cc}/u.test(name)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      'name must be 1–200 characters without control characters',
      { details: { field: 'name' } },
    )
  }
  const [der] = pemBlocks(input.certificatePem, 'CERTIFICATE', {
    field: 'certificate',
    code: 'ERR_CERTIFICATE_INVALID',
    maxBlocks: 1,
  })
  const certificate = parseCertificate(der as Uint8Array, 'certificate')
  checkCaCertificate(certificate, 'certificate')
  checkValidNow(certificate, 'certificate')
  checkAuthorityKey(certificate)

  const fingerprintSha256 = sha256Hex(certificate.rawData)
  const existing = await tx
    .selectFrom('manufacturer_authorities')
    .select('id')
    .where('organization_id', '=', input.organizationId)
    .where('fingerprint_sha256', '=', fingerprintSha256)
    .executeTakeFirst()
  if (existing !== undefined) {
    throw new WardError(
      'ERR_AUTHORITY_EXISTS',
      `manufacturer CA ${fingerprintSha256} is already registered`,
      { details: { manufacturerAuthority: existing.id } },
    )
  }

  const row: ManufacturerAuthorityTable = {
    id: randomUUID(),
    organization_id: input.organizationId,
    name,
    subject: certificate.subject,
    subject_key_identifier:
      certificate.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId ?? null,
    fingerprint_sha256: fingerprintSha256,
    certificate_pem: `${certificate.toString('pem')}\n`,
    not_before: certificate.notBefore.toISOString(),
    not_after: certificate.notAfter.toISOString(),
    created_at: new Date().toISOString(),
  }
  await tx.insertInto('manufacturer_authorities').values(row).execute()
  return toManufacturerAuthority(row)
}

/** The organization's registered manufacturer CAs, oldest first. */
export async function listManufacturerAuthorities(
  tx: Transaction,
  organizationId: string,
): Promise<ManufacturerAuthority[]> {
  const rows = await tx
    .selectFrom('manufacturer_authorities')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .orderBy('created_at')
    .execute()
  return rows.map(toManufacturerAuthority)
}

/**
 * Checks a factory-provisioned identity: `factoryCertificatePem` is the factory certificate,
 * optionally followed by intermediate CAs, and must chain to one of the organization's
 * registered manufacturer CAs, each certificate signed by the next, every CA with CA:true,
 * keyCertSign and a path length that allows the certificates below it, and every certificate
 * within its validity now (`ERR_CERTIFICATE_UNTRUSTED` or `ERR_CERTIFICATE_EXPIRED`). The factory
 * certificate must not be a CA and must hold an ECDSA P-256 key, and `signatureBase64` must be
 * its ECDSA SHA-256 signature over `signedBytes` (DER, or raw r‖s) (`ERR_SIGNATURE_INVALID`).
 *
 * Manufacturers' CRLs are not consulted: a factory certificate its manufacturer revoked still
 * verifies until the organization removes that manufacturer CA. Registering manufacturer CRLs,
 * checked here, would close that. Replaying a signature gains nothing when `signedBytes` is the
 * device's CSR, since a certificate for that CSR is useless without the device's private key.
 */
export async function verifyFactoryIdentity(
  tx: Transaction,
  input: {
    readonly organizationId: string
    readonly factoryCertificatePem: string
    readonly signatureBase64: string
    readonly signedBytes: Uint8Array
  },
): Promise<FactoryIdentity> {
  const chain = pemBlocks(input.factoryCertificatePem, 'CERTIFICATE', {
    field: 'factoryCertificate',
    code: 'ERR_CERTIFICATE_INVALID',
    maxBlocks: maxChainLength,
  }).map((der) => parseCertificate(der, 'factoryCertificate'))
  const factory = chain[0] as x509.X509Certificate
  const basicConstraints = factory.getExtension(x509.BasicConstraintsExtension)
  if (basicConstraints?.ca === true) {
    throw new WardError('ERR_CERTIFICATE_INVALID', 'factoryCertificate must not be a CA', {
      details: { field: 'factoryCertificate' },
    })
  }
  const keyUsage = factory.getExtension(x509.KeyUsagesExtension)
  if (keyUsage !== null && (keyUsage.usages & x509.KeyUsageFlags.digitalSignature) === 0) {
    throw new WardError(
      'ERR_CERTIFICATE_INVALID',
      'factoryCertificate key usage must allow digitalSignature',
      { details: { field: 'factoryCertificate' } },
    )
  }
  if (!isP256PublicKey(factory.publicKey.rawData)) {
    throw new WardError(
      'ERR_KEY_ALGORITHM_UNSUPPORTED',
      'factoryCertificate key must be ECDSA P-256',
      { details: { field: 'factoryCertificate' } },
    )
  }
  checkValidNow(factory, 'factoryCertificate')

  const anchors = await tx
    .selectFrom('manufacturer_authorities')
    .selectAll()
    .where('organization_id', '=', input.organizationId)
    .execute()
  const anchor = chainToAnchor(chain, anchors)
  checkFactorySignature(factory, input.signatureBase64, input.signedBytes)

  const serial =
    factory.subjectName.getField(serialNumberAttribute)[0] ?? factory.subjectName.getField('CN')[0]
  if (serial === undefined || serial.length === 0) {
    throw new WardError(
      'ERR_CERTIFICATE_INVALID',
      'factoryCertificate subject names no serialNumber or CN',
      { details: { field: 'factoryCertificate' } },
    )
  }
  return {
    deviceSerial: serial,
    subject: factory.subject,
    fingerprintSha256: sha256Hex(factory.rawData),
    manufacturerAuthorityId: anchor.id,
    manufacturerName: anchor.name,
  }
}

/**
 * Walks from the factory certificate up through the supplied CAs until a registered anchor
 * signed the current certificate; returns that anchor.
 */
function chainToAnchor(
  chain: readonly x509.X509Certificate[],
  anchors: readonly ManufacturerAuthorityTable[],
): ManufacturerAuthorityTable {
  const untrusted = () =>
    new WardError(
      'ERR_CERTIFICATE_UNTRUSTED',
      'factoryCertificate does not chain to a registered manufacturer CA',
      { details: { field: 'factoryCertificate' } },
    )
  const anchorCertificates = anchors.map((row) => ({
    row,
    certificate: new x509.X509Certificate(row.certificate_pem),
  }))
  const unused = chain.slice(1)
  let current = chain[0] as x509.X509Certificate
  // CA certificates between the factory certificate and the one being tried, for path lengths.
  let intermediates = 0

  for (let step = 0; step < maxChainLength; step++) {
    const anchor = anchorCertificates.find(({ certificate }) => issued(certificate, current))
    if (anchor !== undefined) {
      checkValidNow(anchor.certificate, 'manufacturer CA')
      checkPathLength(anchor.certificate, intermediates, 'manufacturer CA')
      return anchor.row
    }
    const index = unused.findIndex((candidate) => issued(candidate, current))
    if (index < 0) throw untrusted()
    const next = unused.splice(index, 1)[0] as x509.X509Certificate
    checkCaCertificate(next, 'factoryCertificate chain')
    checkValidNow(next, 'factoryCertificate chain')
    checkPathLength(next, intermediates, 'factoryCertificate chain')
    current = next
    intermediates++
  }
  throw untrusted()
}

/**
 * True when `issuer` issued `subject`: OpenSSL's issuer check (names, key identifiers, the
 * issuer's key usage) and the signature under the issuer's key.
 */
function issued(issuer: x509.X509Certificate, subject: x509.X509Certificate): boolean {
  const issuerCertificate = new NodeCertificate(Buffer.from(issuer.rawData))
  const subjectCertificate = new NodeCertificate(Buffer.from(subject.rawData))
  return (
    subjectCertificate.checkIssued(issuerCertificate) &&
    subjectCertificate.verify(issuerCertificate.publicKey)
  )
}

function checkFactorySignature(
  factory: x509.X509Certificate,
  signatureBase64: string,
  signedBytes: Uint8Array,
): void {
  const text = signatureBase64.trim()
  if (text.length % 4 !== 0 || text.length > 256 || !/^[A-Za-z0-9+/]+={0,2}$/.test(text)) {
    throw new WardError('ERR_SIGNATURE_INVALID', 'factorySignature must be base64', {
      details: { field: 'factorySignature' },
    })
  }
  const signature = Buffer.from(text, 'base64')
  const key = { key: Buffer.from(factory.publicKey.rawData), format: 'der', type: 'spki' } as const
  const verified =
    verify('sha256', signedBytes, { ...key, dsaEncoding: 'der' }, signature) ||
    (signature.length === 64 &&
      verify('sha256', signedBytes, { ...key, dsaEncoding: 'ieee-p1363' }, signature))
  if (!verified) {
    throw new WardError(
      'ERR_SIGNATURE_INVALID',
      'factorySignature does not verify under the factory certificate key',
      { details: { field: 'factorySignature' } },
    )
  }
}

function checkCaCertificate(certificate: x509.X509Certificate, field: string): void {
  const basicConstraints = certificate.getExtension(x509.BasicConstraintsExtension)
  if (basicConstraints?.ca !== true) {
    throw new WardError(
      'ERR_CERTIFICATE_INVALID',
      `${field} must be a CA certificate (basic constraints CA:true)`,
      { details: { field } },
    )
  }
  const keyUsage = certificate.getExtension(x509.KeyUsagesExtension)
  if (keyUsage === null || (keyUsage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw new WardError(
      'ERR_CERTIFICATE_INVALID',
      `${field} must be a CA certificate (key usage keyCertSign)`,
      { details: { field } },
    )
  }
}

function checkPathLength(certificate: x509.X509Certificate, below: number, field: string): void {
  const pathLength = certificate.getExtension(x509.BasicConstraintsExtension)?.pathLength
  if (pathLength !== undefined && below > pathLength) {
    throw new WardError(
      'ERR_CERTIFICATE_UNTRUSTED',
      `${field} path length ${pathLength} does not allow ${below} CAs below it`,
      { details: { field } },
    )
  }
}

function checkValidNow(certificate: x509.X509Certificate, field: string): void {
  const now = new Date()
  if (now < certificate.notBefore || now > certificate.notAfter) {
    throw new WardError('ERR_CERTIFICATE_EXPIRED', `${field} is outside its validity`, {
      details: { field, notAfter: certificate.notAfter.toISOString() },
    })
  }
}

function checkAuthorityKey(certificate: x509.X509Certificate): void {
  const facts = publicKeyFacts(certificate.publicKey.rawData)
  const accepted =
    (facts?.type === 'ec' &&
      (facts.namedCurve === 'prime256v1' || facts.namedCurve === 'secp384r1')) ||
    (facts?.type === 'rsa' && (facts.modulusLength ?? 0) >= 2048)
  if (!accepted) {
    throw new WardError(
      'ERR_KEY_ALGORITHM_UNSUPPORTED',
      'certificate key must be ECDSA P-256 or P-384, or RSA of 2048 bits or more',
      { details: { field: 'certificate' } },
    )
  }
}

function toManufacturerAuthority(row: ManufacturerAuthorityTable): ManufacturerAuthority {
  return {
    id: row.id,
    organizationId: row.organization_id,
    name: row.name,
    subject: row.subject,
    subjectKeyIdentifier: row.subject_key_identifier,
    fingerprintSha256: row.fingerprint_sha256,
    certificatePem: row.certificate_pem,
    notBefore: row.not_before,
    notAfter: row.not_after,
    createdAt: row.created_at,
  }
}
