import type { X509Certificate } from 'node:crypto'
import { createHash, randomUUID, verify } from 'node:crypto'

import {
  WardError,
  canonicalize,
  checkWipeReport,
  fromBase64,
  maxReadingClockSkewMs,
  toHex,
  wipeReportSigningInput,
  withArticle,
  type WipeReport,
} from '@ward/core'

import type { Transaction } from '../store/index.js'
import type { Device } from './registry.js'

/** The lifecycle commands a device carries out itself. Suspension needs none: Ward refuses it. */
export type DeviceCommandKind = 'wipe'

/** Where a command is: see `DeviceCommandTable`. */
export type DeviceCommandStatus = 'pending' | 'delivered' | 'completed' | 'cancelled'

/** A lifecycle command queued for one device. */
export interface DeviceCommand {
  readonly id: string
  readonly organizationId: string
  readonly deviceId: string
  readonly kind: DeviceCommandKind
  readonly status: DeviceCommandStatus
  readonly issuedAt: string
  readonly deliveredAt: string | null
  readonly deliveries: number
  readonly completedAt: string | null
}

/** Ward's record that a device erased itself, and the device's signed word for it. */
export interface WipeCertificate {
  readonly id: string
  readonly organizationId: string
  readonly deviceId: string
  readonly commandId: string
  readonly queuedReadings: number
  readonly rejectedReadings: number
  readonly keyIds: readonly string[]
  readonly certificateSerials: readonly string[]
  /** When the device says it erased its data, by its own clock. */
  readonly erasedAt: string
  /** When Ward received and checked the confirmation. */
  readonly recordedAt: string
  /** The report as signed: canonical JSON. */
  readonly report: string
  /** Base64 DER ECDSA signature over the report's signing input. */
  readonly signature: string
  /** PEM certificate whose key made the signature. */
  readonly signingCertificate: string
}

const openStatuses: readonly DeviceCommandStatus[] = ['pending', 'delivered']

/**
 * Queues a wipe for an active device. Asking again while one is open returns that one
 * (`created: false`), so an operator who repeats the command does not queue a second.
 */
export async function queueWipe(
  tx: Transaction,
  device: Device,
  now: Date = new Date(),
): Promise<{ command: DeviceCommand; created: boolean }> {
  if (device.status !== 'active') {
    throw new WardError(
      'ERR_DEVICE_STATE',
      `${withArticle(device.status)} device cannot be wiped remotely: only an active device connects to ` +
        'receive the command',
    )
  }
  const open = await openCommands(tx, device.organizationId, device.id)
  const existing = open.find((command) => command.kind === 'wipe')
  if (existing !== undefined) return { command: existing, created: false }

  const command: DeviceCommand = {
    id: randomUUID(),
    organizationId: device.organizationId,
    deviceId: device.id,
    kind: 'wipe',
    status: 'pending',
    issuedAt: now.toISOString(),
    deliveredAt: null,
    deliveries: 0,
    completedAt: null,
  }
  await tx
    .insertInto('device_commands')
    .values({
      id: command.id,
      organization_id: command.organizationId,
      device_id: command.deviceId,
      kind: command.kind,
      status: command.status,
      issued_at: command.issuedAt,
      delivered_at: null,
      deliveries: 0,
      completed_at: null,
    })
    .execute()
  return { command, created: true }
}

/** The device's commands not yet completed or cancelled, oldest first. */
export async function openCommands(
  tx: Transaction,
  organizationId: string,
  deviceId: string,
): Promise<DeviceCommand[]> {
  const rows = await tx
    .selectFrom('device_commands')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('device_id', '=', deviceId)
    .where('status', 'in', openStatuses)
    .orderBy('issued_at')
    .orderBy('id')
    .execute()
  return rows.map(toCommand)
}

/**
 * Hands the device its open commands and counts the delivery. A command delivered before is
 * delivered again until the device confirms it, so a device that lost the answer loses nothing.
 * `firstDelivery` lists those delivered now for the first time.
 */
export async function deliverCommands(
  tx: Transaction,
  organizationId: string,
  deviceId: string,
  now: Date = new Date(),
): Promise<{ commands: DeviceCommand[]; firstDelivery: DeviceCommand[] }> {
  const open = await openCommands(tx, organizationId, deviceId)
  const delivered: DeviceCommand[] = []
  const first: DeviceCommand[] = []
  for (const command of open) {
    const deliveredAt = command.deliveredAt ?? now.toISOString()
    await tx
      .updateTable('device_commands')
      .set((eb) => ({
        status: 'delivered',
        delivered_at: deliveredAt,
        deliveries: eb('deliveries', '+', 1),
      }))
      .where('id', '=', command.id)
      .where('organization_id', '=', organizationId)
      .execute()
    const updated: DeviceCommand = {
      ...command,
      status: 'delivered',
      deliveredAt,
      deliveries: command.deliveries + 1,
    }
    delivered.push(updated)
    if (command.deliveredAt === null) first.push(updated)
  }
  return { commands: delivered, firstDelivery: first }
}

