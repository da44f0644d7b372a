import { randomUUID } from 'node:crypto'

import { WardError, compareSemanticVersions, withArticle } from '@ward/core'

import { listDevices } from '../devices/index.js'
import type { Dialect, Transaction } from '../store/index.js'
import { rolloutPosition, stageFor } from './rollout-selection.js'
import { reportedVersions } from './updates.js'

/**
 * What a rollout needs to know of a firmware release: its id, its version (SemVer 2.0) and the
 * device models (ids) its image fits. The release repository satisfies this; a rollout never
 * handles images or metadata, and the device verifies what it installs against the repository.
 */
export interface RolloutRelease {
  readonly id: string
  readonly version: string
  /** The TUF target name of its image: what a device asks the repository for. */
  readonly targetName: string
  readonly deviceModelIds: readonly string[]
}

/** Where rollouts find releases: the release repository implements this. */
export interface ReleaseCatalog {
  /** The organization's release `releaseId`; `ERR_RELEASE_NOT_FOUND` when it has none such. */
  findRelease(tx: Transaction, organizationId: string, releaseId: string): Promise<RolloutRelease>
}

/** `running`, `paused` (by an operator or by itself), and the final `completed` and `aborted`. */
export type RolloutState = 'running' | 'paused' | 'completed' | 'aborted'

/** Why a rollout paused. */
export type PauseReason = 'operator' | 'failure-threshold' | 'report-deadline'

/**
 * A device's place in a rollout: `pending` (taken into a stage, not yet told), `offered` (told
 * which release to move to), then what it reports — `downloading`, `installed`, `failed`,
 * `rolled-back` — or `timed-out` when it reported nothing final by its stage's deadline.
 */
export type RolloutDeviceStatus =
  'pending' | 'offered' | 'downloading' | 'installed' | 'failed' | 'rolled-back' | 'timed-out'

/** What a device may report. */
export type ReportedStatus = 'downloading' | 'installed' | 'failed' | 'rolled-back'

/** A staged rollout of one release. */
export interface Rollout {
  readonly id: string
  readonly organizationId: string
  readonly releaseId: string
  readonly releaseVersion: string
  readonly modelIds: readonly string[]
  readonly deviceIds: readonly string[] | null
  readonly percent: number
  readonly stages: readonly number[]
  readonly failureThreshold: number
  readonly reportDeadlineSeconds: number
  readonly state: RolloutState
  /** Index into `stages` of the stage under way (or the last one reached). */
  readonly stage: number
  readonly stageStartedAt: string
  readonly stageDeadlineAt: string
  readonly acceptedFailures: number
  readonly pausedReason: PauseReason | null
  readonly createdAt: string
  readonly updatedAt: string
}

/** How an operator shapes a rollout. Every field is optional. */
export interface RolloutPlan {
  /** Device model ids to target; default every model the release fits. */
  readonly modelIds?: readonly string[]
  /** Device ids the rollout is limited to (a group); default every matching device. */
  readonly deviceIds?: readonly string[]
  /** Share of matching devices reached at the last stage, 1–100; default 100. */
  readonly percent?: number
  /** Cumulative percentages of that share, ascending, ending at 100; default 1, 10, 50, 100. */
  readonly stages?: readonly number[]
  /** Failure fraction of a stage (0–1) above which it pauses itself; default 0.1. */
  readonly failureThreshold?: number
  /** How long a stage's devices have to report a final status, in seconds; default 1 day. */
  readonly reportDeadlineSeconds?: number
}

/** One change to a rollout, for the caller to audit. */
export interface RolloutChange {
  readonly operation: string
  readonly rolloutId: string
  readonly deviceId?: string
  readonly detail: Readonly<Record<string, string | number | boolean>>
}

/** How many of a stage's devices are in each status. */
export type StageCounts = Readonly<Record<RolloutDeviceStatus, number>>

/** A rollout with its devices counted per stage. */
export interface RolloutSummary {
  readonly rollout: Rollout
  readonly stages: readonly { stage: number; percent: number; devices: StageCounts }[]
}

/** A device in a rollout and its status. */
export interface RolloutDevice {
  readonly deviceId: string
  readonly stage: number
  readonly status: RolloutDeviceStatus
  readonly reason: string | null
  readonly updatedAt: string
}

/** What the device endpoint answers a device that asks which release to move to. */
export interface RolloutOffer {
  readonly rolloutId: string
  readonly releaseId: string
  readonly version: string
}

