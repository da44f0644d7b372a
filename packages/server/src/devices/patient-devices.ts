import type { Transaction } from '../store/index.js'
import { toDevice, type Device } from './registry.js'

/** Most devices {@link listPatientDevices} returns. */
const maxPatientDevices = 1000

/**
 * The devices of `organizationId` assigned to patient `patientId` now, by serial; one range of
 * the `devices (organization_id, patient_id)` index. At most a thousand.
 */
export async function listPatientDevices(
  tx: Transaction,
  organizationId: string,
  patientId: string,
): Promise<Device[]> {
  const rows = await tx
    .selectFrom('devices')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('patient_id', '=', patientId)
    .orderBy('serial')
    .limit(maxPatientDevices)
    .execute()
  return rows.map(toDevice)
}
