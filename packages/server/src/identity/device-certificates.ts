import { WardError } from '@ward/core'

import type { KeyWrappingProvider } from '../keys/index.js'
import type { Transaction } from '../store/index.js'
import { loadAuthoritySigner } from './authorities.js'
import { holdReason, type RevocationReason } from './crl.js'
import { checkCertificateRequest } from './csr.js'
import { checkId, deviceUri, parseDeviceUri, type DeviceName } from './device-uri.js'
import type { DeviceCertificateTable } from './tables.js'
import {
  addDays,
  backdateMs,
  clientAuthUsage,
  ecdsaSha256,
  randomSerialNumber,
  sha256Hex,
  x509,
  x509Crypto,
} from './x509.js'

/** Where a device certificate stands. Expiry is not a status: compare `notAfter` with now. */
export type CertificateStatus = 'active' | 'suspended' | 'revoked'

/** The public facts of one device certificate Ward issued. */
export interface DeviceCertificate {
  readonly organizationId: string
  /** Canonical lowercase hex of the certificate's serial number. */
  readonly serialNumber: string
  readonly deviceId: string
  /** The device's own serial, the certificate's subject common name. */
  readonly deviceSerial: string
  /** Lowercase hex SHA-256 of the certificate's DER. */
  readonly fingerprintSha256: string
  /** Lowercase hex SHA-256 of the certified key's SubjectPublicKeyInfo. */
  readonly publicKeySha256: string
  readonly notBefore: string
  readonly notAfter: string
  readonly certificatePem: string
  readonly issuedAt: string
  readonly status: CertificateStatus
  /** When it was revoked or suspended; `null` while active. */
  readonly revokedAt: string | null
  /** Why it was revoked; `null` unless `status` is `revoked`. */
  readonly revocationReason: RevocationReason | null
}

/** A freshly issued certificate with the chain the device installs. */
export interface IssuedDeviceCertificate extends DeviceCertificate {
  /** PEM: the device certificate, then the issuing CA's. */
  readonly chainPem: string
}

/** What to certify: the device, its serial, its CSR and how many days the certificate lasts. */
export interface DeviceCertificateRequest {
  readonly organizationId: string
  readonly deviceId: string
  /** The device's own serial, 1–64 letters, digits, `.`, `_`, `-`, `:`; the certificate's CN. */
  readonly serial: string
  readonly csrPem: string
  /** 1–825; default 365. The certificate never outlives the issuing CA. */
  readonly validityDays?: number
}

/** Validity dates set by hand instead of from `validityDays`. */
export interface ValidityOverride {
  readonly notBefore: Date
  readonly notAfter: Date
}

const serialPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/
const maxValidityDays = 825

/**
 * Certifies the key in a device's CSR with the organization's issuing CA. The CSR must carry an
 * ECDSA P-256 key and a valid self-signature; everything else it asks for is ignored. The
 * certificate has subject `CN=<serial>`, the URI SAN {@link deviceUri}, extended key usage
 * clientAuth only, key usage digitalSignature, basic constraints CA:false, subject and authority
 * key identifiers and a random 128-bit serial number, and is valid from five minutes ago for
 * `validityDays`. It is recorded, and returned with the chain to install.
 *
 * Renewal is another call for the same device: earlier certificates stay valid until they
 * expire or are revoked, so a device switches when it is ready. A key already certified for
 * another device is refused (`ERR_CSR_INVALID`), so two devices can never share an identity.
 */
export async function issueDeviceCertificate(
  tx: Transaction,
  provider: KeyWrappingProvider,
  request: DeviceCertificateRequest,
): Promise<IssuedDeviceCertificate> {
  const validityDays = request.validityDays ?? 365
  if (!Number.isInteger(validityDays) || validityDays < 1 || validityDays > maxValidityDays) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `validityDays must be a whole number from 1 to ${maxValidityDays}`,
      { details: { field: 'validityDays' } },
    )
  }
  const now = new Date()
  return issue(tx, provider, request, {
    notBefore: new Date(now.getTime() - backdateMs),
    notAfter: addDays(now, validityDays),
  })
}

/**
 * {@link issueDeviceCertificate} with validity dates chosen by the caller, which may lie in the
 * past. Tests use it to make expired and not-yet-valid certificates. The identity domain's
 * `index.ts` does not export it, so no route or other domain can pick a certificate's dates.
 */
export async function issueDeviceCertificateWithValidity(
  tx: Transaction,
  provider: KeyWrappingProvider,
  request: DeviceCertificateRequest,
  validity: ValidityOverride,
): Promise<IssuedDeviceCertificate> {
  if (!(validity.notBefore < validity.notAfter)) {
    throw new WardError('ERR_INPUT_INVALID', 'notBefore must be earlier than notAfter', {
      details: { field: 'notBefore' },
    })
  }
  return issue(tx, provider, request, validity)
}

