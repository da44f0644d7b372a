/** The devices domain's tables, as Kysely sees them; see `store/schema.ts` for conventions. */
export interface DevicesTables {
  device_models: DeviceModelTable
  devices: DeviceTable
  enrollment_tokens: EnrollmentTokenTable
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

/** A one-time enrollment token: only its SHA-256 is stored. */
export interface EnrollmentTokenTable {
  id: string
  organization_id: string
  device_id: string
  token_hash: string
  expires_at: string
  used_at: string | null
  created_at: string
}
