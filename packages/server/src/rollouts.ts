import { isWardError } from '@ward/core'

import { auditEventTypes, type AuditEventInput } from './audit/index.js'
import type { OperationContext } from './context.js'
import { findDevice, findDeviceModel } from './devices/index.js'
import type { Transaction } from './store/index.js'
import { findOrganization, findOrganizationById, type Organization } from './tenancy/index.js'
import {
  abortRollout,
  checkStatusReport,
  createRollout,
  currentOffer,
  evaluateRollout,
  listRolloutDevices,
  listRollouts,
  offerFor,
  pauseRollout,
  recordStatusReport,
  resumeRollout,
  runningRollouts,
  summarizeRollout,
  type ReleaseCatalog,
  type Rollout,
  type RolloutChange,
  type RolloutDevice,
  type RolloutDeviceStatus,
  type RolloutOffer,
  type RolloutSummary,
} from './updates/index.js'
import type { Ward } from './ward.js'

/** What an operator asks for when creating a rollout; devices and models by name or id. */
export interface RolloutRequest {
  readonly releaseId: string
  /** Device model names or ids; default every model the release fits. */
  readonly models?: readonly string[]
  /** Device serials or ids: the group the rollout is limited to. */
  readonly devices?: readonly string[]
  readonly percent?: number
  readonly stages?: readonly number[]
  readonly failureThreshold?: number
  readonly reportDeadlineSeconds?: number
}

/** What a device is told to move to: the offer and the TUF target name of its release. */
export interface DeviceRolloutOffer extends RolloutOffer {
  readonly target: string
}

/**
 * Staged rollouts of firmware releases: creation, the operator's pause, resume and abort, what
 * the device endpoint tells a device and records from it, and the scheduled advance. Every
 * change is audited in the organization's log in the transaction that makes it.
 */
export class Rollouts {
  readonly #ward: Ward
  #releases: ReleaseCatalog
  readonly #clock: () => Date
  readonly #slugs = new Map<string, string>()

  /** `releases` is where releases are looked up; Ward opens with its TUF repository there. */
  constructor(ward: Ward, options: { releases: ReleaseCatalog; clock?: () => Date }) {
    this.#ward = ward
    this.#releases = options.releases
    this.#clock = options.clock ?? (() => new Date())
  }

  /** Makes `catalog` the place rollouts look releases up from now on. */
  useReleases(catalog: ReleaseCatalog): void {
    this.#releases = catalog
  }

