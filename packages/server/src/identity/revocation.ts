import { WardError } from '@ward/core'

import type { KeyWrappingProvider } from '../keys/index.js'
import type { Transaction } from '../store/index.js'
import { findAuthorityRow, loadAuthoritySigner, nextCrlNumber } from './authorities.js'
import {
  holdReason,
  revocationReasons,
  signCrl,
  type CertificateRevocationList,
  type RevocationReason,
} from './crl.js'
import { toDeviceCertificate, type DeviceCertificate } from './device-certificates.js'
import { addDays, backdateMs, canonicalSerialNumber } from './x509.js'

/**
 * How long an issuing CA's CRL is valid. The device endpoint is its only relying party and
 * fetches a fresh one whenever revocations change, so this only bounds how long a stale copy
 * could be trusted if that stopped happening.
 */
export const issuingCrlLifetimeDays = 7

/**
 * Revokes one certificate of the organization for good, listing it on every CRL from now on.
 * A suspended certificate becomes revoked; one already revoked keeps its first date and reason.
 * `ERR_NOT_FOUND` when the organization has no certificate with that serial number.
 */
export async function revokeCertificate(
  tx: Transaction,
  input: {
    readonly organizationId: string
    readonly serialNumber: string
    readonly reason: RevocationReason
  },
): Promise<DeviceCertificate> {
  checkReason(input.reason)
  const serialNumber = canonicalSerialNumber(input.serialNumber)
  const row = await tx
    .selectFrom('device_certificates')
    .selectAll()
    .where('organization_id', '=', input.organizationId)
    .where('serial_number', '=', serialNumber)
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError('ERR_NOT_FOUND', `no certificate with serial number ${serialNumber}`, {
      details: { serialNumber },
    })
  }
  if (row.revoked_at !== null && row.revocation_reason !== holdReason) {
    return toDeviceCertificate(row)
  }
  const revokedAt = new Date().toISOString()
  await tx
    .updateTable('device_certificates')
    .set({ revoked_at: revokedAt, revocation_reason: input.reason })
    .where('organization_id', '=', input.organizationId)
    .where('serial_number', '=', serialNumber)
    .execute()
  return toDeviceCertificate({ ...row, revoked_at: revokedAt, revocation_reason: input.reason })
}

/**
 * Revokes every certificate of the device for good, suspended ones included, and returns those
 * it revoked now. Certificates revoked before keep their first date and reason.
 */
export async function revokeDeviceCertificates(
  tx: Transaction,
  organizationId: string,
  deviceId: string,
  reason: RevocationReason,
): Promise<DeviceCertificate[]> {
  checkReason(reason)
  const rows = await tx
    .updateTable('device_certificates')
    .set({ revoked_at: new Date().toISOString(), revocation_reason: reason })
    .where('organization_id', '=', organizationId)
    .where('device_id', '=', deviceId)
    .where((eb) => eb.or([eb('revoked_at', 'is', null), eb('revocation_reason', '=', holdReason)]))
    .returningAll()
    .execute()
  return rows.map(toDeviceCertificate)
}

/**
 * Revokes, as superseded, every live certificate of the device but those whose serial numbers
 * are in `keep`, and returns those it revoked. Enrollment keeps only the certificate it issued,
 * so re-enrolling a device retires a key that may have been copied; renewal keeps the
 * certificate the device renewed with and the new one, so the two overlap until the device
 * switches and no more than two are ever valid. Suspended certificates stay on hold.
 */
export async function supersedeDeviceCertificates(
  tx: Transaction,
  organizationId: string,
  deviceId: string,
  keep: readonly string[],
): Promise<DeviceCertificate[]> {
  let query = tx
    .updateTable('device_certificates')
    .set({ revoked_at: new Date().toISOString(), revocation_reason: 'superseded' })
    .where('organization_id', '=', organizationId)
    .where('device_id', '=', deviceId)
    .where('revoked_at', 'is', null)
  if (keep.length > 0) query = query.where('serial_number', 'not in', [...keep])
  const rows = await query.returningAll().execute()
  return rows.map(toDeviceCertificate)
}

