export {
  HomeCheckpointWitness,
  latestCheckpoint,
  signCheckpoint,
  storedRoot,
  verifierKeyText,
  type CheckpointSigner,
  type CheckpointWitness,
  type SignedCheckpoint,
} from './checkpoints.js'
export {
  AuditEventSchema,
  auditEventTypes,
  buildAuditEvent,
  encodeAuditEvent,
  maxAuditEventBytes,
  type AuditEvent,
  type AuditEventInput,
} from './event.js'
export { EntryKeys, entryMac } from './entry-keys.js'
export { exportTiles, type ExportContext, type ExportResult } from './export.js'
export {
  maxAuditScan,
  searchAuditEvents,
  type AuditSearch,
  type AuditSearchPage,
} from './search.js'
export { checkEntries, type CheckedEntry } from './store-check.js'
export { leafHash, nodeHash } from './hashing.js'
export {
  appendAuditEvents,
  createAuditLog,
  findAuditLog,
  hasAuditLog,
  headRoot,
  listAuditLogs,
  platformLogName,
  recordAuditEvent,
  type AppendedEvent,
  type AuditLogHead,
} from './log.js'
export {
  proveConsistency,
  proveInclusion,
  readEntryBundle,
  readHashTile,
  type ConsistencyProof,
  type InclusionProof,
} from './tiles.js'
