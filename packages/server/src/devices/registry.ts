import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto'

import { WardError, checkDeviceModelPolicy, withArticle, type DeviceModelPolicy } from '@ward/core'

import { authenticationCode } from '../keys/index.js'
import type { Transaction } from '../store/index.js'

/** A device model: what its devices may send. */
export interface DeviceModel {
  readonly id: string
  readonly organizationId: string
  readonly name: string
  readonly manufacturer: string
  readonly policy: DeviceModelPolicy
}

/**
 * Where a device is in its life: `provisioned` (registered, not yet enrolled), `active`
 * (holds a certificate and may send), `suspended` (refused at once, for incident containment;
 * reversible), `wiped` (confirmed a remote wipe: its data, keys and certificate are gone and it is
 * refused; it can only be decommissioned) and `decommissioned` (retired for good).
 */
export type DeviceStatus = 'provisioned' | 'active' | 'suspended' | 'wiped' | 'decommissioned'

/** A device and, when it has one, the patient its readings belong to. */
export interface Device {
  readonly id: string
  readonly organizationId: string
  readonly serial: string
  readonly modelId: string
  readonly status: DeviceStatus
  readonly patientId: string | null
}

const namePattern = /^[A-Za-z0-9][A-Za-z0-9 ._()-]{0,99}$/
const serialPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/

/** Registers a device model for an organization. */
export async function createDeviceModel(
  tx: Transaction,
  input: { organizationId: string; name: string; manufacturer: string; policy: unknown },
): Promise<DeviceModel> {
  for (const [field, value] of [
    ['name', input.name],
    ['manufacturer', input.manufacturer],
  ] as const) {
    if (!namePattern.test(value)) {
      throw new WardError(
        'ERR_INPUT_INVALID',
        `device model ${field} must be 1–100 letters, digits, spaces or ._()-`,
        { details: { field } },
      )
    }
  }
  const policy = checkDeviceModelPolicy(input.policy)
  const existing = await tx
    .selectFrom('device_models')
    .select('id')
    .where('organization_id', '=', input.organizationId)
    .where('name', '=', input.name)
    .executeTakeFirst()
  if (existing !== undefined) {
    throw new WardError('ERR_DEVICE_EXISTS', `device model ${input.name} already exists`)
  }
  const model: DeviceModel = {
    id: randomUUID(),
    organizationId: input.organizationId,
    name: input.name,
    manufacturer: input.manufacturer,
    policy,
  }
  await tx
    .insertInto('device_models')
    .values({
      id: model.id,
      organization_id: model.organizationId,
      name: model.name,
      manufacturer: model.manufacturer,
      policy: JSON.stringify(policy),
      created_at: new Date().toISOString(),
    })
    .execute()
  return model
}

/** The organization's device models, by name. */
export async function listDeviceModels(
  tx: Transaction,
  organizationId: string,
): Promise<DeviceModel[]> {
  const rows = await tx
    .selectFrom('device_models')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .orderBy('name')
    .execute()
  return rows.map(toModel)
}

/** The device model named `name` (or with id `name`) in the organization. */
export async function findDeviceModel(
  tx: Transaction,
  organizationId: string,
  name: string,
): Promise<DeviceModel> {
  const row = await tx
    .selectFrom('device_models')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where((where) => where.or([where('name', '=', name), where('id', '=', name)]))
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError('ERR_DEVICE_MODEL_NOT_FOUND', 'no such device model in this organization')
  }
  return toModel(row)
}

/** Registers a device of `modelId` with a serial unique in its organization. */
export async function createDevice(
  tx: Transaction,
  input: { organizationId: string; serial: string; modelId: string },
): Promise<Device> {
  if (!serialPattern.test(input.serial)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      'device serial must be 1–64 letters, digits or ._:- starting with a letter or digit',
      { details: { field: 'serial' } },
    )
  }
  const existing = await tx
    .selectFrom('devices')
    .select('id')
    .where('organization_id', '=', input.organizationId)
    .where('serial', '=', input.serial)
    .executeTakeFirst()
  if (existing !== undefined) {
    throw new WardError('ERR_DEVICE_EXISTS', `a device with serial ${input.serial} already exists`)
  }
  const now = new Date().toISOString()
  const device: Device = {
    id: randomUUID(),
    organizationId: input.organizationId,
    serial: input.serial,
    modelId: input.modelId,
    status: 'provisioned',
    patientId: null,
  }
  await tx
    .insertInto('devices')
    .values({
      id: device.id,
      organization_id: device.organizationId,
      serial: device.serial,
      model_id: device.modelId,
      status: device.status,
      patient_id: null,
      created_at: now,
      updated_at: now,
    })
    .execute()
  return device
}