const defaultStages = [1, 10, 50, 100]
const unsettled: readonly RolloutDeviceStatus[] = ['pending', 'offered', 'downloading']
const reportedStatuses: readonly ReportedStatus[] = [
  'downloading',
  'installed',
  'failed',
  'rolled-back',
]
const allStatuses: readonly RolloutDeviceStatus[] = [
  'pending',
  'offered',
  'downloading',
  'installed',
  'failed',
  'rolled-back',
  'timed-out',
]
// What a device may report next, given what it is at. A status reported again is a no-op.
const nextStatuses: Record<RolloutDeviceStatus, readonly ReportedStatus[]> = {
  pending: reportedStatuses,
  offered: reportedStatuses,
  downloading: reportedStatuses,
  'timed-out': reportedStatuses,
  installed: ['installed', 'rolled-back'],
  failed: ['failed'],
  'rolled-back': ['rolled-back'],
}
const semver =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-((0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(\+([0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*))?$/
const releaseIdPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/
const reasonPattern = /^[a-z0-9][a-z0-9._-]{0,63}$/

/**
 * Checks a release as a rollout needs it: an id of 1–128 letters, digits or `._:-`, a SemVer
 * 2.0 version of at most 64 characters, at least one device model.
 */
export function checkRelease(release: RolloutRelease): RolloutRelease {
  if (!releaseIdPattern.test(release.id)) {
    throw invalid('release', 'release id must be 1–128 letters, digits or ._:-')
  }
  if (release.version.length > 64 || !semver.test(release.version)) {
    throw invalid('version', 'release version must be a SemVer 2.0 version such as 1.4.2')
  }
  if (release.deviceModelIds.length === 0) {
    throw invalid('release', 'the release fits no device model')
  }
  return release
}

/**
 * Creates a running rollout of `release` and starts its first stage (and any stage after it
 * that takes no new device). The devices it may reach are the organization's active devices of
 * the targeted models, in the group when one is given. `ERR_ROLLOUT_STATE` when another open
 * rollout targets one of the same models, `ERR_INPUT_INVALID` for a bad plan, no device to
 * reach, or a release not newer than what every device to reach last reported running.
 */
export async function createRollout(
  tx: Transaction,
  input: {
    readonly dialect: Dialect
    readonly organizationId: string
    readonly release: RolloutRelease
    readonly plan: RolloutPlan
    readonly now: Date
  },
): Promise<{ rollout: Rollout; changes: RolloutChange[] }> {
  const release = checkRelease(input.release)
  const plan = checkPlan(input.plan)
  const modelIds = plan.modelIds ?? release.deviceModelIds
  for (const modelId of modelIds) {
    if (!release.deviceModelIds.includes(modelId)) {
      throw invalid('models', 'the release does not fit one of the chosen device models')
    }
  }
  const open = await tx
    .selectFrom('rollouts')
    .select(['id', 'model_ids'])
    .where('organization_id', '=', input.organizationId)
    .where('state', 'in', ['running', 'paused'])
    .execute()
  for (const other of open) {
    const otherModels = JSON.parse(other.model_ids) as string[]
    if (otherModels.some((modelId) => modelIds.includes(modelId))) {
      throw new WardError(
        'ERR_ROLLOUT_STATE',
        `rollout ${other.id} is still open for one of these device models; complete or abort it first`,
        { details: { rollout: other.id } },
      )
    }
  }
  const devices = await listDevices(tx, input.organizationId)
  if (plan.deviceIds !== undefined) {
    const known = new Set(devices.map((device) => device.id))
    if (plan.deviceIds.some((deviceId) => !known.has(deviceId))) {
      throw new WardError(
        'ERR_DEVICE_NOT_FOUND',
        'a device of the group is not in this organization',
      )
    }
  }
  const reachable = devices.filter(
    (device) =>
      device.status === 'active' &&
      modelIds.includes(device.modelId) &&
      (plan.deviceIds === undefined || plan.deviceIds.includes(device.id)),
  )
  if (reachable.length === 0) {
    throw invalid('models', 'no active device matches the rollout: nothing to roll out to')
  }
  // Devices refuse a release not newer than what they run; when every device the rollout would
  // reach reported running this version or a newer one, it could only fail. Devices that never
  // reported may run anything, so they keep the rollout possible.
  const versions = await reportedVersions(tx, input.organizationId)
  const running = reachable.map((device) => versions.get(device.id))
  if (
    running.every(
      (version) => version !== undefined && compareSemanticVersions(version, release.version) >= 0,
    )
  ) {
    const oldest = (running as string[]).reduce((a, b) =>
      compareSemanticVersions(a, b) <= 0 ? a : b,
    )
    throw invalid(
      'release',
      `release version ${release.version} is not newer than what every targeted device last ` +
        `reported running (${oldest} at the oldest); devices refuse downgrades`,
    )
  }

  const now = input.now.toISOString()
  const rollout: Rollout = {
    id: randomUUID(),
    organizationId: input.organizationId,
    releaseId: release.id,
    releaseVersion: release.version,
    modelIds: [...modelIds],
    deviceIds: plan.deviceIds === undefined ? null : [...plan.deviceIds],
    percent: plan.percent,
    stages: plan.stages,
    failureThreshold: plan.failureThreshold,
    reportDeadlineSeconds: plan.reportDeadlineSeconds,
    state: 'running',
    stage: 0,
    stageStartedAt: now,
    stageDeadlineAt: addSeconds(input.now, plan.reportDeadlineSeconds),
    acceptedFailures: 0,
    pausedReason: null,
    createdAt: now,
    updatedAt: now,
  }
  await tx
    .insertInto('rollouts')
    .values({
      id: rollout.id,
      organization_id: rollout.organizationId,
      release_id: rollout.releaseId,
      release_version: rollout.releaseVersion,
      model_ids: JSON.stringify(rollout.modelIds),
      device_ids: rollout.deviceIds === null ? null : JSON.stringify(rollout.deviceIds),
      percent: rollout.percent,
      stages: JSON.stringify(rollout.stages),
      failure_threshold_permille: Math.round(rollout.failureThreshold * 1000),
      report_deadline_seconds: rollout.reportDeadlineSeconds,
      state: rollout.state,
      stage: 0,
      stage_started_at: now,
      stage_deadline_at: rollout.stageDeadlineAt,
      accepted_failures: 0,
      paused_reason: null,
      created_at: now,
      updated_at: now,
    })
    .execute()
  const changes: RolloutChange[] = [
    {
      operation: 'rollout.create',
      rolloutId: rollout.id,
      detail: {
        release: rollout.releaseId,
        version: rollout.releaseVersion,
        models: rollout.modelIds.length,
        group: rollout.deviceIds?.length ?? 0,
        percent: rollout.percent,
        stages: rollout.stages.join(','),
        failureThreshold: rollout.failureThreshold,
        reportDeadlineSeconds: rollout.reportDeadlineSeconds,
      },
    },
  ]
  changes.push(...(await takeStageDevices(tx, rollout, 0, input.now)))
  const evaluated = await evaluateRollout(tx, input.dialect, rollout, input.now)
  return { rollout: evaluated.rollout, changes: [...changes, ...evaluated.changes] }
}

/**
 * Moves a running rollout on as far as its devices' reports allow, as of `now`:
 *
 * - when more of the current stage's devices failed (or rolled back) than the threshold allows,
 *   and more than an operator accepted by resuming, it pauses (`failure-threshold`);
 * - when the stage's deadline passed with devices that reported nothing final, those become
 *   `timed-out` and it pauses (`report-deadline`);
 * - when every device of the stage reported a final status, the next stage starts (taking its
 *   devices), or, after the last, the rollout completes.
 *
 * A rollout that is not running is returned unchanged. `dialect` is the store's, so that the
 * rollout's row is locked on PostgreSQL and concurrent evaluations serialize.
 */
export async function evaluateRollout(
  tx: Transaction,
  dialect: Dialect,
  given: Rollout,
  now: Date,
): Promise<{ rollout: Rollout; changes: RolloutChange[] }> {
  let rollout = await lockRollout(tx, dialect, given.organizationId, given.id)
  const changes: RolloutChange[] = []
  while (rollout.state === 'running') {
    const counts = await stageCounts(tx, rollout.id, rollout.stage)
    const total = sum(counts)
    const failures = counts.failed + counts['rolled-back']
    if (
      total > 0 &&
      failures > rollout.acceptedFailures &&
      failures / total > rollout.failureThreshold
    ) {
      rollout = await pause(tx, rollout, 'failure-threshold', now)
      changes.push({
        operation: 'rollout.pause',
        rolloutId: rollout.id,
        detail: { reason: 'failure-threshold', stage: rollout.stage, failures, devices: total },
      })
      break
    }
    const waiting = counts.pending + counts.offered + counts.downloading
    if (waiting > 0) {
      if (now.getTime() < Date.parse(rollout.stageDeadlineAt)) break
      await tx
        .updateTable('rollout_devices')
        .set({ status: 'timed-out', updated_at: now.toISOString() })
        .where('rollout_id', '=', rollout.id)
        .where('stage', '=', rollout.stage)
        .where('status', 'in', unsettled)
        .execute()
      rollout = await pause(tx, rollout, 'report-deadline', now)
      changes.push({
        operation: 'rollout.pause',
        rolloutId: rollout.id,
        detail: {
          reason: 'report-deadline',
          stage: rollout.stage,
          timedOut: waiting,
          devices: total,
        },
      })
      break
    }
    if (rollout.stage === rollout.stages.length - 1) {
      rollout = await update(tx, rollout, { state: 'completed', paused_reason: null }, now)
      changes.push({
        operation: 'rollout.complete',
        rolloutId: rollout.id,
        detail: { stage: rollout.stage, failures, devices: total },
      })
      break
    }
    const next = rollout.stage + 1
    rollout = await update(
      tx,
      rollout,
      {
        stage: next,
        stage_started_at: now.toISOString(),
        stage_deadline_at: addSeconds(now, rollout.reportDeadlineSeconds),
        accepted_failures: 0,
      },
      now,
    )
    changes.push(...(await takeStageDevices(tx, rollout, next, now)))
  }
  return { rollout, changes }
}

/** Pauses a running rollout at an operator's request. */
export async function pauseRollout(
  tx: Transaction,
  dialect: Dialect,
  organizationId: string,
  rolloutId: string,
  now: Date,
): Promise<{ rollout: Rollout; changes: RolloutChange[] }> {
  const rollout = await lockRollout(tx, dialect, organizationId, rolloutId)
  if (rollout.state !== 'running') throw stateError(rollout, 'paused')
  const paused = await pause(tx, rollout, 'operator', now)
  return {
    rollout: paused,
    changes: [
      {
        operation: 'rollout.pause',
        rolloutId,
        detail: { reason: 'operator', stage: paused.stage },
      },
    ],
  }
}

/**
 * Resumes a paused rollout. The failures its current stage has now count as accepted, so only
 * further failures pause it again, and the stage gets a fresh deadline. The stage's devices that
 * timed out and are still active go back to `pending`: they are offered the release again, and
 * the stage waits for them until they report or the fresh deadline passes (which pauses it
 * again). Timed-out devices that are no longer active (suspended, wiped, decommissioned) cannot
 * report, so they stay timed out and are accepted. The rollout is then evaluated at once.
 */
export async function resumeRollout(
  tx: Transaction,
  dialect: Dialect,
  organizationId: string,
  rolloutId: string,
  now: Date,
): Promise<{ rollout: Rollout; changes: RolloutChange[] }> {
  const rollout = await lockRollout(tx, dialect, organizationId, rolloutId)
  if (rollout.state !== 'paused') throw stateError(rollout, 'resumed')
  const counts = await stageCounts(tx, rollout.id, rollout.stage)
  const reoffered = await reofferTimedOut(tx, rollout, now)
  const resumed = await update(
    tx,
    rollout,
    {
      state: 'running',
      paused_reason: null,
      accepted_failures: counts.failed + counts['rolled-back'],
      stage_deadline_at: addSeconds(now, rollout.reportDeadlineSeconds),
    },
    now,
  )
  const evaluated = await evaluateRollout(tx, dialect, resumed, now)
  return {
    rollout: evaluated.rollout,
    changes: [
      {
        operation: 'rollout.resume',
        rolloutId,
        detail: {
          stage: resumed.stage,
          acceptedFailures: resumed.acceptedFailures,
          reoffered,
          previousReason: rollout.pausedReason ?? 'operator',
        },
      },
      ...evaluated.changes,
    ],
  }
}

// Puts the current stage's timed-out devices that are still active back to `pending`, so that
// they are offered the release again; returns how many.
async function reofferTimedOut(tx: Transaction, rollout: Rollout, now: Date): Promise<number> {
  const timedOut = await tx
    .selectFrom('rollout_devices')
    .select('device_id')
    .where('rollout_id', '=', rollout.id)
    .where('stage', '=', rollout.stage)
    .where('status', '=', 'timed-out')
    .execute()
  if (timedOut.length === 0) return 0
  const active = new Set(
    (await listDevices(tx, rollout.organizationId))
      .filter((device) => device.status === 'active')
      .map((device) => device.id),
  )
  const deviceIds = timedOut.map((row) => row.device_id).filter((id) => active.has(id))
  for (let start = 0; start < deviceIds.length; start += 200) {
    await tx
      .updateTable('rollout_devices')
      .set({ status: 'pending', reason: null, updated_at: now.toISOString() })
      .where('rollout_id', '=', rollout.id)
      .where('status', '=', 'timed-out')
      .where('device_id', 'in', deviceIds.slice(start, start + 200))
      .execute()
  }
  return deviceIds.length
}

/** Ends a running or paused rollout for good: no device is offered its release any more. */
export async function abortRollout(
  tx: Transaction,
  dialect: Dialect,
  organizationId: string,
  rolloutId: string,
  now: Date,
): Promise<{ rollout: Rollout; changes: RolloutChange[] }> {
  const rollout = await lockRollout(tx, dialect, organizationId, rolloutId)
  if (rollout.state !== 'running' && rollout.state !== 'paused')
    throw stateError(rollout, 'aborted')
  const aborted = await update(tx, rollout, { state: 'aborted', paused_reason: null }, now)
  return {
    rollout: aborted,
    changes: [{ operation: 'rollout.abort', rolloutId, detail: { stage: aborted.stage } }],
  }
}

/**
 * The release the device should move to: that of a running rollout which took the device in
 * and has not heard a final status from it. A device told for the first time becomes `offered`.
 */
export async function offerFor(
  tx: Transaction,
  organizationId: string,
  deviceId: string,
  now: Date,
): Promise<{ offer: RolloutOffer | undefined; changes: RolloutChange[] }> {
  const current = await currentOffer(tx, organizationId, deviceId)
  if (current === undefined) return { offer: undefined, changes: [] }
  const { offer, status } = current
  const changes: RolloutChange[] = []
  if (status === 'pending') {
    await tx
      .updateTable('rollout_devices')
      .set({ status: 'offered', updated_at: now.toISOString() })
      .where('rollout_id', '=', offer.rolloutId)
      .where('device_id', '=', deviceId)
      .where('status', '=', 'pending')
      .execute()
    changes.push({
      operation: 'rollout.device.offer',
      rolloutId: offer.rolloutId,
      deviceId,
      detail: { release: offer.releaseId, version: offer.version },
    })
  }
  return { offer, changes }
}

/** What {@link offerFor} would answer, and the device's status, without changing anything. */
export async function currentOffer(
  tx: Transaction,
  organizationId: string,
  deviceId: string,
): Promise<{ offer: RolloutOffer; status: RolloutDeviceStatus } | undefined> {
  const row = await tx
    .selectFrom('rollout_devices')
    .innerJoin('rollouts', 'rollouts.id', 'rollout_devices.rollout_id')
    .select([
      'rollouts.id as rolloutId',
      'rollouts.release_id as releaseId',
      'rollouts.release_version as version',
      'rollout_devices.status as status',
    ])
    .where('rollout_devices.organization_id', '=', organizationId)
    .where('rollout_devices.device_id', '=', deviceId)
    .where('rollouts.state', '=', 'running')
    .where('rollout_devices.status', 'in', [...unsettled, 'timed-out'])
    .orderBy('rollouts.created_at', 'desc')
    .executeTakeFirst()
  if (row === undefined) return undefined
  return {
    offer: { rolloutId: row.rolloutId, releaseId: row.releaseId, version: row.version },
    status: row.status as RolloutDeviceStatus,
  }
}

/**
 * Checks a device's status report: `{ release, version, status, reason? }`, where status is
 * one of downloading, installed, failed, rolled-back and reason a short lowercase code such as
 * `signature-invalid` (never free text, which could carry anything). Throws `ERR_INPUT_INVALID`.
 */
export function checkStatusReport(body: unknown): {
  releaseId: string
  version: string
  status: ReportedStatus
  reason: string | null
} {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalid('body', 'body must be {"release", "version", "status", "reason"?}')
  }
  const report = body as Record<string, unknown>
  for (const name of Object.keys(report)) {
    if (!['release', 'version', 'status', 'reason'].includes(name)) {
      throw invalid(name, `${name} is not allowed; allowed: release, version, status, reason`)
    }
  }
  const { release, version, status, reason } = report
  if (typeof release !== 'string' || !releaseIdPattern.test(release)) {
    throw invalid('release', 'release must be a release id of 1–128 letters, digits or ._:-')
  }
  if (typeof version !== 'string' || version.length > 64 || !semver.test(version)) {
    throw invalid('version', 'version must be a SemVer 2.0 version')
  }
  if (typeof status !== 'string' || !(reportedStatuses as readonly string[]).includes(status)) {
    throw invalid('status', `status must be one of ${reportedStatuses.join(', ')}`)
  }
  if (reason !== undefined && (typeof reason !== 'string' || !reasonPattern.test(reason))) {
    throw invalid('reason', 'reason must be a code of 1–64 lowercase letters, digits or ._-')
  }
  return { releaseId: release, version, status: status as ReportedStatus, reason: reason ?? null }
}

/**
 * Records what a device reports about a release in the newest rollout of it that took the
 * device in, then evaluates that rollout, so that a failure past the threshold pauses it at once.
 * A status reported again changes nothing. `ERR_ROLLOUT_NOT_FOUND` when no rollout of that
 * release and version took the device; `ERR_ROLLOUT_STATE` for a report that cannot follow the
 * last (a device that failed cannot report installed).
 */
export async function recordStatusReport(
  tx: Transaction,
  dialect: Dialect,
  organizationId: string,
  deviceId: string,
  report: ReturnType<typeof checkStatusReport>,
  now: Date,
): Promise<{ rollout: Rollout; status: RolloutDeviceStatus; changes: RolloutChange[] }> {
  const row = await tx
    .selectFrom('rollout_devices')
    .innerJoin('rollouts', 'rollouts.id', 'rollout_devices.rollout_id')
    .select(['rollouts.id as rolloutId', 'rollout_devices.status as status'])
    .where('rollout_devices.organization_id', '=', organizationId)
    .where('rollout_devices.device_id', '=', deviceId)
    .where('rollouts.release_id', '=', report.releaseId)
    .where('rollouts.release_version', '=', report.version)
    .orderBy('rollouts.created_at', 'desc')
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError(
      'ERR_ROLLOUT_NOT_FOUND',
      'no rollout of this release and version includes this device',
    )
  }
  const rollout = await lockRollout(tx, dialect, organizationId, row.rolloutId)
  const current = row.status as RolloutDeviceStatus
  if (current === report.status) return { rollout, status: current, changes: [] }
  if (!nextStatuses[current].includes(report.status)) {
    throw new WardError(
      'ERR_ROLLOUT_STATE',
      `a device whose update is ${current} cannot report ${report.status}`,
      { details: { status: current } },
    )
  }
  await tx
    .updateTable('rollout_devices')
    .set({ status: report.status, reason: report.reason, updated_at: now.toISOString() })
    .where('rollout_id', '=', rollout.id)
    .where('device_id', '=', deviceId)
    .execute()
  const changes: RolloutChange[] = [
    {
      operation: 'rollout.device.status',
      rolloutId: rollout.id,
      deviceId,
      detail: {
        status: report.status,
        previous: current,
        ...(report.reason === null ? {} : { reason: report.reason }),
      },
    },
  ]
  const evaluated = await evaluateRollout(tx, dialect, rollout, now)
  return {
    rollout: evaluated.rollout,
    status: report.status,
    changes: [...changes, ...evaluated.changes],
  }
}

/** One rollout of the organization; `ERR_ROLLOUT_NOT_FOUND` otherwise. */
export async function findRollout(
  tx: Transaction,
  organizationId: string,
  rolloutId: string,
): Promise<Rollout> {
  const row = await tx
    .selectFrom('rollouts')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('id', '=', rolloutId)
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError('ERR_ROLLOUT_NOT_FOUND', 'no such rollout in this organization')
  }
  return toRollout(row)
}

