import { randomUUID } from 'node:crypto'

import { WardError, isSemanticVersion } from '@ward/core'

import { auditEventTypes, type AuditEventInput } from '../audit/index.js'
import type { OperationContext } from '../context.js'
import type { Transaction } from '../store/index.js'
import { findOrganization, findOrganizationById, type Organization } from '../tenancy/index.js'
import type { Ward } from '../ward.js'
import type { FirmwareReleaseTable } from './tables.js'
import {
  currentTargets,
  ensureRepository,
  publishRepository,
  readMetadataFile,
  readTargetFile,
  refreshOnlineMetadata,
  repositoryOrganizations,
  type OnlineKeys,
  type PublishBundle,
  type PublishResult,
  type Release,
  type RepositorySettings,
} from './repository.js'

/** What a device reports after trying to install a release. */
export interface InstallReport {
  /** The TUF target name it tried. */
  readonly target: string
  readonly outcome: 'installed' | 'failed' | 'rolled-back'
  /** The version it ran before. */
  readonly fromVersion: string
  /** Why it failed or rolled back: a short, PHI-free reason from the agent. */
  readonly reason?: string
}

/**
 * The updates domain's operations: each organization's TUF repository, its firmware releases
 * and what devices report about installing them. Publication and every online signature run
 * in one transaction with their audit events in the organization's log.
 */
export class Updates {
  readonly #ward: Ward

  constructor(ward: Ward) {
    this.#ward = ward
  }