/** One of the device's commands; `ERR_COMMAND_NOT_FOUND` for another device's or none. */
export async function findCommand(
  tx: Transaction,
  organizationId: string,
  deviceId: string,
  commandId: string,
): Promise<DeviceCommand> {
  const row = await tx
    .selectFrom('device_commands')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('device_id', '=', deviceId)
    .where('id', '=', commandId)
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError('ERR_COMMAND_NOT_FOUND', 'no such command for this device')
  }
  return toCommand(row)
}

/**
 * Checks a device's wipe confirmation: the body is `{ report, signature }`, the report names
 * this command and this device, the signature verifies under the key of `certificate` (the one
 * the device connected with, so the key it is erasing), and the report lists that key and that
 * certificate among what it erased. The report's `erasedAt` must lie between the command's
 * issue and now, give or take the clock skew allowed for readings (`maxReadingClockSkewMs`).
 * Throws `ERR_INPUT_INVALID` or `ERR_SIGNATURE_INVALID`.
 */
export function checkWipeConfirmation(
  body: unknown,
  expected: {
    commandId: string
    deviceId: string
    certificate: X509Certificate
    /** When the command was issued: a device cannot have erased itself before that. */
    issuedAt: string
  },
  now: Date = new Date(),
): { report: WipeReport; signature: string } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new WardError('ERR_INPUT_INVALID', 'body must be {"report": {…}, "signature": "…"}', {
      details: { field: 'body' },
    })
  }
  const { report: reportValue, signature } = body as Record<string, unknown>
  const report = checkWipeReport(reportValue)
  if (typeof signature !== 'string' || signature.length > 400) {
    throw new WardError('ERR_INPUT_INVALID', 'signature must be base64 DER ECDSA, at most 400', {
      details: { field: 'signature' },
    })
  }
  if (report.command !== expected.commandId || report.device !== expected.deviceId) {
    throw new WardError('ERR_INPUT_INVALID', 'the report names another command or device', {
      details: { field: 'report.command' },
    })
  }
  checkErasedAt(report.erasedAt, expected.issuedAt, now)
  let signatureBytes: Uint8Array
  try {
    signatureBytes = fromBase64(signature)
  } catch (cause) {
    throw new WardError('ERR_INPUT_INVALID', 'signature is not base64', {
      cause,
      details: { field: 'signature' },
    })
  }
  const valid = verify(
    'sha256',
    wipeReportSigningInput(report),
    expected.certificate.publicKey,
    signatureBytes,
  )
  if (!valid) {
    throw new WardError('ERR_SIGNATURE_INVALID', 'the wipe report is not signed by this device')
  }
  const keyId = publicKeyId(expected.certificate)
  const serial = certificateSerial(expected.certificate)
  if (!report.erased.keys.includes(keyId)) {
    throw new WardError('ERR_INPUT_INVALID', 'the report does not list the key that signed it', {
      details: { field: 'report.erased.keys' },
    })
  }
  if (!report.erased.certificates.includes(serial)) {
    throw new WardError('ERR_INPUT_INVALID', 'the report does not list the certificate in use', {
      details: { field: 'report.erased.certificates' },
    })
  }
  return { report, signature }
}

/** Refuses an erasure time before the command was issued or after now, beyond clock skew. */
function checkErasedAt(erasedAt: string, issuedAt: string, now: Date) {
  const time = Date.parse(erasedAt)
  const earliest = Date.parse(issuedAt) - maxReadingClockSkewMs
  const latest = now.getTime() + maxReadingClockSkewMs
  if (!(time >= earliest && time <= latest)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `report.erasedAt must lie between the command's issue and now, within ${maxReadingClockSkewMs / 60_000} minutes of clock skew`,
      { details: { field: 'report.erasedAt' } },
    )
  }
}

/**
 * Records the wipe certificate for a confirmed wipe and completes the command. Confirming a
 * command already completed changes nothing and returns the certificate recorded the first time
 * (`created: false`); a cancelled one is `ERR_DEVICE_STATE`.
 */