/**
 * The device with `serial` (or id) in the organization. A device of another organization is
 * indistinguishable from one that does not exist.
 */
export async function findDevice(
  tx: Transaction,
  organizationId: string,
  serialOrId: string,
): Promise<Device> {
  const row = await tx
    .selectFrom('devices')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where((where) => where.or([where('serial', '=', serialOrId), where('id', '=', serialOrId)]))
    .executeTakeFirst()
  if (row === undefined)
    throw new WardError('ERR_DEVICE_NOT_FOUND', 'no such device in this organization')
  return toDevice(row)
}

/** The organization's devices, by serial. */
export async function listDevices(tx: Transaction, organizationId: string): Promise<Device[]> {
  const rows = await tx
    .selectFrom('devices')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .orderBy('serial')
    .execute()
  return rows.map(toDevice)
}

/**
 * A short text that changes whenever a device of the organization is registered or changes
 * status or assignment. One indexed query, cheap enough for the device endpoint to poll every
 * second for changes made by other Ward processes.
 */
export async function deviceChangeMark(tx: Transaction, organizationId: string): Promise<string> {
  const row = await tx
    .selectFrom('devices')
    .select((eb) => [eb.fn.countAll().as('devices'), eb.fn.max('updated_at').as('lastUpdatedAt')])
    .where('organization_id', '=', organizationId)
    .executeTakeFirstOrThrow()
  return `${String(row.devices)} ${String(row.lastUpdatedAt)}`
}

const transitions: Record<DeviceStatus, readonly DeviceStatus[]> = {
  provisioned: ['active', 'suspended', 'decommissioned'],
  active: ['suspended', 'wiped', 'decommissioned'],
  suspended: ['active', 'provisioned', 'decommissioned'],
  wiped: ['decommissioned'],
  decommissioned: [],
}

/** Moves a device to `status`; `ERR_DEVICE_STATE` names the transition when it is not allowed. */
export async function setDeviceStatus(
  tx: Transaction,
  device: Device,
  status: DeviceStatus,
): Promise<Device> {
  if (!transitions[device.status].includes(status)) {
    throw new WardError(
      'ERR_DEVICE_STATE',
      `${withArticle(device.status)} device cannot become ${status}`,
    )
  }
  await tx
    .updateTable('devices')
    .set({
      status,
      updated_at: new Date().toISOString(),
      ...(status === 'decommissioned' ? { patient_id: null } : {}),
    })
    .where('id', '=', device.id)
    .where('organization_id', '=', device.organizationId)
    .execute()
  return { ...device, status, patientId: status === 'decommissioned' ? null : device.patientId }
}

/**
 * Assigns the device to a patient of the same organization (the caller checks the patient),
 * or ends the assignment with `null`. A device has at most one patient.
 */
export async function assignDevice(
  tx: Transaction,
  device: Device,
  patientId: string | null,
): Promise<Device> {
  if (device.status === 'decommissioned') {
    throw new WardError('ERR_DEVICE_STATE', 'a decommissioned device cannot be assigned')
  }
  await tx
    .updateTable('devices')
    .set({ patient_id: patientId, updated_at: new Date().toISOString() })
    .where('id', '=', device.id)
    .where('organization_id', '=', device.organizationId)
    .execute()
  return { ...device, patientId }
}

/**
 * Issues a one-time enrollment token for one device: random, shown once, expiring after
 * `ttlSeconds`. Any earlier unused token of the device stops working. What is stored is its
 * digest under `key`, the organization's enrollment-token authentication key (see
 * {@link enrollmentTokenDigest}), so a token row written into the database by anyone without
 * the master key matches no token.
 */
export async function createEnrollmentToken(
  tx: Transaction,
  key: Uint8Array,
  device: Device,
  ttlSeconds: number,
): Promise<{ token: string; expiresAt: string }> {
  if (device.status !== 'provisioned' && device.status !== 'active') {
    throw new WardError('ERR_DEVICE_STATE', `${withArticle(device.status)} device cannot enroll`)
  }
  const token = `ward_enr_${randomBytes(24).toString('base64url')}`
  const now = new Date()
  const expiresAt = new Date(now.getTime() + ttlSeconds * 1000).toISOString()
  await tx
    .updateTable('enrollment_tokens')
    .set({ used_at: now.toISOString() })
    .where('device_id', '=', device.id)
    .where('used_at', 'is', null)
    .execute()
  await tx
    .insertInto('enrollment_tokens')
    .values({
      id: randomUUID(),
      organization_id: device.organizationId,
      device_id: device.id,
      token_hash: enrollmentTokenDigest(key, {
        organizationId: device.organizationId,
        deviceId: device.id,
        expiresAt,
        tokenSha256: tokenSha256(token),
      }),
      expires_at: expiresAt,
      used_at: null,
      created_at: now.toISOString(),
    })
    .execute()
  return { token, expiresAt }
}