  get #settings(): RepositorySettings {
    return this.#ward.config.updates
  }

  /**
   * Ward's online snapshot and timestamp public keys for organization `slug`, made on first
   * request: what an offline root must list for those roles.
   */
  async onlineKeys(context: OperationContext, slug: string): Promise<OnlineKeys> {
    return this.#act(context, slug, async (tx, organization) => {
      const keys = await ensureRepository(tx, this.#ward.keys, organization.id)
      const events: AuditEventInput[] = keys.created
        ? (['snapshot', 'timestamp'] as const).map((role) => ({
            type: auditEventTypes.applicationActivity,
            operation: 'key.create',
            action: 'C' as const,
            entity: [
              {
                type: 'signing-key',
                what: keys[role].keyId,
                detail: { purpose: `update-${role}`, organization: slug },
              },
            ],
          }))
        : []
      return [{ snapshot: keys.snapshot, timestamp: keys.timestamp }, events]
    })
  }

  /**
   * Checks and publishes what was signed offline (see `publishRepository`): new roots, new
   * targets and their images and releases, then a snapshot and timestamp signed online. Each
   * root, the targets, each release and each online signature is an audit event. A refused
   * publication stores nothing and is audited, in a transaction of its own, as a security
   * alert naming the files it carried, what was refused and the error code.
   */
  async publish(
    context: OperationContext,
    slug: string,
    bundle: PublishBundle,
  ): Promise<PublishResult> {
    try {
      return await this.#publish(context, slug, bundle)
    } catch (error) {
      if (!(error instanceof WardError)) throw error
      if (error.code === 'ERR_ORGANIZATION_NOT_FOUND' || error.code === 'ERR_STORE_UNAVAILABLE') {
        throw error
      }
      await this.#act(context, slug, async () => [undefined, [refusedPublication(bundle, error)]])
      throw error
    }
  }

  async #publish(
    context: OperationContext,
    slug: string,
    bundle: PublishBundle,
  ): Promise<PublishResult> {
    return this.#act(context, slug, async (tx, organization) => {
      const result = await publishRepository(
        tx,
        this.#ward.keys,
        this.#settings,
        organization.id,
        bundle,
      )
      const events: AuditEventInput[] = []
      for (const version of result.rootVersions) {
        events.push(metadataEvent('update-root.publish', 'root', version))
      }
      if (result.targetsVersion !== null) {
        events.push(metadataEvent('update-targets.publish', 'targets', result.targetsVersion))
      }
      for (const release of result.releases) {
        events.push({
          type: auditEventTypes.applicationActivity,
          operation: 'firmware-release.create',
          action: 'C',
          entity: [
            {
              type: 'firmware-release',
              what: release.id,
              detail: {
                target: release.targetName,
                version: release.version,
                minVersion: release.minVersion,
                sha256: release.sha256,
                length: release.length,
                sbom: release.hasSbom,
              },
            },
          ],
        })
      }
      if (result.snapshotVersion !== null) {
        events.push(metadataEvent('update-snapshot.sign', 'snapshot', result.snapshotVersion))
      }
      if (result.timestampVersion !== null) {
        events.push(metadataEvent('update-timestamp.sign', 'timestamp', result.timestampVersion))
      }
      return [result, events]
    })
  }

  /**
   * Re-signs every repository's timestamp (and snapshot) that is past half its lifetime; the
   * scheduled job calls this. Returns how many repositories were re-signed.
   */
  async refreshOnlineMetadata(context: OperationContext, now = new Date()): Promise<number> {
    let refreshed = 0
    for (const organizationId of await repositoryOrganizations(this.#ward.store.db)) {
      const organization = await findOrganizationById(this.#ward.store.db, organizationId)
      const signed = await this.#act(context, organization.slug, async (tx) => {
        const result = await refreshOnlineMetadata(
          tx,
          this.#ward.keys,
          this.#settings,
          organizationId,
          now,
        )
        if (result === undefined) return [false, []]
        const events: AuditEventInput[] = []
        if (result.snapshotVersion !== undefined) {
          events.push(metadataEvent('update-snapshot.sign', 'snapshot', result.snapshotVersion))
        }
        events.push(metadataEvent('update-timestamp.sign', 'timestamp', result.timestampVersion))
        return [true, events]
      })
      if (signed) refreshed++
    }
    return refreshed
  }

  /** The organization's releases, newest first. */
  async listReleases(slug: string): Promise<Release[]> {
    const organization = await findOrganization(this.#ward.store.db, slug)
    return listReleases(this.#ward.store.db, organization.id)
  }

  /** Release `id` of the organization; `ERR_RELEASE_NOT_FOUND` otherwise. */
  async findRelease(slug: string, id: string): Promise<Release> {
    const organization = await findOrganization(this.#ward.store.db, slug)
    return findRelease(this.#ward.store.db, organization.id, id)
  }

  /** A metadata file of the organization's repository, for its devices. */
  metadataFile(organizationId: string, file: string): Promise<Uint8Array> {
    return readMetadataFile(this.#ward.store.db, organizationId, file)
  }

  /** A target file of the organization's repository, for its devices. */
  targetFile(organizationId: string, file: string): Promise<Uint8Array> {
    return readTargetFile(this.#ward.store.db, organizationId, file)
  }

  /** Records a device's install report and audits it in the organization's log. */
  async report(
    context: OperationContext,
    organizationId: string,
    deviceId: string,
    input: unknown,
  ): Promise<{ id: string; releaseId: string | null }> {
    const report = installReportOf(input)
    const organization = await findOrganizationById(this.#ward.store.db, organizationId)
    return this.#act(context, organization.slug, async (tx) => {
      const release = await tx
        .selectFrom('firmware_releases')
        .select(['id', 'version'])
        .where('organization_id', '=', organizationId)
        .where('target_name', '=', report.target)
        .executeTakeFirst()
      if (release === undefined) {
        throw new WardError(
          'ERR_RELEASE_NOT_FOUND',
          'no release of this organization has that target',
          {
            details: { field: 'target' },
          },
        )
      }
      const id = randomUUID()
      await tx
        .insertInto('firmware_reports')
        .values({
          id,
          organization_id: organizationId,
          device_id: deviceId,
          release_id: release.id,
          target_name: report.target,
          outcome: report.outcome,
          from_version: report.fromVersion,
          reason: report.reason ?? null,
          reported_at: new Date().toISOString(),
        })
        .execute()
      const event: AuditEventInput = {
        type: auditEventTypes.applicationActivity,
        operation: 'firmware.install-report',
        action: 'E',
        outcome: report.outcome === 'installed' ? '0' : '4',
        entity: [
          { type: 'Device', what: deviceId },
          {
            type: 'firmware-release',
            what: release.id,
            detail: { outcome: report.outcome, fromVersion: report.fromVersion },
          },
        ],
      }
      return [{ id, releaseId: release?.id ?? null }, [event]]
    })
  }

  async #act<T>(
    context: OperationContext,
    slug: string,
    work: (tx: Transaction, organization: Organization) => Promise<[T, AuditEventInput[]]>,
  ): Promise<T> {
    return this.#ward.store.transaction(async (tx) => {
      const organization = await findOrganization(tx, slug)
      const [result, events] = await work(tx, organization)
      for (const event of events) {
        await this.#ward.audit(
          tx,
          organization.slug,
          { ...context, organizationId: organization.id },
          event,
        )
      }
      return result
    })
  }
}