/** The organization's rollouts, newest first. */
export async function listRollouts(tx: Transaction, organizationId: string): Promise<Rollout[]> {
  const rows = await tx
    .selectFrom('rollouts')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .orderBy('created_at', 'desc')
    .execute()
  return rows.map(toRollout)
}

/** Every running rollout of every organization, for the job that moves them on. */
export async function runningRollouts(tx: Transaction): Promise<Rollout[]> {
  const rows = await tx.selectFrom('rollouts').selectAll().where('state', '=', 'running').execute()
  return rows.map(toRollout)
}

/** The rollout with its devices counted per stage reached. */
export async function summarizeRollout(
  tx: Transaction,
  organizationId: string,
  rolloutId: string,
): Promise<RolloutSummary> {
  const rollout = await findRollout(tx, organizationId, rolloutId)
  const rows = await tx
    .selectFrom('rollout_devices')
    .select((eb) => ['stage', 'status', eb.fn.countAll().as('devices')])
    .where('rollout_id', '=', rolloutId)
    .groupBy(['stage', 'status'])
    .execute()
  const stages = rollout.stages.slice(0, rollout.stage + 1).map((percent, stage) => {
    const devices = emptyCounts()
    for (const row of rows) {
      if (Number(row.stage) === stage)
        devices[row.status as RolloutDeviceStatus] = Number(row.devices)
    }
    return { stage, percent, devices }
  })
  return { rollout, stages }
}

