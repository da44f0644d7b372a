/** The devices domain's tables, as Kysely sees them; see `store/schema.ts` for conventions. */
export interface DevicesTables {
  device_models: DeviceModelTable
  devices: DeviceTable
  enrollment_tokens: EnrollmentTokenTable
  device_commands: DeviceCommandTable
  wipe_certificates: WipeCertificateTable
}

/** What the devices of one model may send: `policy` is the JSON of a `DeviceModelPolicy`. */
export interface DeviceModelTable {
  id: string
  organization_id: string
  name: string
  manufacturer: string
  policy: string
  created_at: string
}

/** One device, identified by its serial within its organization. */
export interface DeviceTable {
  id: string
  organization_id: string
  serial: string
  model_id: string
  status: string
  patient_id: string | null
  created_at: string
  updated_at: string
}

/**
 * A one-time enrollment token: only its digest is stored, `token_hash`, keyed under the
 * organization's enrollment-token authentication key (see `enrollmentTokenDigest`).
 */
export interface EnrollmentTokenTable {
  id: string
  organization_id: string
  device_id: string
  token_hash: string
  expires_at: string
  used_at: string | null
  created_at: string
}

/**
 * A lifecycle command queued for a device, delivered on its next connection. `status` is
 * `pending` (not yet fetched), `delivered` (fetched at least once, `deliveries` times),
 * `completed` (the device confirmed it) or `cancelled` (the device was decommissioned first).
 */
export interface DeviceCommandTable {
  id: string
  organization_id: string
  device_id: string
  kind: string
  status: string
  issued_at: string
  delivered_at: string | null
  deliveries: number
  completed_at: string | null
}

/**
 * What a device confirmed it erased when it carried out a wipe: counts of readings, the ids
 * (SHA-256 of the public key, hex) of the keys and the serial numbers of the certificates it
 * deleted, its own time of erasure, and the report exactly as the device signed it with the key
 * it then erased (`report`, canonical JSON; `signature`, base64 DER ECDSA; `signing_certificate`,
 * the PEM certificate the signature verifies under).
 */
export interface WipeCertificateTable {
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
}