type AuditEntity = NonNullable<AuditEventInput['entity']>[number]

// Signed metadata that fails Ward's checks is what a stolen or rogue key, a tampered image or a
// rollback looks like, so a refusal is a security alert. It names the bundle's metadata files,
// marking the one or the target the error names as refused, never their content.
function refusedPublication(bundle: PublishBundle, error: WardError): AuditEventInput {
  const { file, target } = error.details
  const files: [string, 'root' | 'targets'][] = [
    ...[...bundle.roots.keys()]
      .sort((a, b) => a - b)
      .map((version): [string, 'root'] => [`${version}.root.json`, 'root']),
    ...(bundle.targets === undefined
      ? []
      : [[bundle.targets.file, 'targets'] as [string, 'targets']]),
  ]
  const entity: AuditEntity[] = files.map(([name, role]) => ({
    type: 'tuf-metadata',
    what: name.slice(0, 200),
    detail: { role, refused: name === file },
  }))
  if (typeof target === 'string') {
    entity.push({ type: 'firmware-target', what: target.slice(0, 200), detail: { refused: true } })
  }
  return {
    type: auditEventTypes.securityAlert,
    operation: 'update-repository.publish',
    action: 'C',
    outcome: '4',
    outcomeDescription: error.code,
    entity,
  }
}

function metadataEvent(operation: string, role: string, version: number): AuditEventInput {
  return {
    type: auditEventTypes.applicationActivity,
    operation,
    action: operation.endsWith('.sign') ? 'E' : 'C',
    entity: [{ type: 'tuf-metadata', what: `${version}.${role}.json`, detail: { role, version } }],
  }
}

/**
 * The organization's releases, newest first; those the newest signed targets no longer list
 * are marked withdrawn.
 */
export async function listReleases(tx: Transaction, organizationId: string): Promise<Release[]> {
  const rows = await tx
    .selectFrom('firmware_releases')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .orderBy('created_at', 'desc')
    .execute()
  const listed = (await currentTargets(tx, organizationId))?.names
  return rows.map((row) => releaseOf(row, listed))
}

/**
 * Release `id` of the organization, marked withdrawn when the newest signed targets no longer
 * list it; `ERR_RELEASE_NOT_FOUND` when there is none such.
 */
export async function findRelease(
  tx: Transaction,
  organizationId: string,
  id: string,
): Promise<Release> {
  const row = await tx
    .selectFrom('firmware_releases')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('id', '=', id)
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError('ERR_RELEASE_NOT_FOUND', `release ${id} does not exist`, {
      details: { release: id },
    })
  }
  return releaseOf(row, (await currentTargets(tx, organizationId))?.names)
}

/**
 * The firmware version each device of the organization last reported running, by device id:
 * after its newest install report, the release's version when it installed, otherwise the
 * version it reported running before (a failed or rolled-back install leaves it there).
 * Devices that never reported are absent.
 */