/** The devices the rollout took in, with their statuses, by stage. */
export async function listRolloutDevices(
  tx: Transaction,
  organizationId: string,
  rolloutId: string,
): Promise<RolloutDevice[]> {
  await findRollout(tx, organizationId, rolloutId)
  const rows = await tx
    .selectFrom('rollout_devices')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('rollout_id', '=', rolloutId)
    .orderBy('stage')
    .orderBy('device_id')
    .execute()
  return rows.map((row) => ({
    deviceId: row.device_id,
    stage: Number(row.stage),
    status: row.status as RolloutDeviceStatus,
    reason: row.reason,
    updatedAt: row.updated_at,
  }))
}

// Takes into stage `stage` the reachable devices whose position falls in it and that no
// earlier stage took. Devices that became active since the rollout started are considered too.
async function takeStageDevices(
  tx: Transaction,
  rollout: Rollout,
  stage: number,
  now: Date,
): Promise<RolloutChange[]> {
  const taken = new Set(
    (
      await tx
        .selectFrom('rollout_devices')
        .select('device_id')
        .where('rollout_id', '=', rollout.id)
        .execute()
    ).map((row) => row.device_id),
  )
  const devices = (await listDevices(tx, rollout.organizationId)).filter(
    (device) =>
      device.status === 'active' &&
      !taken.has(device.id) &&
      rollout.modelIds.includes(device.modelId) &&
      (rollout.deviceIds === null || rollout.deviceIds.includes(device.id)),
  )
  const chosen = devices.filter((device) => {
    const first = stageFor(rolloutPosition(rollout.id, device.id), rollout.percent, rollout.stages)
    return first !== undefined && first <= stage
  })
  const at = now.toISOString()
  for (let start = 0; start < chosen.length; start += 200) {
    await tx
      .insertInto('rollout_devices')
      .values(
        chosen.slice(start, start + 200).map((device) => ({
          rollout_id: rollout.id,
          organization_id: rollout.organizationId,
          device_id: device.id,
          stage,
          status: 'pending',
          reason: null,
          updated_at: at,
        })),
      )
      .execute()
  }
  return [
    {
      operation: 'rollout.stage.start',
      rolloutId: rollout.id,
      detail: {
        stage,
        percent: rollout.stages[stage] as number,
        devices: chosen.length,
        deadline: rollout.stageDeadlineAt,
      },
    },
  ]
}