  /** Creates a rollout and starts its first stage. */
  async create(context: OperationContext, slug: string, request: RolloutRequest): Promise<Rollout> {
    return this.#act(context, slug, async (tx, organization) => {
      const release = await this.#releases.findRelease(tx, organization.id, request.releaseId)
      const modelIds =
        request.models === undefined
          ? undefined
          : await Promise.all(
              request.models.map(
                async (model) => (await findDeviceModel(tx, organization.id, model)).id,
              ),
            )
      const deviceIds =
        request.devices === undefined
          ? undefined
          : await Promise.all(
              request.devices.map(
                async (device) => (await findDevice(tx, organization.id, device)).id,
              ),
            )
      return createRollout(tx, {
        dialect: this.#ward.store.dialect,
        organizationId: organization.id,
        release,
        plan: {
          ...(modelIds === undefined ? {} : { modelIds }),
          ...(deviceIds === undefined ? {} : { deviceIds }),
          ...(request.percent === undefined ? {} : { percent: request.percent }),
          ...(request.stages === undefined ? {} : { stages: request.stages }),
          ...(request.failureThreshold === undefined
            ? {}
            : { failureThreshold: request.failureThreshold }),
          ...(request.reportDeadlineSeconds === undefined
            ? {}
            : { reportDeadlineSeconds: request.reportDeadlineSeconds }),
        },
        now: this.#clock(),
      })
    })
  }

  /** Pauses a running rollout: no device is offered its release until it resumes. */
  pause(context: OperationContext, slug: string, rolloutId: string): Promise<Rollout> {
    return this.#act(context, slug, (tx, organization) =>
      pauseRollout(tx, this.#ward.store.dialect, organization.id, rolloutId, this.#clock()),
    )
  }

  /** Resumes a paused rollout, accepting the failures its stage has so far. */
  resume(context: OperationContext, slug: string, rolloutId: string): Promise<Rollout> {
    return this.#act(context, slug, (tx, organization) =>
      resumeRollout(tx, this.#ward.store.dialect, organization.id, rolloutId, this.#clock()),
    )
  }

  /** Ends a rollout for good. */
  abort(context: OperationContext, slug: string, rolloutId: string): Promise<Rollout> {
    return this.#act(context, slug, (tx, organization) =>
      abortRollout(tx, this.#ward.store.dialect, organization.id, rolloutId, this.#clock()),
    )
  }

  /** The organization's rollouts, newest first. */
  async list(slug: string): Promise<Rollout[]> {
    const organization = await findOrganization(this.#ward.store.db, slug)
    return listRollouts(this.#ward.store.db, organization.id)
  }

  /** A rollout with its devices counted per stage and status. */
  async summary(slug: string, rolloutId: string): Promise<RolloutSummary> {
    const organization = await findOrganization(this.#ward.store.db, slug)
    return summarizeRollout(this.#ward.store.db, organization.id, rolloutId)
  }

  /** Every device a rollout took in, with its status. */
  async devices(slug: string, rolloutId: string): Promise<RolloutDevice[]> {
    const organization = await findOrganization(this.#ward.store.db, slug)
    return listRolloutDevices(this.#ward.store.db, organization.id, rolloutId)
  }

  /**
   * What the device endpoint answers a device asking which release to move to: the offer with
   * the release's TUF target name, looked up in the release catalog. A release withdrawn since
   * (the newest signed targets no longer list it) is offered to nobody: a device could not
   * install it, and its rollout pauses on its deadline for an operator to abort.
   */
  async offer(
    context: OperationContext,
    organizationId: string,
    deviceId: string,
  ): Promise<DeviceRolloutOffer | undefined> {
    // Asked on every cycle: only a device told for the first time needs a write (and its audit).
    const current = await currentOffer(this.#ward.store.db, organizationId, deviceId)
    const offer =
      current === undefined || current.status !== 'pending'
        ? current?.offer
        : await this.#actIn(context, organizationId, async (tx) => {
            const { offer, changes } = await offerFor(tx, organizationId, deviceId, this.#clock())
            return { result: offer, changes }
          })
    if (offer === undefined) return undefined
    try {
      const release = await this.#releases.findRelease(
        this.#ward.store.db,
        organizationId,
        offer.releaseId,
      )
      return { ...offer, target: release.targetName }
    } catch (error) {
      if (isWardError(error, 'ERR_RELEASE_WITHDRAWN')) return undefined
      throw error
    }
  }

  /** Records a device's status report (the body of `POST /v1/update-status`). */
  async report(
    context: OperationContext,
    organizationId: string,
    deviceId: string,
    body: unknown,
  ): Promise<{ rollout: Rollout; status: RolloutDeviceStatus }> {
    const report = checkStatusReport(body)
    return this.#actIn(context, organizationId, async (tx) => {
      const recorded = await recordStatusReport(
        tx,
        this.#ward.store.dialect,
        organizationId,
        deviceId,
        report,
        this.#clock(),
      )
      return {
        result: { rollout: recorded.rollout, status: recorded.status },
        changes: recorded.changes,
      }
    })
  }

  /**
   * Moves every running rollout on as its devices' reports and deadlines allow; the rollout
   * job calls this. Each rollout is evaluated in its own transaction. Resolves with the changes
   * made.
   */
  async advance(context: OperationContext): Promise<RolloutChange[]> {
    const all: RolloutChange[] = []
    for (const rollout of await runningRollouts(this.#ward.store.db)) {
      const changes = await this.#actIn(context, rollout.organizationId, async (tx) => {
        const evaluated = await evaluateRollout(
          tx,
          this.#ward.store.dialect,
          rollout,
          this.#clock(),
        )
        return { result: evaluated.changes, changes: evaluated.changes }
      })
      all.push(...changes)
    }
    return all
  }

  async #act(
    context: OperationContext,
    slug: string,
    work: (
      tx: Transaction,
      organization: Organization,
    ) => Promise<{ rollout: Rollout; changes: RolloutChange[] }>,
  ): Promise<Rollout> {
    return this.#ward.store.transaction(async (tx) => {
      const organization = await findOrganization(tx, slug)
      const { rollout, changes } = await work(tx, organization)
      for (const change of changes) {
        await this.#ward.audit(
          tx,
          organization.slug,
          { ...context, organizationId: organization.id },
          auditEventOf(change),
        )
      }
      return rollout
    })
  }

  async #actIn<T>(
    context: OperationContext,
    organizationId: string,
    work: (tx: Transaction) => Promise<{ result: T; changes: RolloutChange[] }>,
  ): Promise<T> {
    let slug = this.#slugs.get(organizationId)
    if (slug === undefined) {
      // An organization's slug never changes.
      slug = (await findOrganizationById(this.#ward.store.db, organizationId)).slug
      this.#slugs.set(organizationId, slug)
    }
    const logName = slug
    return this.#ward.store.transaction(async (tx) => {
      const { result, changes } = await work(tx)
      for (const change of changes) {
        await this.#ward.audit(tx, logName, { ...context, organizationId }, auditEventOf(change))
      }
      return result
    })
  }
}

function auditEventOf(change: RolloutChange): AuditEventInput {
  return {
    type: auditEventTypes.applicationActivity,
    operation: change.operation,
    action: change.operation === 'rollout.create' ? 'C' : 'U',
    entity: [
      { type: 'rollout', what: change.rolloutId, detail: change.detail },
      ...(change.deviceId === undefined ? [] : [{ type: 'Device', what: change.deviceId }]),
    ],
  }
}