export async function reportedVersions(
  tx: Transaction,
  organizationId: string,
): Promise<Map<string, string>> {
  const rows = await tx
    .selectFrom('firmware_reports')
    .innerJoin('firmware_releases', 'firmware_releases.id', 'firmware_reports.release_id')
    .select([
      'firmware_reports.device_id as deviceId',
      'firmware_reports.outcome as outcome',
      'firmware_reports.from_version as fromVersion',
      'firmware_releases.version as version',
    ])
    .where('firmware_reports.organization_id', '=', organizationId)
    .orderBy('firmware_reports.reported_at')
    .orderBy('firmware_reports.id')
    .execute()
  const versions = new Map<string, string>()
  for (const row of rows) {
    versions.set(row.deviceId, row.outcome === 'installed' ? row.version : row.fromVersion)
  }
  return versions
}

/** A device's install report, as recorded. */
export interface RecordedInstallReport extends InstallReport {
  readonly id: string
  readonly deviceId: string
  /** The release the target named, or null when no release had that name. */
  readonly releaseId: string | null
  readonly reportedAt: string
}

/**
 * The organization's install reports, oldest first: all of them, or those about one release.
 * What a rollout reads to see how its devices fare.
 */
export async function listInstallReports(
  tx: Transaction,
  organizationId: string,
  filter: { releaseId?: string } = {},
): Promise<RecordedInstallReport[]> {
  let query = tx
    .selectFrom('firmware_reports')
    .selectAll()
    .where('organization_id', '=', organizationId)
  if (filter.releaseId !== undefined) query = query.where('release_id', '=', filter.releaseId)
  const rows = await query.orderBy('reported_at').orderBy('id').execute()
  return rows.map((row) => ({
    id: row.id,
    deviceId: row.device_id,
    releaseId: row.release_id,
    target: row.target_name,
    outcome: row.outcome as InstallReport['outcome'],
    fromVersion: row.from_version,
    ...(row.reason === null ? {} : { reason: row.reason }),
    reportedAt: row.reported_at,
  }))
}

function releaseOf(row: FirmwareReleaseTable, listed: ReadonlySet<string> | undefined): Release {
  return {
    id: row.id,
    organizationId: row.organization_id,
    targetName: row.target_name,
    version: row.version,
    minVersion: row.min_version,
    models: JSON.parse(row.models) as string[],
    hardwareRevisions: JSON.parse(row.hardware_revisions) as string[],
    notes: row.notes,
    sha256: row.image_sha256,
    length: Number(row.length),
    hasSbom: row.sbom !== null,
    targetsVersion: Number(row.targets_version),
    withdrawn: listed !== undefined && !listed.has(row.target_name),
    createdAt: row.created_at,
  }
}

const reasonCode = /^[A-Za-z][A-Za-z0-9._-]{0,63}$/

function installReportOf(input: unknown): InstallReport {
  const body = typeof input === 'object' && input !== null ? (input as Record<string, unknown>) : {}
  const allowed = ['target', 'outcome', 'fromVersion', 'reason']
  const unknownField = Object.keys(body).find((name) => !allowed.includes(name))
  if (unknownField !== undefined) {
    throw new WardError('ERR_INPUT_INVALID', `${unknownField} is not a report field`, {
      details: { field: unknownField },
    })
  }
  const { target, outcome, fromVersion, reason } = body
  if (typeof target !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(target)) {
    throw new WardError('ERR_INPUT_INVALID', 'target must be a target name', {
      details: { field: 'target' },
    })
  }
  if (outcome !== 'installed' && outcome !== 'failed' && outcome !== 'rolled-back') {
    throw new WardError('ERR_INPUT_INVALID', 'outcome must be installed, failed or rolled-back', {
      details: { field: 'outcome' },
    })
  }
  if (
    typeof fromVersion !== 'string' ||
    fromVersion.length > 32 ||
    !isSemanticVersion(fromVersion)
  ) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      'fromVersion must be a semantic version of at most 32 characters',
      {
        details: { field: 'fromVersion' },
      },
    )
  }
  // A code, not free text: a device's words could carry anything, PHI included, into the
  // audit log.
  if (reason !== undefined && (typeof reason !== 'string' || !reasonCode.test(reason))) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      'reason must be a code of 1–64 letters, digits or ._- starting with a letter',
      { details: { field: 'reason' } },
    )
  }
  return { target, outcome, fromVersion, ...(reason === undefined ? {} : { reason }) }
}