async function stageCounts(
  tx: Transaction,
  rolloutId: string,
  stage: number,
): Promise<Record<RolloutDeviceStatus, number>> {
  const rows = await tx
    .selectFrom('rollout_devices')
    .select((eb) => ['status', eb.fn.countAll().as('devices')])
    .where('rollout_id', '=', rolloutId)
    .where('stage', '=', stage)
    .groupBy('status')
    .execute()
  const counts = emptyCounts()
  for (const row of rows) counts[row.status as RolloutDeviceStatus] = Number(row.devices)
  return counts
}

async function lockRollout(
  tx: Transaction,
  dialect: Dialect,
  organizationId: string,
  rolloutId: string,
): Promise<Rollout> {
  const query = tx
    .selectFrom('rollouts')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('id', '=', rolloutId)
  // SQLite takes the write lock when the transaction begins; PostgreSQL locks the row.
  const row = await (dialect === 'postgres' ? query.forUpdate() : query).executeTakeFirst()
  if (row === undefined) {
    throw new WardError('ERR_ROLLOUT_NOT_FOUND', 'no such rollout in this organization')
  }
  return toRollout(row)
}

function pause(tx: Transaction, rollout: Rollout, reason: PauseReason, now: Date) {
  return update(tx, rollout, { state: 'paused', paused_reason: reason }, now)
}