/**
 * Spends an enrollment token of organization `organizationId`: it must be stored for the
 * device with `serial`, under its digest with `key`, unused and unexpired. Every failure gives
 * the same answer, so a caller learns nothing about which check failed.
 */
export async function redeemEnrollmentToken(
  tx: Transaction,
  key: Uint8Array,
  input: { readonly organizationId: string; readonly token: string; readonly serial: string },
): Promise<Device> {
  const refused = new WardError(
    'ERR_ENROLLMENT_REFUSED',
    'enrollment token is not valid for this device',
  )
  if (!/^ward_enr_[A-Za-z0-9_-]{32}$/.test(input.token)) throw refused
  const device = await tx
    .selectFrom('devices')
    .selectAll()
    .where('organization_id', '=', input.organizationId)
    .where('serial', '=', input.serial)
    .executeTakeFirst()
  if (device === undefined) throw refused
  const unused = await tx
    .selectFrom('enrollment_tokens')
    .select(['id', 'token_hash', 'expires_at'])
    .where('organization_id', '=', input.organizationId)
    .where('device_id', '=', device.id)
    .where('used_at', 'is', null)
    .execute()
  const presented = tokenSha256(input.token)
  const row = unused.find((candidate) =>
    digestsMatch(
      candidate.token_hash,
      enrollmentTokenDigest(key, {
        organizationId: input.organizationId,
        deviceId: device.id,
        expiresAt: candidate.expires_at,
        tokenSha256: presented,
      }),
    ),
  )
  if (row === undefined) throw refused
  if (Date.parse(row.expires_at) <= Date.now()) throw refused
  const spent = await tx
    .updateTable('enrollment_tokens')
    .set({ used_at: new Date().toISOString() })
    .where('id', '=', row.id)
    .where('used_at', 'is', null)
    .executeTakeFirst()
  if (Number(spent.numUpdatedRows) !== 1) throw refused
  return toDevice(device)
}

/**
 * What an enrollment token row stores: lowercase hex HMAC-SHA-256, under the organization's
 * enrollment-token authentication key, of the token's SHA-256 bound to its organization,
 * device and expiry. Without the key nobody can make a digest a token will match, and a
 * digest moved to another device, or given a later expiry, matches none. Built over the
 * token's SHA-256 rather than the token, so that tokens stored before digests were keyed
 * (as plain SHA-256) could be keyed where they lay.
 */
export function enrollmentTokenDigest(
  key: Uint8Array,
  input: {
    readonly organizationId: string
    readonly deviceId: string
    readonly expiresAt: string
    readonly tokenSha256: string
  },
): string {
  return Buffer.from(
    authenticationCode(key, [
      'enrollment-token v1',
      input.organizationId,
      input.deviceId,
      input.expiresAt,
      input.tokenSha256,
    ]),
  ).toString('hex')
}

function tokenSha256(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex')
}

function digestsMatch(stored: string, expected: string): boolean {
  const a = Buffer.from(stored, 'utf8')
  const b = Buffer.from(expected, 'utf8')
  return a.length === b.length && timingSafeEqual(a, b)
}

function toModel(row: {
  id: string
  organization_id: string
  name: string
  manufacturer: string
  policy: string
}): DeviceModel {
  return {
    id: row.id,
    organizationId: row.organization_id,
    name: row.name,
    manufacturer: row.manufacturer,
    policy: checkDeviceModelPolicy(JSON.parse(row.policy)),
  }
}

/** A `devices` row as the registry hands it out; for this domain's other files. */
export function toDevice(row: {
  id: string
  organization_id: string
  serial: string
  model_id: string
  status: string
  patient_id: string | null
}): Device {
  return {
    id: row.id,
    organizationId: row.organization_id,
    serial: row.serial,
    modelId: row.model_id,
    status: row.status as DeviceStatus,
    patientId: row.patient_id,
  }
}
