// The updates domain's door: each organization's TUF repository, firmware releases by id and
// the targets they map to, install reports, and the TUF metadata tools the offline CLI signs
// with.
export {
  Updates,
  findRelease,
  listInstallReports,
  listReleases,
  type InstallReport,
  type RecordedInstallReport,
} from './updates.js'
export {
  type OnlineKeys,
  type PublishBundle,
  type PublishResult,
  type Release,
  type RepositorySettings,
} from './repository.js'
export {
  checkThreshold,
  metadataBytes,
  parseMetadata,
  signMetadata,
  tufPublicKeyOf,
  tufSignerFromKey,
  tufSignerFromPem,
  tufSpecVersion,
  validSigners,
  verifyTufSignature,
  type FirmwareFields,
  type RootSigned,
  type SnapshotSigned,
  type TargetFileInfo,
  type TargetsSigned,
  type TimestampSigned,
  type TufEnvelope,
  type TufKeyAlgorithm,
  type TufRole,
  type TufRoleKeys,
  type TufSignature,
  type TufSigner,
} from './tuf-metadata.js'
export { registerUpdateRoutes } from './routes.js'
export { updateTimestampsJob } from './timestamp-job.js'
export {
  buildRoot,
  buildTargets,
  generateTufKey,
  readPublishDirectory,
  sha256Hex,
  type GeneratedTufKey,
  type ReleaseInput,
  type RootInput,
} from './offline-signing.js'