async function update(
  tx: Transaction,
  rollout: Rollout,
  changes: Partial<{
    state: RolloutState
    paused_reason: PauseReason | null
    stage: number
    stage_started_at: string
    stage_deadline_at: string
    accepted_failures: number
  }>,
  now: Date,
): Promise<Rollout> {
  await tx
    .updateTable('rollouts')
    .set({ ...changes, updated_at: now.toISOString() })
    .where('id', '=', rollout.id)
    .where('organization_id', '=', rollout.organizationId)
    .execute()
  return findRollout(tx, rollout.organizationId, rollout.id)
}

function checkPlan(plan: RolloutPlan): {
  modelIds: readonly string[] | undefined
  deviceIds: readonly string[] | undefined
  percent: number
  stages: number[]
  failureThreshold: number
  reportDeadlineSeconds: number
} {
  const percent = plan.percent ?? 100
  if (!Number.isInteger(percent) || percent < 1 || percent > 100) {
    throw invalid('percent', 'percent must be a whole number from 1 to 100')
  }
  const stages = [...(plan.stages ?? defaultStages)]
  if (
    stages.length < 1 ||
    stages.length > 10 ||
    stages.some((stage, index) => {
      const previous = index === 0 ? 0 : (stages[index - 1] as number)
      return !Number.isFinite(stage) || stage <= previous || stage > 100
    }) ||
    stages[stages.length - 1] !== 100
  ) {
    throw invalid(
      'stages',
      'stages must be 1–10 ascending percentages above 0 ending at 100, such as 1,10,50,100',
    )
  }
  const failureThreshold = plan.failureThreshold ?? 0.1
  if (!Number.isFinite(failureThreshold) || failureThreshold < 0 || failureThreshold >= 1) {
    throw invalid('failureThreshold', 'failure threshold must be a fraction from 0 to below 1')
  }
  const reportDeadlineSeconds = plan.reportDeadlineSeconds ?? 86_400
  if (
    !Number.isInteger(reportDeadlineSeconds) ||
    reportDeadlineSeconds < 60 ||
    reportDeadlineSeconds > 2_592_000
  ) {
    throw invalid('reportDeadline', 'report deadline must be 60–2592000 whole seconds')
  }
  for (const [field, list] of [
    ['models', plan.modelIds],
    ['devices', plan.deviceIds],
  ] as const) {
    if (list !== undefined && (list.length === 0 || list.length > 10_000)) {
      throw invalid(field, `${field} must list 1–10000 entries when given`)
    }
  }
  return {
    modelIds: plan.modelIds,
    deviceIds: plan.deviceIds,
    percent,
    stages,
    failureThreshold: Math.round(failureThreshold * 1000) / 1000,
    reportDeadlineSeconds,
  }
}