export async function recordWipeCertificate(
  tx: Transaction,
  command: DeviceCommand,
  confirmation: { report: WipeReport; signature: string; certificatePem: string },
  now: Date = new Date(),
): Promise<{ certificate: WipeCertificate; created: boolean }> {
  if (command.status === 'completed') {
    const existing = await findWipeCertificate(tx, command.organizationId, command.id)
    if (existing !== undefined) return { certificate: existing, created: false }
  }
  if (command.status === 'cancelled' || command.kind !== 'wipe') {
    throw new WardError(
      'ERR_DEVICE_STATE',
      `${withArticle(command.status)} ${command.kind} cannot be confirmed`,
    )
  }
  const { report } = confirmation
  const certificate: WipeCertificate = {
    id: randomUUID(),
    organizationId: command.organizationId,
    deviceId: command.deviceId,
    commandId: command.id,
    queuedReadings: report.erased.queuedReadings,
    rejectedReadings: report.erased.rejectedReadings,
    keyIds: report.erased.keys,
    certificateSerials: report.erased.certificates,
    erasedAt: report.erasedAt,
    recordedAt: now.toISOString(),
    report: canonicalize(report),
    signature: confirmation.signature,
    signingCertificate: confirmation.certificatePem,
  }
  await tx
    .insertInto('wipe_certificates')
    .values({
      id: certificate.id,
      organization_id: certificate.organizationId,
      device_id: certificate.deviceId,
      command_id: certificate.commandId,
      queued_readings: certificate.queuedReadings,
      rejected_readings: certificate.rejectedReadings,
      key_ids: JSON.stringify(certificate.keyIds),
      certificate_serials: JSON.stringify(certificate.certificateSerials),
      erased_at: certificate.erasedAt,
      report: certificate.report,
      signature: certificate.signature,
      signing_certificate: certificate.signingCertificate,
      recorded_at: certificate.recordedAt,
    })
    .execute()
  await tx
    .updateTable('device_commands')
    .set({ status: 'completed', completed_at: certificate.recordedAt })
    .where('id', '=', command.id)
    .where('organization_id', '=', command.organizationId)
    .execute()
  return { certificate, created: true }
}

/** The wipe certificate recorded for a command, if any. */
export async function findWipeCertificate(
  tx: Transaction,
  organizationId: string,
  commandId: string,
): Promise<WipeCertificate | undefined> {
  const row = await tx
    .selectFrom('wipe_certificates')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('command_id', '=', commandId)
    .executeTakeFirst()
  return row === undefined ? undefined : toWipeCertificate(row)
}

/** Every wipe certificate of a device, oldest first. */
export async function listWipeCertificates(
  tx: Transaction,
  organizationId: string,
  deviceId: string,
): Promise<WipeCertificate[]> {
  const rows = await tx
    .selectFrom('wipe_certificates')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('device_id', '=', deviceId)
    .orderBy('recorded_at')
    .execute()
  return rows.map(toWipeCertificate)
}

/** Cancels the device's open commands, for a device that will never connect again. */
export async function cancelOpenCommands(
  tx: Transaction,
  organizationId: string,
  deviceId: string,
): Promise<number> {
  const result = await tx
    .updateTable('device_commands')
    .set({ status: 'cancelled' })
    .where('organization_id', '=', organizationId)
    .where('device_id', '=', deviceId)
    .where('status', 'in', openStatuses)
    .executeTakeFirst()
  return Number(result.numUpdatedRows)
}

/** The id Ward and the device agent give a key: SHA-256 of its SubjectPublicKeyInfo, in hex. */
export function publicKeyId(certificate: X509Certificate): string {
  const spki = certificate.publicKey.export({ type: 'spki', format: 'der' })
  return toHex(createHash('sha256').update(spki).digest())
}

/** A certificate's serial number as Ward writes it: lowercase hex without leading zero bytes. */
export function certificateSerial(certificate: X509Certificate): string {
  let hex = certificate.serialNumber.toLowerCase()
  if (hex.length % 2 === 1) hex = `0${hex}`
  while (hex.length > 2 && hex.startsWith('00')) hex = hex.slice(2)
  return hex
}

function toCommand(row: {
  id: string
  organization_id: string
  device_id: string
  kind: string
  status: string
  issued_at: string
  delivered_at: string | null
  deliveries: number
  completed_at: string | null
}): DeviceCommand {
  return {
    id: row.id,
    organizationId: row.organization_id,
    deviceId: row.device_id,
    kind: row.kind as DeviceCommandKind,
    status: row.status as DeviceCommandStatus,
    issuedAt: row.issued_at,
    deliveredAt: row.delivered_at,
    deliveries: Number(row.deliveries),
    completedAt: row.completed_at,
  }
}

function toWipeCertificate(row: {
  id: string
  organization_id: string
  device_id: string
  command_id: string
  queued_readings: number
  rejected_readings: number
  key_ids: string
  certificate_serials: string
  erased_at: string
  report: string
  signature: string
  signing_certificate: string
  recorded_at: string
}): WipeCertificate {
  return {
    id: row.id,
    organizationId: row.organization_id,
    deviceId: row.device_id,
    commandId: row.command_id,
    queuedReadings: Number(row.queued_readings),
    rejectedReadings: Number(row.rejected_readings),
    keyIds: JSON.parse(row.key_ids) as string[],
    certificateSerials: JSON.parse(row.certificate_serials) as string[],
    erasedAt: row.erased_at,
    recordedAt: row.recorded_at,
    report: row.report,
    signature: row.signature,
    signingCertificate: row.signing_certificate,
  }
}
