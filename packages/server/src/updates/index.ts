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
// The updates domain's door. Rollouts: staged, self-halting distribution of a firmware release
// to devices, referring to releases by id and version through `ReleaseCatalog`.
export {
  abortRollout,
  checkRelease,
  checkStatusReport,
  createRollout,
  currentOffer,
  evaluateRollout,
  findRollout,
  listRolloutDevices,
  listRollouts,
  offerFor,
  pauseRollout,
  recordStatusReport,
  resumeRollout,
  runningRollouts,
  summarizeRollout,
  type PauseReason,
  type ReleaseCatalog,
  type ReportedStatus,
  type Rollout,
  type RolloutChange,
  type RolloutDevice,
  type RolloutDeviceStatus,
  type RolloutOffer,
  type RolloutPlan,
  type RolloutRelease,
  type RolloutState,
  type RolloutSummary,
  type StageCounts,
} from './rollouts.js'
export { rolloutPosition, stageFor } from './rollout-selection.js'
export { repositoryReleaseCatalog } from './release-catalog.js'
