import { Type } from '@sinclair/typebox'

import { isWardError } from '@ward/core'

import { findDevice, type Device } from '../../devices/index.js'
import { findPatient } from '../../records/index.js'
import { findOrganization, type Organization } from '../../tenancy/index.js'
import type { Ward } from '../../ward.js'
import { hiddenResource, type Resolved } from '../api-route.js'

// Path parameters, each in the one spelling Ward issues.
export const Slug = Type.String({ pattern: '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$' })
export const Serial = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$' })
export const Pseudonym = Type.String({ pattern: '^pt-[a-z2-7]{20}$' })
export const Uuid = Type.String({
  pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$',
})
export const strict = { additionalProperties: false } as const

export const OrganizationParams = Type.Object({ organization: Slug }, strict)
export const DeviceParams = Type.Object({ organization: Slug, serial: Serial }, strict)

/** The organization `slug`; {@link hiddenResource} when there is none. */
export async function organizationOf(ward: Ward, slug: string): Promise<Organization> {
  return findOrganization(ward.store.db, slug).catch(hide)
}

/** An organization as the resource of a route. */
export async function inOrganization(ward: Ward, slug: string): Promise<Resolved> {
  const organization = await organizationOf(ward, slug)
  return { organization, resource: { type: 'organization', organizationId: organization.id } }
}

/** A device of an organization as the resource of a route. */
export async function deviceIn(ward: Ward, slug: string, serial: string): Promise<Resolved> {
  const organization = await organizationOf(ward, slug)
  const device = await findDevice(ward.store.db, organization.id, serial).catch(hide)
  return { organization, device, resource: { type: 'device', organizationId: organization.id } }
}

/** Turns any `*_NOT_FOUND` into the one answer for a resource the caller may not know of. */
export function hide(error: unknown): never {
  if (isWardError(error) && error.code.endsWith('_NOT_FOUND')) {
    throw hiddenResource()
  }
  throw error
}

export const DeviceOut = Type.Object({
  id: Type.String(),
  serial: Type.String(),
  modelId: Type.String(),
  status: Type.String(),
  patient: Type.Union([Type.String(), Type.Null()]),
})

/** Devices as the API shows them: the patient by pseudonym. */
export async function devicesOut(ward: Ward, organizationId: string, devices: readonly Device[]) {
  const pseudonyms = new Map<string, string>()
  for (const id of new Set(devices.map((device) => device.patientId))) {
    if (id === null) continue
    pseudonyms.set(id, (await findPatient(ward.store.db, organizationId, id)).pseudonym)
  }
  return devices.map((device) => ({
    id: device.id,
    serial: device.serial,
    modelId: device.modelId,
    status: device.status,
    patient: device.patientId === null ? null : (pseudonyms.get(device.patientId) ?? null),
  }))
}

/** One device as the API shows it. */
export async function deviceOut(ward: Ward, device: Device) {
  return (await devicesOut(ward, device.organizationId, [device]))[0]
}

export const ok = (body: unknown) => ({ status: 200, body })
export const created = (body: unknown) => ({ status: 201, body })