function stateError(rollout: Rollout, wanted: string): WardError {
  return new WardError(
    'ERR_ROLLOUT_STATE',
    `${withArticle(rollout.state)} rollout cannot be ${wanted}`,
    {
      details: { state: rollout.state },
    },
  )
}

function invalid(field: string, message: string): WardError {
  return new WardError('ERR_INPUT_INVALID', message, { details: { field } })
}

function emptyCounts(): Record<RolloutDeviceStatus, number> {
  return Object.fromEntries(allStatuses.map((status) => [status, 0])) as Record<
    RolloutDeviceStatus,
    number
  >
}

function sum(counts: StageCounts): number {
  return Object.values(counts).reduce((total, count) => total + count, 0)
}

function addSeconds(date: Date, seconds: number): string {
  return new Date(date.getTime() + seconds * 1000).toISOString()
}

function toRollout(row: {
  id: string
  organization_id: string
  release_id: string
  release_version: string
  model_ids: string
  device_ids: string | null
  percent: number
  stages: string
  failure_threshold_permille: number
  report_deadline_seconds: number
  state: string
  stage: number
  stage_started_at: string
  stage_deadline_at: string
  accepted_failures: number
  paused_reason: string | null
  created_at: string
  updated_at: string
}): Rollout {
  return {
    id: row.id,
    organizationId: row.organization_id,
    releaseId: row.release_id,
    releaseVersion: row.release_version,
    modelIds: JSON.parse(row.model_ids) as string[],
    deviceIds: row.device_ids === null ? null : (JSON.parse(row.device_ids) as string[]),
    percent: Number(row.percent),
    stages: JSON.parse(row.stages) as number[],
    failureThreshold: Number(row.failure_threshold_permille) / 1000,
    reportDeadlineSeconds: Number(row.report_deadline_seconds),
    state: row.state as RolloutState,
    stage: Number(row.stage),
    stageStartedAt: row.stage_started_at,
    stageDeadlineAt: row.stage_deadline_at,
    acceptedFailures: Number(row.accepted_failures),
    pausedReason: row.paused_reason as PauseReason | null,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  }
}
