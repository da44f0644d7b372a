import type { Generated } from 'kysely'

import type { AccessTables } from '../access/tables.js'
import type { AccessPeopleTables } from '../access/people-tables.js'
import type { DevicesTables } from '../devices/tables.js'
import type { IdentityTables } from '../identity/tables.js'
import type { KeysTables } from '../keys/tables.js'
import type { RecordsTables } from '../records/tables.js'
import type { UpdatesTables } from '../updates/tables.js'
import type { RolloutTables } from '../updates/rollout-tables.js'

/**
 * The tables Ward keeps, as Kysely sees them. Each domain owns its tables and is the only one
 * that queries them; other domains go through that domain's `index.ts`.
 *
 * Conventions shared by both dialects: ids are random UUIDs as text, times are ISO-8601 UTC
 * text, byte strings are BLOB (SQLite) or BYTEA (PostgreSQL), counters are 64-bit integers
 * read back as JavaScript numbers.
 */
export interface Database
  extends
    KeysTables,
    IdentityTables,
    DevicesTables,
    RecordsTables,
    UpdatesTables,
    AccessTables,
    AccessPeopleTables,
    RolloutTables {
  organizations: OrganizationTable
  signing_keys: SigningKeyTable
  audit_logs: AuditLogTable
  audit_entries: AuditEntryTable
  audit_checkpoints: AuditCheckpointTable
}

/** tenancy: a customer of the Ward operator, usually a covered entity. */
export interface OrganizationTable {
  id: string
  slug: string
  name: string
  created_at: string
}

/** keys: an asymmetric signing key whose private half is stored wrapped, never in clear. */
export interface SigningKeyTable {
  id: string
  purpose: string
  algorithm: string
  public_key: Uint8Array
  wrapped_private_key: Uint8Array
  provider: string
  created_at: string
}

/**
 * audit: one append-only log and its head. `size` and `frontier` (the hashes of the complete
 * subtrees that make up the current tree, left to right) are rewritten by every append, under
 * a row lock, so appends to one log serialize here and nowhere else.
 */
export interface AuditLogTable {
  id: string
  name: string
  origin: string
  organization_id: string | null
  signing_key_id: string
  size: number
  frontier: Uint8Array
  /** Key for the entries' authentication codes, wrapped under the master key. */
  wrapped_entry_key: Uint8Array
  created_at: string
}

/**
 * audit: one leaf. `hashes` is the leaf hash followed by the hash of every complete subtree
 * that this leaf completes (levels 1, 2, …), so a node of any level is one row lookup away.
 */
export interface AuditEntryTable {
  log_id: string
  idx: number
  event_id: string
  recorded_at: string
  body: Uint8Array
  hashes: Uint8Array
  /**
   * HMAC-SHA-256 under the log's entry key over (log, index, leaf hash): proof the row was
   * written by Ward, which somebody with database access but without the master key cannot
   * forge for entries appended since the last signed checkpoint.
   */
  mac: Uint8Array
}

/** audit: every checkpoint Ward has signed, newest last. */
export interface AuditCheckpointTable {
  id: Generated<number>
  log_id: string
  size: number
  root_hash: Uint8Array
  note: string
  signed_at: string
}
