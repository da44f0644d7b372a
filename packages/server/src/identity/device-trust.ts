import { WardError } from '@ward/core'

import type { KeyWrappingProvider } from '../keys/index.js'
import type { Transaction } from '../store/index.js'
import { currentRootCrl, findOrganizationAuthorities } from './authorities.js'
import { holdReason } from './crl.js'
import { namedDevice } from './device-certificates.js'
import { issuingCrl } from './revocation.js'
import { parseCertificate, sha256Hex } from './x509.js'

/** What the device endpoint's TLS server needs to authenticate one organization's devices. */
export interface DeviceTrust {
  /** PEM certificates to trust for client certificates: the issuing CA, then the root. */
  readonly ca: string[]
  /** PEM CRLs, current now: the issuing CA's (fresh) and the root's. */
  readonly crl: string[]
  /** The earliest nextUpdate of those CRLs: the TLS server must hold newer ones by then. */
  readonly nextUpdate: string
}

/** The device a presented certificate authenticates. */
export interface IdentifiedDevice {
  readonly deviceId: string
  readonly serialNumber: string
  readonly notAfter: string
}

/**
 * The trust anchors and CRLs for the organization's device endpoint, for a TLS server made with
 * `requestCert: true, rejectUnauthorized: true, ca, crl`. Only this organization's CAs are
 * listed, so another organization's device certificate fails the handshake. OpenSSL checks the
 * CRL of every certificate in the chain when given CRLs, hence both CAs' CRLs: a revoked or
 * suspended device certificate fails the handshake, and so would every device if either CRL
 * expired. The endpoint must call this again whenever a certificate of the organization is
 * revoked, suspended or reinstated, and before `nextUpdate`, and swap the result into its TLS
 * context; each call signs a fresh issuing CRL.
 */
export async function deviceTrust(
  tx: Transaction,
  provider: KeyWrappingProvider,
  organizationId: string,
): Promise<DeviceTrust> {
  const authorities = await findOrganizationAuthorities(tx, organizationId)
  const issuing = await issuingCrl(tx, provider, organizationId)
  const root = await currentRootCrl(tx, provider, organizationId)
  return {
    ca: [authorities.issuing.certificatePem, authorities.root.certificatePem],
    crl: [issuing.pem, root.pem],
    nextUpdate: issuing.nextUpdate < root.nextUpdate ? issuing.nextUpdate : root.nextUpdate,
  }
}

/**
 * Maps a certificate presented at the device endpoint to the device it names, for the
 * organization whose endpoint it reached. It must be, byte for byte, a certificate Ward issued
 * for that organization (`ERR_CERTIFICATE_UNTRUSTED` when it names another organization,
 * `ERR_CERTIFICATE_UNKNOWN` otherwise), neither revoked (`ERR_CERTIFICATE_REVOKED`) nor
 * suspended (`ERR_CERTIFICATE_SUSPENDED`), and within its validity now
 * (`ERR_CERTIFICATE_EXPIRED`). The TLS handshake checks chain, dates and CRL too; this check
 * also covers connections that stay open past a revocation or an expiry.
 */
export async function identifyDevice(
  tx: Transaction,
  organizationId: string,
  peerCertificateDer: Uint8Array,
): Promise<IdentifiedDevice> {
  const certificate = parseCertificate(peerCertificateDer, 'client certificate')
  const row = await tx
    .selectFrom('device_certificates')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('fingerprint_sha256', '=', sha256Hex(peerCertificateDer))
    .executeTakeFirst()
  if (row === undefined) {
    const named = namedDevice(certificate)
    if (named !== undefined && named.organizationId !== organizationId) {
      throw new WardError(
        'ERR_CERTIFICATE_UNTRUSTED',
        'client certificate belongs to another organization',
      )
    }
    throw new WardError(
      'ERR_CERTIFICATE_UNKNOWN',
      "client certificate was not issued by this organization's device CA",
    )
  }

  const named = namedDevice(certificate)
  if (named?.organizationId !== organizationId || named.deviceId !== row.device_id) {
    throw new WardError(
      'ERR_CERTIFICATE_UNKNOWN',
      'client certificate does not name the device it was issued to',
    )
  }
  const serial = { serialNumber: row.serial_number }
  if (row.revocation_reason === holdReason) {
    throw new WardError('ERR_CERTIFICATE_SUSPENDED', 'client certificate is suspended', {
      details: serial,
    })
  }
  if (row.revoked_at !== null) {
    throw new WardError('ERR_CERTIFICATE_REVOKED', 'client certificate is revoked', {
      details: serial,
    })
  }
  const now = new Date().toISOString()
  if (now < row.not_before || now > row.not_after) {
    throw new WardError('ERR_CERTIFICATE_EXPIRED', 'client certificate is outside its validity', {
      details: { ...serial, notAfter: row.not_after },
    })
  }
  return { deviceId: row.device_id, serialNumber: row.serial_number, notAfter: row.not_after }
}
