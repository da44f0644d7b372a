import { createHash } from 'node:crypto'

import { WardError, isSemanticVersion, isWardError } from '@ward/core'

import type { DeviceClient } from './client.js'
import type { FirmwareUpdater } from './updates.js'

/** What `GET /v1/rollout` offers: the release a running rollout wants this device to move to. */
export interface RolloutOfferAnswer {
  readonly rollout: string
  readonly release: string
  readonly version: string
  /** The TUF target name of the release's image. */
  readonly target: string
}

/** How following a rollout ended. */
export type FollowOutcome =
  | { readonly outcome: 'no-update'; readonly version: string }
  | {
      readonly outcome: 'installed' | 'failed' | 'rolled-back'
      readonly offer: RolloutOfferAnswer
      /** The version the active slot runs now. */
      readonly version: string
      /** Why it failed or rolled back, as the code sent to Ward. */
      readonly reason?: string
    }

const idPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/
const targetPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/

/**
 * Follows the rollout Ward has for this device, once: asks `GET /v1/rollout`; with no offer,
 * does nothing. Otherwise reports `downloading`, installs exactly the offered TUF target with
 * `updater.install` (which verifies it through the repository and switches slots only when the
 * new one comes up healthy), and reports `installed`, `rolled-back` (the new slot was not
 * healthy; the device stays on its previous slot) or `failed` (the update was refused, with
 * the refusal's reason as a code) to `POST /v1/update-status`.
 *
 * Safe to run again at any point, after a crash too: Ward offers a release until it hears a
 * final status, a status sent again changes nothing, and a device whose active slot already
 * holds the offered target reports `installed` without installing it again. Errors reaching
 * Ward are thrown, for the caller to retry later.
 */
export async function followRollout(options: {
  readonly client: DeviceClient
  readonly updater: FirmwareUpdater
}): Promise<FollowOutcome> {
  const { client, updater } = options
  const offer = await askRollout(client)
  if (offer === undefined) return { outcome: 'no-update', version: await updater.runningVersion() }

  const state = await updater.slots()
  const active = state.slots[state.active]
  if (active?.target === offer.target && active.version === offer.version) {
    await reportStatus(client, offer, 'installed')
    return { outcome: 'installed', offer, version: active.version }
  }

  await reportStatus(client, offer, 'downloading')
  let outcome
  try {
    outcome = await updater.install(offer.target)
  } catch (error) {
    if (!isWardError(error, 'ERR_UPDATE_REFUSED')) throw error
    const reason = reasonCode(String(error.details['reason'] ?? 'update-refused'))
    await reportStatus(client, offer, 'failed', reason)
    return { outcome: 'failed', offer, version: await updater.runningVersion(), reason }
  }
  if (outcome.outcome === 'installed') {
    await reportStatus(client, offer, 'installed')
    return { outcome: 'installed', offer, version: outcome.version }
  }
  if (outcome.outcome === 'rolled-back') {
    const reason = 'health-check-failed'
    await reportStatus(client, offer, 'rolled-back', reason)
    return { outcome: 'rolled-back', offer, version: outcome.version, reason }
  }
  // install() answers only installed or rolled-back; up-to-date comes from update() alone.
  throw new WardError('ERR_INTERNAL', `unexpected install outcome ${outcome.outcome}`)
}

/** Asks Ward which release to move to; undefined when there is none. */
export async function askRollout(client: DeviceClient): Promise<RolloutOfferAnswer | undefined> {
  const answer = await client.request('GET', '/v1/rollout')
  if (answer.status !== 200) {
    throw new WardError(
      'ERR_INTERNAL',
      `Ward answered the rollout question with ${answer.status}`,
      {
        details: { status: answer.status },
      },
    )
  }
  const body = answer.body as { update?: unknown } | null
  const update = body?.update
  if (update === null) return undefined
  const offer = (typeof update === 'object' && update !== null ? update : {}) as Record<
    string,
    unknown
  >
  const { rollout, release, version, target } = offer
  if (
    typeof rollout !== 'string' ||
    !idPattern.test(rollout) ||
    typeof release !== 'string' ||
    !idPattern.test(release) ||
    typeof version !== 'string' ||
    !isSemanticVersion(version) ||
    typeof target !== 'string' ||
    !targetPattern.test(target)
  ) {
    throw new WardError(
      'ERR_ENCODING_INVALID',
      'the rollout offer lacks a rollout, release, semantic version or target name',
    )
  }
  return { rollout, release, version, target }
}

async function reportStatus(
  client: DeviceClient,
  offer: RolloutOfferAnswer,
  status: 'downloading' | 'installed' | 'failed' | 'rolled-back',
  reason?: string,
): Promise<void> {
  await client.postJson('/v1/update-status', {
    release: offer.release,
    version: offer.version,
    status,
    ...(reason === undefined ? {} : { reason }),
  })
}

/**
 * A refusal reason as the code `POST /v1/update-status` takes (1–64 of a-z 0-9 . _ -):
 * `ExpiredMetadataError` becomes `expired-metadata-error`.
 */
export function reasonCode(reason: string): string {
  const code = reason
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 64)
  return code === '' ? 'update-refused' : code
}

/**
 * The simulator's health check: whether a device of serial `serial` comes up healthy when a
 * share `failRate` (0–1) of a fleet is to fail. A device fails when the first 48 bits of
 * SHA-256(`ward-simulated-health:` ‖ serial), as a fraction, fall below `failRate`: about that
 * share of any fleet fails, always the same devices, whatever the release or the run.
 */
export function simulatedHealthy(serial: string, failRate: number): boolean {
  if (!Number.isFinite(failRate) || failRate < 0 || failRate > 1) {
    throw new WardError('ERR_INPUT_INVALID', 'the fail rate must be a number from 0 to 1', {
      details: { field: 'failRate' },
    })
  }
  const digest = createHash('sha256').update(`ward-simulated-health:${serial}`).digest()
  return digest.readUIntBE(0, 6) / 2 ** 48 >= failRate
}
