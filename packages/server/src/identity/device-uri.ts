import { WardError } from '@ward/core'

const uuid = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
const uuidPattern = new RegExp(`^${uuid}$`)
const deviceUriPattern = new RegExp(`^urn:ward:device:(${uuid}):(${uuid})$`)

/** Which device a certificate names: the organization it belongs to and its device id. */
export interface DeviceName {
  readonly organizationId: string
  readonly deviceId: string
}

/**
 * The URI a device certificate names its device by, in its subject alternative name:
 * `urn:ward:device:<organizationId>:<deviceId>`. Both ids are Ward's lowercase UUIDs, so the
 * URI never holds a serial, a name or any other fact about a patient. Throws
 * `ERR_INPUT_INVALID` when either id is not such a UUID.
 */
export function deviceUri(organizationId: string, deviceId: string): string {
  checkId(organizationId, 'organizationId')
  checkId(deviceId, 'deviceId')
  return `urn:ward:device:${organizationId}:${deviceId}`
}

/** The organization and device a {@link deviceUri} names, or `undefined` for any other text. */
export function parseDeviceUri(uri: string): DeviceName | undefined {
  const match = deviceUriPattern.exec(uri)
  if (match === null) return undefined
  return { organizationId: match[1] as string, deviceId: match[2] as string }
}

/** Throws `ERR_INPUT_INVALID` naming `field` unless `id` is a lowercase UUID. */
export function checkId(id: string, field: string): void {
  if (!uuidPattern.test(id)) {
    throw new WardError('ERR_INPUT_INVALID', `${field} must be a lowercase UUID`, {
      details: { field },
    })
  }
}
