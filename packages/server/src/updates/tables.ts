/** The updates domain's tables, as Kysely sees them; see `store/schema.ts` for conventions. */
export interface UpdatesTables {
  update_repositories: UpdateRepositoryTable
  update_metadata: UpdateMetadataTable
  firmware_images: FirmwareImageTable
  firmware_releases: FirmwareReleaseTable
  firmware_reports: FirmwareReportTable
}

/** An organization's TUF repository: Ward's online snapshot and timestamp keys. */
export interface UpdateRepositoryTable {
  organization_id: string
  snapshot_key_id: string
  timestamp_key_id: string
  created_at: string
}

/**
 * One version of one role's metadata, as the exact bytes that were signed and are served.
 * Every version is kept: old roots are what a device walks to reach the current one.
 */
export interface UpdateMetadataTable {
  organization_id: string
  role: string
  version: number
  body: Uint8Array
  expires_at: string
  created_at: string
}

/** A firmware image, addressed by its SHA-256 within its organization. */
export interface FirmwareImageTable {
  organization_id: string
  sha256: string
  length: number
  content: Uint8Array
  created_at: string
}

/** A release: a target of the signed targets metadata and what it fits. */
export interface FirmwareReleaseTable {
  id: string
  organization_id: string
  target_name: string
  version: string
  min_version: string
  /** JSON array of device model names. */
  models: string
  /** JSON array of hardware revisions; empty means all. */
  hardware_revisions: string
  notes: string
  image_sha256: string
  length: number
  /** The SBOM as published (stored, not analysed), or null. */
  sbom: Uint8Array | null
  /** The targets metadata version that first listed this release. */
  targets_version: number
  created_at: string
}

/** What a device reported about installing a release. */
export interface FirmwareReportTable {
  id: string
  organization_id: string
  device_id: string
  release_id: string | null
  target_name: string
  outcome: string
  from_version: string
  reason: string | null
  reported_at: string
}
