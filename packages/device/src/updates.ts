import { randomUUID } from 'node:crypto'
import { copyFile, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

import { WardError, compareSemanticVersions, isSemanticVersion } from '@ward/core'
import { Updater, type Fetcher } from 'tuf-js'
import { DownloadHTTPError, DownloadLengthMismatchError } from 'tuf-js/dist/error.js'

import type { DeviceClient } from './client.js'

/** What the targets role signed about an image, beyond TUF's own length and hashes. */
export interface FirmwareFields {
  readonly version: string
  readonly minVersion: string
  readonly models: readonly string[]
  readonly hardwareRevisions: readonly string[]
  readonly notes: string
}

/** A release the device may install, as the verified targets metadata lists it. */
export interface AvailableUpdate {
  readonly target: string
  readonly length: number
  readonly fields: FirmwareFields
}

/** The A/B slots: which one runs, and what each holds. */
export interface SlotState {
  readonly active: 'a' | 'b'
  readonly slots: {
    readonly a: { readonly version: string; readonly target: string | null } | null
    readonly b: { readonly version: string; readonly target: string | null } | null
  }
}

/** How an update attempt ended. */
export type UpdateOutcome =
  | { readonly outcome: 'up-to-date'; readonly version: string }
  | { readonly outcome: 'installed'; readonly version: string; readonly target: string }
  | {
      readonly outcome: 'rolled-back'
      readonly version: string
      readonly target: string
      readonly reason: string
    }

/** Options of a {@link FirmwareUpdater}. */
export interface FirmwareUpdaterOptions {
  readonly client: DeviceClient
  /** The agent's state directory; updates live under `updates/` in it. */
  readonly stateDirectory: string
  /** The root metadata the device was manufactured with: its trust anchor for updates. */
  readonly trustedRoot: Uint8Array
  /** The device model name, as releases list it. */
  readonly model: string
  readonly hardwareRevision: string
  /** The version of the factory image, used when the slots are first set up. */
  readonly factoryVersion: string
  /**
   * Whether a freshly installed slot came up healthy. The simulator answers from its own
   * setting; a real device boots the slot and runs its self-test. Defaults to healthy.
   */
  readonly healthCheck?: (slot: { version: string; imagePath: string }) => Promise<boolean>
  /** Largest image the device accepts, whatever the metadata says. */
  readonly maxImageBytes?: number
}

const defaultMaxImageBytes = 64 * 1024 * 1024

/**
 * The device's update client. It checks for updates with tuf-js over the agent's mutual-TLS
 * connection, so everything it acts on was verified by the organization's offline root and
 * targets keys and Ward's online snapshot and timestamp keys; downloads only what TUF
 * verified; refuses an image for another model or hardware revision, older than or equal to
 * the running version, or whose minimum version is above it; installs into the inactive A/B
 * slot; and switches to it only when it comes up healthy, staying on (rolling back to) the
 * previous slot otherwise. Each attempt is reported to Ward.
 */
export class FirmwareUpdater {
  readonly #options: FirmwareUpdaterOptions
  readonly #directory: string

  constructor(options: FirmwareUpdaterOptions) {
    if (!isSemanticVersion(options.factoryVersion)) {
      throw new WardError('ERR_INPUT_INVALID', 'factoryVersion must be a semantic version', {
        details: { field: 'factoryVersion' },
      })
    }
    this.#options = options
    this.#directory = join(options.stateDirectory, 'updates')
  }

  /** The slots as stored, set up with the factory image in slot A on first use. */
  async slots(): Promise<SlotState> {
    const path = join(this.#directory, 'slots.json')
    try {
      return JSON.parse(await readFile(path, 'utf8')) as SlotState
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code !== 'ENOENT') throw cause
    }
    const initial: SlotState = {
      active: 'a',
      slots: { a: { version: this.#options.factoryVersion, target: null }, b: null },
    }
    await this.#writeSlots(initial)
    return initial
  }

  /** The version the active slot runs. */
  async runningVersion(): Promise<string> {
    const state = await this.slots()
    return (state.slots[state.active] as { version: string }).version
  }

  /**
   * Refreshes the TUF metadata and returns the newest release this device may install, or
   * undefined when there is none. Throws `ERR_UPDATE_REFUSED` naming the TUF check that failed
   * when the repository's metadata cannot be trusted.
   */
  async check(): Promise<AvailableUpdate | undefined> {
    const updater = await this.#updater()
    await refused(() => updater.refresh())
    const running = await this.runningVersion()
    const candidates = (await this.#verifiedTargets()).filter(
      (target) =>
        this.#fits(target.fields) &&
        compareSemanticVersions(target.fields.version, running) > 0 &&
        compareSemanticVersions(target.fields.minVersion, running) <= 0,
    )
    candidates.sort((x, y) => compareSemanticVersions(y.fields.version, x.fields.version))
    return candidates[0]
  }

  /** Checks for an update and installs the newest one there is. */
  async update(): Promise<UpdateOutcome> {
    const available = await this.check()
    if (available === undefined) {
      return { outcome: 'up-to-date', version: await this.runningVersion() }
    }
    return this.install(available.target)
  }

  /**
   * Installs target `target`: refreshes the metadata, checks the target's signed fields
   * against this device, downloads the image through tuf-js (which checks its length and
   * hash), writes it to the inactive slot and switches to it if it comes up healthy. Throws
   * `ERR_UPDATE_REFUSED` with `details.reason` saying why it would not install, after telling
   * Ward.
   */
  async install(target: string): Promise<UpdateOutcome> {
    const running = await this.runningVersion()
    try {
      const updater = await this.#updater()
      await refused(() => updater.refresh())
      const info = await refused(() => updater.getTargetInfo(target))
      if (info === undefined) {
        throw refusal('unknown-target', `target ${target} is not in the signed targets metadata`)
      }
      const fields = firmwareFieldsOf(info.custom)
      this.#checkInstallable(fields, running)
      const limit = this.#options.maxImageBytes ?? defaultMaxImageBytes
      if (info.length > limit) {
        throw refusal('too-large', `target ${target} is ${info.length} bytes; at most ${limit}`)
      }

      const downloads = join(this.#directory, 'downloads')
      await mkdir(downloads, { recursive: true })
      const downloaded = join(downloads, `${randomUUID()}.bin`)
      await refused(() => updater.downloadTarget(info, downloaded))

      const state = await this.slots()
      const inactive = state.active === 'a' ? 'b' : 'a'
      const imagePath = join(this.#directory, 'slots', `${inactive}.bin`)
      await mkdir(join(this.#directory, 'slots'), { recursive: true })
      await copyFile(downloaded, `${imagePath}.new`)
      await rename(`${imagePath}.new`, imagePath)
      await rm(downloaded, { force: true })
      await this.#writeSlots({
        active: state.active,
        slots: { ...state.slots, [inactive]: { version: fields.version, target } },
      })

      const healthy = await (this.#options.healthCheck ?? (async () => true))({
        version: fields.version,
        imagePath,
      })
      if (!healthy) {
        const reason = `version ${fields.version} did not come up healthy`
        await this.#report({
          target,
          outcome: 'rolled-back',
          fromVersion: running,
          reason: 'unhealthy',
        })
        return { outcome: 'rolled-back', version: running, target, reason }
      }
      const switched = await this.slots()
      await this.#writeSlots({ ...switched, active: inactive })
      await this.#report({ target, outcome: 'installed', fromVersion: running })
      return { outcome: 'installed', version: fields.version, target }
    } catch (error) {
      if (error instanceof WardError && error.code === 'ERR_UPDATE_REFUSED') {
        await this.#report({
          target,
          outcome: 'failed',
          fromVersion: running,
          // Ward takes a code; the device keeps tuf-js's own words in the error it throws.
          reason: String(error.details['reason'] ?? 'refused').slice(0, 64),
        }).catch(() => undefined)
      }
      throw error
    }
  }

  #fits(fields: FirmwareFields): boolean {
    return (
      fields.models.includes(this.#options.model) &&
      (fields.hardwareRevisions.length === 0 ||
        fields.hardwareRevisions.includes(this.#options.hardwareRevision))
    )
  }

  #checkInstallable(fields: FirmwareFields, running: string): void {
    if (!this.#fits(fields)) {
      throw refusal(
        'wrong-model',
        `the image is for ${fields.models.join(', ')}` +
          `${fields.hardwareRevisions.length === 0 ? '' : ` revision ${fields.hardwareRevisions.join(', ')}`}, ` +
          `not ${this.#options.model} revision ${this.#options.hardwareRevision}`,
      )
    }
    if (compareSemanticVersions(fields.version, running) <= 0) {
      throw refusal(
        'downgrade',
        `version ${fields.version} is not newer than the running version ${running}`,
      )
    }
    if (compareSemanticVersions(fields.minVersion, running) > 0) {
      throw refusal(
        'below-min-version',
        `version ${fields.version} may be installed only over ${fields.minVersion} or later; ` +
          `this device runs ${running}`,
      )
    }
  }

  async #verifiedTargets(): Promise<AvailableUpdate[]> {
    // tuf-js writes targets.json only after verifying it, so what is read here was signed by
    // the targets role and matched the snapshot.
    const text = await readFile(join(this.#directory, 'tuf', 'targets.json'), 'utf8')
    const targets = (JSON.parse(text) as { signed: { targets: Record<string, unknown> } }).signed
      .targets
    const available: AvailableUpdate[] = []
    for (const [target, info] of Object.entries(targets)) {
      const entry = info as { length: number; custom?: Record<string, unknown> }
      try {
        available.push({ target, length: entry.length, fields: firmwareFieldsOf(entry.custom) })
      } catch {
        // A target without Ward's fields is not firmware this agent can judge; it is skipped.
      }
    }
    return available
  }

  async #updater(): Promise<Updater> {
    const metadataDir = join(this.#directory, 'tuf')
    await mkdir(metadataDir, { recursive: true })
    try {
      await stat(join(metadataDir, 'root.json'))
    } catch {
      await writeFile(join(metadataDir, 'root.json'), this.#options.trustedRoot)
    }
    const base = new URL(this.#options.client.identity.url)
    const metadataBaseUrl = new URL('updates', ensureSlash(base)).href
    return new Updater({
      metadataDir,
      metadataBaseUrl,
      targetBaseUrl: `${metadataBaseUrl}/targets`,
      targetDir: join(this.#directory, 'downloads'),
      fetcher: new MutualTlsFetcher(this.#options.client, base),
      config: { fetchRetries: 0 },
    })
  }

  async #report(report: {
    target: string
    outcome: 'installed' | 'failed' | 'rolled-back'
    fromVersion: string
    reason?: string
  }): Promise<void> {
    await this.#options.client.postJson('/updates/report', report)
  }

  async #writeSlots(state: SlotState): Promise<void> {
    await mkdir(this.#directory, { recursive: true })
    const path = join(this.#directory, 'slots.json')
    await writeFile(`${path}.new`, JSON.stringify(state))
    await rename(`${path}.new`, path)
  }
}

function ensureSlash(url: URL): URL {
  const copy = new URL(url.href)
  if (!copy.pathname.endsWith('/')) copy.pathname = `${copy.pathname}/`
  return copy
}

/**
 * tuf-js's fetcher over the device's own mutual-TLS connection: the path of each URL tuf-js
 * builds is requested from Ward's device endpoint with the device certificate, never from
 * anywhere else, and no more than the length tuf-js allows is read.
 */
class MutualTlsFetcher implements Fetcher {
  readonly #client: DeviceClient
  readonly #base: URL

  constructor(client: DeviceClient, base: URL) {
    this.#client = client
    this.#base = base
  }

  async downloadBytes(url: string, maxLength: number): Promise<Buffer> {
    const target = new URL(url)
    if (target.origin !== this.#base.origin) {
      throw new WardError('ERR_UPDATE_REFUSED', 'updates come only from Ward', {
        details: { reason: 'foreign-url' },
      })
    }
    let answer
    try {
      answer = await this.#client.download(`${target.pathname}${target.search}`, maxLength)
    } catch (cause) {
      const messages = `${(cause as Error).message} ${String((cause as Error).cause ?? '')}`
      if (/larger than/.test(messages)) {
        throw new DownloadLengthMismatchError(`${target.pathname} exceeds ${maxLength} bytes`)
      }
      throw cause
    }
    if (answer.status !== 200) {
      throw new DownloadHTTPError(`${target.pathname} answered ${answer.status}`, answer.status)
    }
    return answer.body
  }

  async downloadFile<T>(
    url: string,
    maxLength: number,
    handler: (file: string) => Promise<T>,
  ): Promise<T> {
    const bytes = await this.downloadBytes(url, maxLength)
    const directory = join((await import('node:os')).tmpdir(), `ward-update-${randomUUID()}`)
    await mkdir(directory, { mode: 0o700 })
    const file = join(directory, 'download')
    try {
      await writeFile(file, bytes)
      return await handler(file)
    } finally {
      await rm(directory, { recursive: true, force: true })
    }
  }
}

function firmwareFieldsOf(custom: unknown): FirmwareFields {
  const ward =
    typeof custom === 'object' && custom !== null
      ? (custom as Record<string, unknown>)['ward']
      : undefined
  const fields = (typeof ward === 'object' && ward !== null ? ward : {}) as Record<string, unknown>
  const strings = (value: unknown) =>
    Array.isArray(value) && value.every((item) => typeof item === 'string')
  if (
    typeof fields['version'] !== 'string' ||
    !isSemanticVersion(fields['version']) ||
    typeof fields['minVersion'] !== 'string' ||
    !isSemanticVersion(fields['minVersion']) ||
    !strings(fields['models']) ||
    !strings(fields['hardwareRevisions'])
  ) {
    throw refusal('fields-missing', 'the target lacks the version, models and revisions it needs')
  }
  return {
    version: fields['version'],
    minVersion: fields['minVersion'],
    models: fields['models'] as string[],
    hardwareRevisions: fields['hardwareRevisions'] as string[],
    notes: typeof fields['notes'] === 'string' ? fields['notes'] : '',
  }
}

function refusal(reason: string, message: string, cause?: unknown): WardError {
  return new WardError('ERR_UPDATE_REFUSED', `update refused: ${message}`, {
    details: { reason },
    ...(cause === undefined ? {} : { cause }),
  })
}

/**
 * Runs a tuf-js step; its errors become `ERR_UPDATE_REFUSED` whose reason is the tuf-js error
 * class (`ExpiredMetadataError`, `BadVersionError`, `UnsignedMetadataError`, …) and whose
 * message keeps tuf-js's own words, so a refusal says which check failed.
 */
async function refused<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step()
  } catch (error) {
    if (error instanceof WardError) throw error
    const name = error instanceof Error ? error.constructor.name : 'Error'
    const message = error instanceof Error ? error.message : String(error)
    throw refusal(name, `${name}: ${message}`, error)
  }
}