async function issue(
  tx: Transaction,
  provider: KeyWrappingProvider,
  request: DeviceCertificateRequest,
  validity: ValidityOverride,
): Promise<IssuedDeviceCertificate> {
  checkId(request.organizationId, 'organizationId')
  checkId(request.deviceId, 'deviceId')
  if (!serialPattern.test(request.serial)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      'serial must be 1–64 letters, digits, ".", "_", "-" or ":", starting with a letter or digit',
      { details: { field: 'serial' } },
    )
  }
  const { publicKey } = await checkCertificateRequest(request.csrPem)
  const publicKeySha256 = sha256Hex(publicKey.rawData)

  const holders = await tx
    .selectFrom('device_certificates')
    .select('device_id')
    .where('organization_id', '=', request.organizationId)
    .where('public_key_sha256', '=', publicKeySha256)
    .where('device_id', '<>', request.deviceId)
    .executeTakeFirst()
  if (holders !== undefined) {
    throw new WardError('ERR_CSR_INVALID', 'csr key is already certified for another device', {
      details: { field: 'csr' },
    })
  }

  const issuer = await loadAuthoritySigner(tx, provider, request.organizationId, 'issuing')
  if (publicKeySha256 === sha256Hex(issuer.certificate.publicKey.rawData)) {
    throw new WardError('ERR_CSR_INVALID', 'csr key is the issuing CA key', {
      details: { field: 'csr' },
    })
  }
  const notAfter =
    validity.notAfter < issuer.certificate.notAfter
      ? validity.notAfter
      : issuer.certificate.notAfter

  const certificate = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerialNumber(),
      subject: new x509.Name([{ CN: [{ utf8String: request.serial }] }]),
      issuer: issuer.certificate.subjectName,
      notBefore: validity.notBefore,
      notAfter,
      signingAlgorithm: ecdsaSha256,
      publicKey,
      signingKey: issuer.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([clientAuthUsage], false),
        new x509.SubjectAlternativeNameExtension(
          [{ type: 'url', value: deviceUri(request.organizationId, request.deviceId) }],
          false,
        ),
        await x509.SubjectKeyIdentifierExtension.create(publicKey, false, x509Crypto),
        new x509.AuthorityKeyIdentifierExtension(issuer.subjectKeyIdentifier),
      ],
    },
    x509Crypto,
  )

  const row: DeviceCertificateTable = {
    organization_id: request.organizationId,
    serial_number: certificate.serialNumber,
    issuer_id: issuer.authority.id,
    device_id: request.deviceId,
    device_serial: request.serial,
    fingerprint_sha256: sha256Hex(certificate.rawData),
    public_key_sha256: publicKeySha256,
    not_before: certificate.notBefore.toISOString(),
    not_after: certificate.notAfter.toISOString(),
    certificate_pem: `${certificate.toString('pem')}\n`,
    issued_at: new Date().toISOString(),
    revoked_at: null,
    revocation_reason: null,
  }
  await tx.insertInto('device_certificates').values(row).execute()
  return {
    ...toDeviceCertificate(row),
    chainPem: row.certificate_pem + issuer.authority.certificatePem,
  }
}

/** Every certificate issued to the device, oldest first. */
export async function listDeviceCertificates(
  tx: Transaction,
  organizationId: string,
  deviceId: string,
): Promise<DeviceCertificate[]> {
  const rows = await tx
    .selectFrom('device_certificates')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('device_id', '=', deviceId)
    .orderBy('issued_at')
    .execute()
  return rows.map(toDeviceCertificate)
}

/** The device a certificate names, when the only URI in its SAN is a Ward device URI. */
export function namedDevice(certificate: x509.X509Certificate): DeviceName | undefined {
  const extension = certificate.getExtension(x509.SubjectAlternativeNameExtension)
  const uris = (extension?.names.items ?? [])
    .filter((name) => name.type === 'url')
    .map((name) => parseDeviceUri(name.value))
  const [only] = uris
  return uris.length === 1 ? only : undefined
}

/** The public record of a device certificate row. */
export function toDeviceCertificate(row: DeviceCertificateTable): DeviceCertificate {
  const status: CertificateStatus =
    row.revoked_at === null
      ? 'active'
      : row.revocation_reason === holdReason
        ? 'suspended'
        : 'revoked'
  return {
    organizationId: row.organization_id,
    serialNumber: row.serial_number,
    deviceId: row.device_id,
    deviceSerial: row.device_serial,
    fingerprintSha256: row.fingerprint_sha256,
    publicKeySha256: row.public_key_sha256,
    notBefore: row.not_before,
    notAfter: row.not_after,
    certificatePem: row.certificate_pem,
    issuedAt: row.issued_at,
    status,
    revokedAt: row.revoked_at,
    revocationReason: status === 'revoked' ? (row.revocation_reason as RevocationReason) : null,
  }
}
