import { X509Certificate as NodeCertificate, randomUUID, verify } from 'node:crypto'

import { WardError } from '@ward/core'

import { authenticationCode, authenticationCodeMatches } from '../keys/index.js'
import type { Transaction } from '../store/index.js'
import { checkId } from './device-uri.js'
import {
  checkThisUpdate,
  parseManufacturerCrl,
  mayNotSignCrl,
  signedBy,
  storedManufacturerCrl,
} from './manufacturer-crl.js'
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
  /**
   * Whether the row passed its authentication check (see {@link manufacturerAuthorityCode}).
   * A row that did not is never trusted; its other fields are as the database holds them.
   */
  readonly authentic: boolean
  /** The manufacturer's CRL Ward holds for this CA, when one was uploaded. */
  readonly crl: ManufacturerCrlFacts | null
}

/** The facts of a manufacturer CRL Ward holds. */
export interface ManufacturerCrlFacts {
  /** The CRL number, in decimal: it may be up to 20 octets long. */
  readonly number: string
  readonly thisUpdate: string
  readonly nextUpdate: string
  readonly uploadedAt: string
}

/** What the manufacturer's CRL said about a factory identity when it was checked. */
export interface FactoryRevocationCheck {
  /**
   * `current`: a CRL within its validity does not list the certificate; `stale`: the CRL
   * Ward holds does not list it, but its nextUpdate has passed, so a newer one may; `none`: no
   * CRL was uploaded for the manufacturer CA.
   */
  readonly status: 'current' | 'stale' | 'none'
  readonly crlNumber?: string
  readonly nextUpdate?: string
  /** The serial (lowercase hex) of the certificate checked: the one the registered CA signed. */
  readonly certificateSerial: string
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
  readonly revocation: FactoryRevocationCheck
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
 * characters. The row is stored with its authentication code under `key`, the organization's
 * manufacturer-authority authentication key.
 */
export async function registerManufacturerAuthority(
  tx: Transaction,
  key: Uint8Array,
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

  const unkeyed: ManufacturerAuthorityTable = {
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
    crl_der: null,
    crl_number: null,
    crl_this_update: null,
    crl_next_update: null,
    crl_uploaded_at: null,
    mac: null,
  }
  const row = { ...unkeyed, mac: manufacturerAuthorityCode(key, unkeyed) }
  await tx.insertInto('manufacturer_authorities').values(row).execute()
  return toManufacturerAuthority(row, true)
}

/**
 * The organization's registered manufacturer CAs, oldest first, each checked against its
 * authentication code under `key`: one that fails (`authentic: false`) was written or changed
 * by somebody without the master key, and nothing trusts it.
 */
export async function listManufacturerAuthorities(
  tx: Transaction,
  key: Uint8Array,
  organizationId: string,
): Promise<ManufacturerAuthority[]> {
  const rows = await tx
    .selectFrom('manufacturer_authorities')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .orderBy('created_at')
    .execute()
  return rows.map((row) => toManufacturerAuthority(row, isAuthentic(key, row)))
}

/** What {@link uploadManufacturerCrl} stored. */
export interface ManufacturerCrlUpload {
  /** The manufacturer's CAs the CRL was stored with: each that signed it. */
  readonly authorities: readonly ManufacturerAuthority[]
  readonly number: string
  readonly thisUpdate: string
  readonly nextUpdate: string
  /** How many certificates it lists. */
  readonly entries: number
  /** True when its nextUpdate has already passed: it is stored, but is stale from the start. */
  readonly stale: boolean
}

/**
 * Stores manufacturer `name`'s CRL (PEM or DER) with each of the organization's registered
 * CAs of that name that signed it, replacing the CRL held before. Refuses, naming why: a CRL
 * that is not well formed (see `parseManufacturerCrl`: `ERR_CRL_INVALID`, or
 * `ERR_PAYLOAD_TOO_LARGE`); no authentic CA of that name (`ERR_AUTHORITY_NOT_FOUND`); a CRL
 * none of them signed (`ERR_SIGNATURE_INVALID`); a thisUpdate in the future (`ERR_CRL_INVALID`);
 * and a CRL number lower than the one stored, a rollback (`ERR_CRL_ROLLBACK`, naming both), or
 * equal to it on a different CRL (`ERR_CRL_ROLLBACK` too). The same CRL again is accepted. Each row is stored with a fresh authentication code under `key`.
 */
export async function uploadManufacturerCrl(
  tx: Transaction,
  key: Uint8Array,
  input: {
    readonly organizationId: string
    readonly name: string
    readonly crl: string | Uint8Array
    readonly now?: Date
  },
): Promise<ManufacturerCrlUpload> {
  const now = input.now ?? new Date()
  const crl = parseManufacturerCrl(input.crl)
  const rows = await tx
    .selectFrom('manufacturer_authorities')
    .selectAll()
    .where('organization_id', '=', input.organizationId)
    .where('name', '=', input.name.trim())
    .orderBy('created_at')
    .execute()
  const candidates = rows.filter((row) => isAuthentic(key, row))
  if (candidates.length === 0) {
    const tampered = rows.length - candidates.length
    throw new WardError(
      'ERR_AUTHORITY_NOT_FOUND',
      tampered === 0
        ? 'no manufacturer CA of that name is registered in this organization'
        : `no trusted manufacturer CA of that name: ${tampered} failed its integrity check (a security alert was recorded)`,
      { details: { field: 'name' } },
    )
  }
  const signers: ManufacturerAuthorityTable[] = []
  for (const row of candidates) {
    if (await signedBy(crl, new x509.X509Certificate(row.certificate_pem))) signers.push(row)
  }
  if (signers.length === 0) {
    const named = candidates.find((row) =>
      mayNotSignCrl(crl, new x509.X509Certificate(row.certificate_pem)),
    )
    if (named !== undefined) {
      throw new WardError(
        'ERR_SIGNATURE_INVALID',
        `the manufacturer CA ${crl.crl.issuer} may not sign CRLs: its key usage lacks cRLSign, ` +
          'so Ward takes no CRL of it; register a CA certificate whose key usage allows it',
        { details: { field: 'crl' } },
      )
    }
    throw new WardError(
      'ERR_SIGNATURE_INVALID',
      `crl is not signed by a registered CA of manufacturer ${input.name.trim()} ` +
        `(its issuer is ${crl.crl.issuer})`,
      { details: { field: 'crl' } },
    )
  }
  checkThisUpdate(crl, now)
  for (const row of signers) {
    if (row.crl_number !== null && crl.number < BigInt(row.crl_number)) {
      throw new WardError(
        'ERR_CRL_ROLLBACK',
        `crl number ${crl.number} is lower than the stored CRL's number ${row.crl_number}: ` +
          'refusing a rollback to an older CRL',
        {
          details: {
            field: 'crl',
            crlNumber: crl.number.toString(),
            storedCrlNumber: row.crl_number,
          },
        },
      )
    }
    // RFC 5280 numbers each CRL an issuer signs anew: another CRL under the stored number is
    // not a newer one, whatever it lists.
    const stored = row.crl_der === null ? undefined : Buffer.from(row.crl_der)
    if (
      row.crl_number !== null &&
      crl.number === BigInt(row.crl_number) &&
      stored !== undefined &&
      !stored.equals(Buffer.from(crl.der))
    ) {
      throw new WardError(
        'ERR_CRL_ROLLBACK',
        `crl number ${crl.number} is the stored CRL's number, but the CRL differs: ` +
          'a newer CRL carries a higher number',
        {
          details: {
            field: 'crl',
            crlNumber: crl.number.toString(),
            storedCrlNumber: row.crl_number,
          },
        },
      )
    }
  }

  const uploadedAt = now.toISOString()
  const stored: ManufacturerAuthority[] = []
  for (const row of signers) {
    const unkeyed: ManufacturerAuthorityTable = {
      ...row,
      crl_der: crl.der,
      crl_number: crl.number.toString(),
      crl_this_update: crl.thisUpdate.toISOString(),
      crl_next_update: crl.nextUpdate.toISOString(),
      crl_uploaded_at: uploadedAt,
    }
    const mac = manufacturerAuthorityCode(key, unkeyed)
    const { id, organization_id, ...changed } = { ...unkeyed, mac }
    await tx
      .updateTable('manufacturer_authorities')
      .set({
        crl_der: changed.crl_der,
        crl_number: changed.crl_number,
        crl_this_update: changed.crl_this_update,
        crl_next_update: changed.crl_next_update,
        crl_uploaded_at: changed.crl_uploaded_at,
        mac: changed.mac,
      })
      .where('id', '=', id)
      .where('organization_id', '=', organization_id)
      .execute()
    stored.push(toManufacturerAuthority({ ...unkeyed, mac }, true))
  }
  return {
    authorities: stored,
    number: crl.number.toString(),
    thisUpdate: crl.thisUpdate.toISOString(),
    nextUpdate: crl.nextUpdate.toISOString(),
    entries: crl.entries,
    stale: crl.nextUpdate.getTime() < now.getTime(),
  }
}

/**
 * The authentication code of a manufacturer CA row: HMAC-SHA-256 under the organization's
 * manufacturer-authority key over every column — certificate, name, facts and the CRL held —
 * bound to its organization and id, so a row inserted, edited, or copied from another
 * organization or row fails its check.
 */
export function manufacturerAuthorityCode(
  key: Uint8Array,
  row: ManufacturerAuthorityTable,
): Uint8Array {
  return authenticationCode(key, manufacturerAuthorityFields(row))
}

function manufacturerAuthorityFields(row: ManufacturerAuthorityTable) {
  return [
    'manufacturer-authority v1',
    row.organization_id,
    row.id,
    row.name,
    row.subject,
    row.subject_key_identifier,
    row.fingerprint_sha256,
    row.certificate_pem,
    row.not_before,
    row.not_after,
    row.created_at,
    row.crl_der === null ? null : Buffer.from(row.crl_der).toString('base64'),
    row.crl_number,
    row.crl_this_update,
    row.crl_next_update,
    row.crl_uploaded_at,
  ]
}

function isAuthentic(key: Uint8Array, row: ManufacturerAuthorityTable): boolean {
  return authenticationCodeMatches(
    key,
    manufacturerAuthorityFields(row),
    row.mac === null ? null : new Uint8Array(row.mac),
  )
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
 * Only manufacturer CA rows that pass their authentication check under `key` are anchors. Then
 * the manufacturer's CRL, when one was uploaded for the anchor, must not list the certificate
 * the anchor signed (`ERR_CERTIFICATE_REVOKED`, said only after the signature verified, to the
 * holder of the factory key); `revocation` says whether that CRL was current, stale or absent,
 * for the caller's policy. The anchor's CRL speaks only for certificates the anchor itself
 * issued: with intermediate CAs in the chain it can revoke the intermediate, and the
 * intermediates' own CRLs, which would speak for the factory certificate, are not consulted.
 *
 * Replaying a signature gains nothing when `signedBytes` is the device's CSR, since a
 * certificate for that CSR is useless without the device's private key.
 */
export async function verifyFactoryIdentity(
  tx: Transaction,
  key: Uint8Array,
  input: {
    readonly organizationId: string
    readonly factoryCertificatePem: string
    readonly signatureBase64: string
    readonly signedBytes: Uint8Array
    readonly now?: Date
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
  const { anchor, issuedByAnchor } = chainToAnchor(
    chain,
    anchors.filter((row) => isAuthentic(key, row)),
  )
  checkFactorySignature(factory, input.signatureBase64, input.signedBytes)
  const revocation = checkRevocation(anchor, issuedByAnchor, input.now ?? new Date())

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
    revocation,
  }
}

/** Checks `certificate`, which `anchor` issued, against the CRL stored with the anchor. */
function checkRevocation(
  anchor: ManufacturerAuthorityTable,
  certificate: x509.X509Certificate,
  now: Date,
): FactoryRevocationCheck {
  const certificateSerial = certificate.serialNumber.toLowerCase()
  if (anchor.crl_der === null || anchor.crl_number === null || anchor.crl_next_update === null) {
    return { status: 'none', certificateSerial }
  }
  const crl = storedManufacturerCrl(new Uint8Array(anchor.crl_der))
  if (crl.findRevoked(certificate) !== null) {
    throw new WardError(
      'ERR_CERTIFICATE_REVOKED',
      `factoryCertificate is revoked by its manufacturer (serial ${certificateSerial} is on ` +
        `CRL number ${anchor.crl_number})`,
      {
        details: {
          field: 'factoryCertificate',
          serialNumber: certificateSerial,
          crlNumber: anchor.crl_number,
        },
      },
    )
  }
  return {
    status: Date.parse(anchor.crl_next_update) < now.getTime() ? 'stale' : 'current',
    crlNumber: anchor.crl_number,
    nextUpdate: anchor.crl_next_update,
    certificateSerial,
  }
}

/**
 * Walks from the factory certificate up through the supplied CAs until a registered anchor
 * signed the current certificate; returns that anchor and the certificate it signed.
 */
function chainToAnchor(
  chain: readonly x509.X509Certificate[],
  anchors: readonly ManufacturerAuthorityTable[],
): { anchor: ManufacturerAuthorityTable; issuedByAnchor: x509.X509Certificate } {
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
      return { anchor: anchor.row, issuedByAnchor: current }
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

function toManufacturerAuthority(
  row: ManufacturerAuthorityTable,
  authentic: boolean,
): ManufacturerAuthority {
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
    authentic,
    crl:
      row.crl_number === null ||
      row.crl_this_update === null ||
      row.crl_next_update === null ||
      row.crl_uploaded_at === null
        ? null
        : {
            number: row.crl_number,
            thisUpdate: row.crl_this_update,
            nextUpdate: row.crl_next_update,
            uploadedAt: row.crl_uploaded_at,
          },
  }
}