/**
 * Suspends every active certificate of the device: each is listed on the CRL with reason
 * certificateHold until {@link reinstateDeviceCertificates} lifts it. Returns those suspended now.
 */
export async function suspendDeviceCertificates(
  tx: Transaction,
  organizationId: string,
  deviceId: string,
): Promise<DeviceCertificate[]> {
  const rows = await tx
    .updateTable('device_certificates')
    .set({ revoked_at: new Date().toISOString(), revocation_reason: holdReason })
    .where('organization_id', '=', organizationId)
    .where('device_id', '=', deviceId)
    .where('revoked_at', 'is', null)
    .returningAll()
    .execute()
  return rows.map(toDeviceCertificate)
}

/**
 * Lifts the suspension of every suspended certificate of the device, which leaves the next CRL.
 * Revoked certificates stay revoked. Returns those reinstated.
 */
export async function reinstateDeviceCertificates(
  tx: Transaction,
  organizationId: string,
  deviceId: string,
): Promise<DeviceCertificate[]> {
  const rows = await tx
    .updateTable('device_certificates')
    .set({ revoked_at: null, revocation_reason: null })
    .where('organization_id', '=', organizationId)
    .where('device_id', '=', deviceId)
    .where('revocation_reason', '=', holdReason)
    .returningAll()
    .execute()
  return rows.map(toDeviceCertificate)
}

/**
 * Signs a fresh X.509 v2 CRL of the organization's issuing CA, listing every certificate it
 * issued that is revoked or suspended, with its date and reason. The CRL number is one more
 * than the CA's last; thisUpdate is five minutes ago (clock skew), nextUpdate
 * {@link issuingCrlLifetimeDays} days from now.
 */
export async function issuingCrl(
  tx: Transaction,
  provider: KeyWrappingProvider,
  organizationId: string,
): Promise<CertificateRevocationList> {
  const authority = await findAuthorityRow(tx, organizationId, 'issuing')
  // Numbered first: the row lock orders concurrent signers, so a later number never lists less.
  const number = await nextCrlNumber(tx, authority.id)
  const signer = await loadAuthoritySigner(tx, provider, organizationId, 'issuing')
  const revoked = await tx
    .selectFrom('device_certificates')
    .select(['serial_number', 'revoked_at', 'revocation_reason'])
    .where('issuer_id', '=', authority.id)
    .where('revoked_at', 'is not', null)
    .orderBy('revoked_at')
    .execute()

  const now = new Date()
  return signCrl(signer, {
    number,
    thisUpdate: new Date(now.getTime() - backdateMs),
    nextUpdate: addDays(now, issuingCrlLifetimeDays),
    entries: revoked.map((row) => ({
      serialNumber: row.serial_number,
      revokedAt: new Date(row.revoked_at as string),
      reason: (row.revocation_reason ?? 'unspecified') as RevocationReason | typeof holdReason,
    })),
  })
}

/**
 * A short text that changes whenever a certificate of the organization is issued, revoked,
 * suspended or reinstated. One indexed query, cheap enough to run every second: the device
 * endpoint polls it to learn of changes made by other Ward processes, and only when it differs
 * fetches fresh trust (which signs a CRL).
 */
export async function revocationMark(tx: Transaction, organizationId: string): Promise<string> {
  const row = await tx
    .selectFrom('device_certificates')
    .select((eb) => [
      eb.fn.countAll().as('certificates'),
      eb.fn.count('revoked_at').as('revoked'),
      eb.fn.max('revoked_at').as('lastRevokedAt'),
      eb.fn.max('issued_at').as('lastIssuedAt'),
    ])
    .where('organization_id', '=', organizationId)
    .executeTakeFirstOrThrow()
  // A suspension lifted between two polls leaves the mark as it was; it leaves the CRL so too.
  return [row.certificates, row.revoked, row.lastRevokedAt, row.lastIssuedAt].map(String).join(' ')
}

function checkReason(reason: string): void {
  if (!(revocationReasons as readonly string[]).includes(reason)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `reason must be one of ${revocationReasons.join(', ')}`,
      { details: { field: 'reason' } },
    )
  }
}
