import { createHash, randomUUID } from 'node:crypto'

import {
  WardError,
  compareSemanticVersions,
  tufDate,
  tufKeyId,
  type TufPublicKey,
} from '@ward/core'

import { createSigningKey, unwrapSigningKey, type KeyWrappingProvider } from '../keys/index.js'
import type { Transaction } from '../store/index.js'
import {
  checkThreshold,
  metadataBytes,
  parseMetadata,
  signMetadata,
  tufSignerFromKey,
  tufSpecVersion,
  type RootSigned,
  type SnapshotSigned,
  type TargetFileInfo,
  type TargetsSigned,
  type TimestampSigned,
  type TufEnvelope,
  type TufRole,
  type TufSigner,
} from './tuf-metadata.js'

/** Ward's online keys for an organization's repository, as a root must list them. */
export interface OnlineKeys {
  readonly snapshot: { readonly keyId: string; readonly key: TufPublicKey }
  readonly timestamp: { readonly keyId: string; readonly key: TufPublicKey }
}

/** What `ward updates publish` hands Ward: files signed offline, by name. */
export interface PublishBundle {
  /** `N.root.json` files by version. */
  readonly roots: ReadonlyMap<number, Uint8Array>
  /** The newest `N.targets.json`, when the bundle carries one. */
  readonly targets?: { readonly file: string; readonly bytes: Uint8Array }
  /** Firmware images by lowercase hex SHA-256. */
  readonly images: ReadonlyMap<string, Uint8Array>
  /** SBOMs by lowercase hex SHA-256. */
  readonly sboms: ReadonlyMap<string, Uint8Array>
}

/** A firmware release: one target of the organization's signed targets metadata. */
export interface Release {
  readonly id: string
  readonly organizationId: string
  /** The TUF target name devices download it by. */
  readonly targetName: string
  readonly version: string
  readonly minVersion: string
  readonly models: readonly string[]
  readonly hardwareRevisions: readonly string[]
  readonly notes: string
  readonly sha256: string
  readonly length: number
  readonly hasSbom: boolean
  /** The targets metadata version that first listed it. */
  readonly targetsVersion: number
  /**
   * True when the newest signed targets metadata no longer lists it: devices verify against
   * that metadata, so none can install it any more.
   */
  readonly withdrawn: boolean
  readonly createdAt: string
}

/** What one publication changed. */
export interface PublishResult {
  readonly rootVersions: readonly number[]
  readonly targetsVersion: number | null
  readonly releases: readonly Release[]
  readonly snapshotVersion: number | null
  readonly timestampVersion: number | null
}

/**
 * How long, at least, root and targets metadata must remain valid when Ward publishes it: 12
 * hours. Both are signed offline, so Ward cannot renew them as it renews the snapshot and
 * timestamp; metadata that expires soon after publication would leave every device refusing
 * updates before its key holders could sign and carry over a new version. Twelve hours leaves
 * time to notice and re-sign, and still lets metadata signed with the shortest lifetime the
 * offline command writes (`ward updates sign-root|sign-release --expires-days 1`) be published
 * the day it was signed.
 */
export const minimumOfflineLifetimeSeconds = 12 * 3600

/** Lifetimes of the metadata Ward signs online, and the image size limit. */
export interface RepositorySettings {
  readonly maxImageBytes: number
  readonly timestampLifetimeSeconds: number
  readonly snapshotLifetimeSeconds: number
}

/**
 * Ward's online snapshot and timestamp keys for the organization, made (and stored wrapped
 * under the master key) the first time they are asked for. `created` says whether they were.
 */
export async function ensureRepository(
  tx: Transaction,
  provider: KeyWrappingProvider,
  organizationId: string,
): Promise<OnlineKeys & { created: boolean }> {
  let row = await tx
    .selectFrom('update_repositories')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .executeTakeFirst()
  let created = false
  if (row === undefined) {
    const snapshot = await createSigningKey(tx, provider, 'update-snapshot')
    const timestamp = await createSigningKey(tx, provider, 'update-timestamp')
    row = {
      organization_id: organizationId,
      snapshot_key_id: snapshot.id,
      timestamp_key_id: timestamp.id,
      created_at: new Date().toISOString(),
    }
    await tx.insertInto('update_repositories').values(row).execute()
    created = true
  }
  const [snapshot, timestamp] = await Promise.all([
    onlineSigner(tx, provider, row.snapshot_key_id),
    onlineSigner(tx, provider, row.timestamp_key_id),
  ])
  return {
    created,
    snapshot: { keyId: snapshot.keyId, key: snapshot.publicKey },
    timestamp: { keyId: timestamp.keyId, key: timestamp.publicKey },
  }
}

async function onlineSigner(
  tx: Transaction,
  provider: KeyWrappingProvider,
  keyId: string,
): Promise<TufSigner> {
  return tufSignerFromKey((await unwrapSigningKey(tx, provider, keyId)).privateKey)
}

async function onlineSigners(
  tx: Transaction,
  provider: KeyWrappingProvider,
  organizationId: string,
) {
  const row = await tx
    .selectFrom('update_repositories')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError(
      'ERR_UPDATE_REPOSITORY_NOT_FOUND',
      'the organization has no update repository yet; run ward updates online-keys first',
    )
  }
  return {
    snapshot: await onlineSigner(tx, provider, row.snapshot_key_id),
    timestamp: await onlineSigner(tx, provider, row.timestamp_key_id),
  }
}

/** The newest stored version of `role`, parsed, or undefined. */
async function latest(tx: Transaction, organizationId: string, role: TufRole) {
  const row = await tx
    .selectFrom('update_metadata')
    .select(['version', 'body', 'expires_at'])
    .where('organization_id', '=', organizationId)
    .where('role', '=', role)
    .orderBy('version', 'desc')
    .limit(1)
    .executeTakeFirst()
  if (row === undefined) return undefined
  return {
    version: Number(row.version),
    body: new Uint8Array(row.body),
    expiresAt: row.expires_at,
  }
}

/**
 * The target names the organization's newest signed targets metadata lists, with its version;
 * undefined when no targets are published.
 */
export async function currentTargets(
  tx: Transaction,
  organizationId: string,
): Promise<{ version: number; names: ReadonlySet<string> } | undefined> {
  const stored = await latest(tx, organizationId, 'targets')
  if (stored === undefined) return undefined
  const file = `${stored.version}.targets.json`
  const envelope = parseMetadata(stored.body, 'targets', file)
  return { version: stored.version, names: new Set(Object.keys(envelope.signed.targets)) }
}

async function storeMetadata(
  tx: Transaction,
  organizationId: string,
  role: TufRole,
  envelope: TufEnvelope<{ version: number; expires: string }>,
  body: Uint8Array,
): Promise<void> {
  await tx
    .insertInto('update_metadata')
    .values({
      organization_id: organizationId,
      role,
      version: envelope.signed.version,
      body,
      expires_at: envelope.signed.expires,
      created_at: new Date().toISOString(),
    })
    .execute()
}

/**
 * Checks and stores what was signed offline, then signs a new snapshot and timestamp with
 * Ward's online keys. Nothing is stored unless all of it checks out:
 *
 * - each new root continues the stored chain without a gap, its key ids are the hashes of its
 *   keys, it is signed by the threshold of the previous root's root keys and of its own, and its
 *   snapshot and timestamp roles are exactly Ward's online keys; the newest expires no sooner
 *   than {@link minimumOfflineLifetimeSeconds} from now; version 1 is trusted on first
 *   publication, as a device trusts the root it ships with;
 * - new targets metadata is newer than the stored one, signed by the threshold of the current
 *   root's targets keys, expires no sooner than {@link minimumOfflineLifetimeSeconds} from now,
 *   lists every image either stored already or in the bundle with the listed length and hash
 *   and within the size limit, and leaves every release it already had unchanged.
 */
export async function publishRepository(
  tx: Transaction,
  provider: KeyWrappingProvider,
  settings: RepositorySettings,
  organizationId: string,
  bundle: PublishBundle,
  now = new Date(),
): Promise<PublishResult> {
  const online = await ensureRepository(tx, provider, organizationId)
  const storedRoot = await latest(tx, organizationId, 'root')
  let trusted: RootSigned | undefined =
    storedRoot === undefined
      ? undefined
      : parseMetadata(storedRoot.body, 'root', `${storedRoot.version}.root.json`).signed

  const rootVersions: number[] = []
  const newRoots: [TufEnvelope<RootSigned>, Uint8Array][] = []
  for (const version of [...bundle.roots.keys()].sort((a, b) => a - b)) {
    const bytes = bundle.roots.get(version) as Uint8Array
    const file = `${version}.root.json`
    if (trusted !== undefined && version <= trusted.version) {
      await sameAsStored(tx, organizationId, 'root', version, bytes, file)
      continue
    }
    const expected = (trusted?.version ?? 0) + 1
    if (version !== expected) {
      throw new WardError(
        'ERR_UPDATE_METADATA_INVALID',
        `${file}: the next root must be version ${expected}; roots cannot skip versions`,
        { details: { file } },
      )
    }
    const envelope = parseMetadata(bytes, 'root', file)
    if (envelope.signed.version !== version) {
      throw new WardError(
        'ERR_UPDATE_METADATA_INVALID',
        `${file} holds root version ${envelope.signed.version}`,
        { details: { file } },
      )
    }
    if (trusted !== undefined) checkThreshold(envelope, trusted, 'root', file)
    checkThreshold(envelope, envelope.signed, 'root', file)
    checkOnlineRoles(envelope.signed, online, file)
    newRoots.push([envelope, bytes])
    rootVersions.push(version)
    trusted = envelope.signed
  }
  if (trusted === undefined) {
    throw new WardError(
      'ERR_UPDATE_METADATA_INVALID',
      'the repository has no root yet: publish 1.root.json first',
    )
  }
  if (rootVersions.length > 0) {
    validLongEnough(trusted.expires, `${trusted.version}.root.json`, now)
  }

  const storedTargets = await latest(tx, organizationId, 'targets')
  let targets: TufEnvelope<TargetsSigned> | undefined
  let targetsBytes: Uint8Array | undefined
  if (bundle.targets !== undefined) {
    const { file, bytes } = bundle.targets
    const envelope = parseMetadata(bytes, 'targets', file)
    if (file !== `${envelope.signed.version}.targets.json`) {
      throw new WardError(
        'ERR_UPDATE_METADATA_INVALID',
        `${file} holds targets version ${envelope.signed.version}`,
        { details: { file } },
      )
    }
    if (storedTargets !== undefined && envelope.signed.version <= storedTargets.version) {
      if (envelope.signed.version < storedTargets.version) {
        throw new WardError(
          'ERR_UPDATE_METADATA_INVALID',
          `${file} is older than the published targets version ${storedTargets.version}`,
          { details: { file } },
        )
      }
      await sameAsStored(tx, organizationId, 'targets', envelope.signed.version, bytes, file)
    } else {
      checkThreshold(envelope, trusted, 'targets', file)
      validLongEnough(envelope.signed.expires, file, now)
      targets = envelope
      targetsBytes = bytes
    }
  }
  if (rootVersions.length > 0 && targets === undefined && storedTargets !== undefined) {
    // Devices check the published targets against the newest root: a root that no longer
    // trusts the key that signed them would leave every device unable to update.
    const file = `${storedTargets.version}.targets.json`
    const published = parseMetadata(storedTargets.body, 'targets', file)
    try {
      checkThreshold(published, trusted, 'targets', file)
    } catch (cause) {
      throw new WardError(
        'ERR_UPDATE_METADATA_INVALID',
        `root version ${trusted.version} changes the targets keys: publish targets signed by ` +
          'the new keys with it',
        { cause, details: { file } },
      )
    }
  }
  if (rootVersions.length === 0 && targets === undefined) {
    throw new WardError(
      'ERR_UPDATE_METADATA_INVALID',
      'nothing new to publish: every root and targets file is already published',
    )
  }

  for (const [envelope, bytes] of newRoots) {
    await storeMetadata(tx, organizationId, 'root', envelope, bytes)
  }
  const releases: Release[] = []
  if (targets !== undefined && targetsBytes !== undefined) {
    await storeMetadata(tx, organizationId, 'targets', targets, targetsBytes)
    for (const [name, info] of Object.entries(targets.signed.targets)) {
      const release = await storeRelease(tx, settings, organizationId, name, info, {
        targetsVersion: targets.signed.version,
        bundle,
      })
      if (release !== undefined) releases.push(release)
    }
  }

  let snapshotVersion: number | null = null
  let timestampVersion: number | null = null
  const currentTargets = targets?.signed.version ?? storedTargets?.version
  if (currentTargets !== undefined) {
    const signed = await signSnapshotAndTimestamp(tx, provider, settings, organizationId, now, {
      targetsVersion: currentTargets,
    })
    snapshotVersion = signed.snapshotVersion
    timestampVersion = signed.timestampVersion
  }
  return {
    rootVersions,
    targetsVersion: targets?.signed.version ?? null,
    releases,
    snapshotVersion,
    timestampVersion,
  }
}

function checkOnlineRoles(root: RootSigned, online: OnlineKeys, file: string): void {
  for (const role of ['snapshot', 'timestamp'] as const) {
    const { keyids, threshold } = root.roles[role]
    const expected = online[role].keyId
    if (keyids.length !== 1 || keyids[0] !== expected || threshold !== 1) {
      throw new WardError(
        'ERR_UPDATE_METADATA_INVALID',
        `${file}: the ${role} role must list only Ward's online ${role} key ${expected} with ` +
          'threshold 1 (see ward updates online-keys)',
        { details: { file, role } },
      )
    }
  }
}

// Offline metadata must not have expired, nor expire within minimumOfflineLifetimeSeconds.
function validLongEnough(expires: string, file: string, now: Date): void {
  const left = Date.parse(expires) - now.getTime()
  if (left <= 0) {
    throw new WardError('ERR_UPDATE_METADATA_INVALID', `${file} expired at ${expires}`, {
      details: { file, field: 'expires' },
    })
  }
  if (left < minimumOfflineLifetimeSeconds * 1000) {
    const hours = minimumOfflineLifetimeSeconds / 3600
    throw new WardError(
      'ERR_UPDATE_METADATA_INVALID',
      `${file}: expires ${expires} is less than ${hours} hours ahead; root and targets ` +
        `metadata must stay valid at least ${hours} hours after publication`,
      { details: { file, field: 'expires', minimumSeconds: minimumOfflineLifetimeSeconds } },
    )
  }
}

async function sameAsStored(
  tx: Transaction,
  organizationId: string,
  role: TufRole,
  version: number,
  bytes: Uint8Array,
  file: string,
): Promise<void> {
  const row = await tx
    .selectFrom('update_metadata')
    .select('body')
    .where('organization_id', '=', organizationId)
    .where('role', '=', role)
    .where('version', '=', version)
    .executeTakeFirst()
  if (row === undefined || !Buffer.from(row.body).equals(Buffer.from(bytes))) {
    throw new WardError(
      'ERR_UPDATE_METADATA_INVALID',
      `${file} differs from the ${role} version ${version} already published`,
      { details: { file } },
    )
  }
}

async function storeRelease(
  tx: Transaction,
  settings: RepositorySettings,
  organizationId: string,
  name: string,
  info: TargetFileInfo,
  context: { targetsVersion: number; bundle: PublishBundle },
): Promise<Release | undefined> {
  const sha256 = info.hashes.sha256
  const existing = await tx
    .selectFrom('firmware_releases')
    .select(['image_sha256', 'length'])
    .where('organization_id', '=', organizationId)
    .where('target_name', '=', name)
    .executeTakeFirst()
  if (existing !== undefined) {
    if (existing.image_sha256 !== sha256 || Number(existing.length) !== info.length) {
      throw new WardError(
        'ERR_UPDATE_METADATA_INVALID',
        `target ${name} is already released with other content; a release never changes, ` +
          'so give the new image a new name',
        { details: { target: name } },
      )
    }
    return undefined
  }
  if (info.length > settings.maxImageBytes) {
    throw new WardError(
      'ERR_PAYLOAD_TOO_LARGE',
      `target ${name} is ${info.length} bytes; images may be at most ${settings.maxImageBytes}`,
      { details: { target: name, limit: settings.maxImageBytes } },
    )
  }
  const fields = info.custom.ward
  if (compareSemanticVersions(fields.minVersion, fields.version) > 0) {
    throw new WardError(
      'ERR_UPDATE_METADATA_INVALID',
      `target ${name}: minVersion ${fields.minVersion} is above its version ${fields.version}`,
      { details: { target: name } },
    )
  }

  const stored = await tx
    .selectFrom('firmware_images')
    .select('length')
    .where('organization_id', '=', organizationId)
    .where('sha256', '=', sha256)
    .executeTakeFirst()
  if (stored === undefined) {
    const image = context.bundle.images.get(sha256)
    if (image === undefined) {
      throw new WardError(
        'ERR_UPDATE_METADATA_INVALID',
        `target ${name}: the bundle lacks its image images/${sha256}`,
        { details: { target: name } },
      )
    }
    checkContent(image, info.length, sha256, `target ${name}`, name)
    await tx
      .insertInto('firmware_images')
      .values({
        organization_id: organizationId,
        sha256,
        length: image.length,
        content: image,
        created_at: new Date().toISOString(),
      })
      .execute()
  }

  let sbom: Uint8Array | null = null
  if (fields.sbom !== undefined) {
    const bytes = context.bundle.sboms.get(fields.sbom.sha256)
    if (bytes === undefined) {
      throw new WardError(
        'ERR_UPDATE_METADATA_INVALID',
        `target ${name}: the bundle lacks its SBOM sboms/${fields.sbom.sha256}`,
        { details: { target: name } },
      )
    }
    checkContent(bytes, fields.sbom.length, fields.sbom.sha256, `the SBOM of target ${name}`, name)
    sbom = bytes
  }

  const release: Release = {
    id: randomUUID(),
    organizationId,
    targetName: name,
    version: fields.version,
    minVersion: fields.minVersion,
    models: fields.models,
    hardwareRevisions: fields.hardwareRevisions,
    notes: fields.notes,
    sha256,
    length: info.length,
    hasSbom: sbom !== null,
    targetsVersion: context.targetsVersion,
    withdrawn: false,
    createdAt: new Date().toISOString(),
  }
  await tx
    .insertInto('firmware_releases')
    .values({
      id: release.id,
      organization_id: organizationId,
      target_name: name,
      version: release.version,
      min_version: release.minVersion,
      models: JSON.stringify(release.models),
      hardware_revisions: JSON.stringify(release.hardwareRevisions),
      notes: release.notes,
      image_sha256: sha256,
      length: release.length,
      sbom,
      targets_version: release.targetsVersion,
      created_at: release.createdAt,
    })
    .execute()
  return release
}

function checkContent(
  bytes: Uint8Array,
  length: number,
  sha256: string,
  what: string,
  target: string,
): void {
  if (bytes.length !== length) {
    throw new WardError(
      'ERR_UPDATE_METADATA_INVALID',
      `${what} is ${bytes.length} bytes but the signed metadata says ${length}`,
      { details: { target } },
    )
  }
  const actual = createHash('sha256').update(bytes).digest('hex')
  if (actual !== sha256) {
    throw new WardError(
      'ERR_UPDATE_METADATA_INVALID',
      `${what} hashes to ${actual} but the signed metadata says ${sha256}`,
      { details: { target } },
    )
  }
}

/**
 * Signs snapshot version n+1 (over `targetsVersion`, or the stored one) and timestamp version
 * m+1 over it, with Ward's online keys.
 */
export async function signSnapshotAndTimestamp(
  tx: Transaction,
  provider: KeyWrappingProvider,
  settings: RepositorySettings,
  organizationId: string,
  now: Date,
  options: { targetsVersion?: number } = {},
): Promise<{ snapshotVersion: number; timestampVersion: number }> {
  const signers = await onlineSigners(tx, provider, organizationId)
  let targetsVersion = options.targetsVersion
  if (targetsVersion === undefined) {
    const stored = await latest(tx, organizationId, 'targets')
    if (stored === undefined) {
      throw new WardError('ERR_UPDATE_METADATA_INVALID', 'no targets have been published yet')
    }
    targetsVersion = stored.version
  }
  const previous = await latest(tx, organizationId, 'snapshot')
  const snapshot = signMetadata<SnapshotSigned>(
    {
      _type: 'snapshot',
      spec_version: tufSpecVersion,
      version: (previous?.version ?? 0) + 1,
      expires: tufDate(new Date(now.getTime() + settings.snapshotLifetimeSeconds * 1000)),
      meta: { 'targets.json': { version: targetsVersion } },
    },
    [signers.snapshot],
  )
  const snapshotBody = metadataBytes(snapshot)
  await storeMetadata(tx, organizationId, 'snapshot', snapshot, snapshotBody)
  const timestampVersion = await signTimestamp(
    tx,
    signers.timestamp,
    settings,
    organizationId,
    now,
    {
      version: snapshot.signed.version,
      body: snapshotBody,
    },
  )
  return { snapshotVersion: snapshot.signed.version, timestampVersion }
}

async function signTimestamp(
  tx: Transaction,
  signer: TufSigner,
  settings: RepositorySettings,
  organizationId: string,
  now: Date,
  snapshot: { version: number; body: Uint8Array },
): Promise<number> {
  const previous = await latest(tx, organizationId, 'timestamp')
  const timestamp = signMetadata<TimestampSigned>(
    {
      _type: 'timestamp',
      spec_version: tufSpecVersion,
      version: (previous?.version ?? 0) + 1,
      expires: tufDate(new Date(now.getTime() + settings.timestampLifetimeSeconds * 1000)),
      meta: {
        'snapshot.json': {
          version: snapshot.version,
          length: snapshot.body.length,
          hashes: { sha256: createHash('sha256').update(snapshot.body).digest('hex') },
        },
      },
    },
    [signer],
  )
  await storeMetadata(tx, organizationId, 'timestamp', timestamp, metadataBytes(timestamp))
  return timestamp.signed.version
}

/** What {@link refreshOnlineMetadata} re-signed for one organization. */
export interface Refreshed {
  readonly snapshotVersion?: number
  readonly timestampVersion: number
}

/**
 * Re-signs the organization's timestamp when less than half its lifetime is left, and the
 * snapshot too when less than half of its own is left, so devices never see expired online
 * metadata while Ward runs. Undefined when nothing needed signing (or nothing is published).
 */
export async function refreshOnlineMetadata(
  tx: Transaction,
  provider: KeyWrappingProvider,
  settings: RepositorySettings,
  organizationId: string,
  now = new Date(),
): Promise<Refreshed | undefined> {
  const [snapshot, timestamp] = await Promise.all([
    latest(tx, organizationId, 'snapshot'),
    latest(tx, organizationId, 'timestamp'),
  ])
  if (snapshot === undefined || timestamp === undefined) return undefined
  const stale = (expiresAt: string, lifetimeSeconds: number) =>
    Date.parse(expiresAt) - now.getTime() < (lifetimeSeconds * 1000) / 2
  if (stale(snapshot.expiresAt, settings.snapshotLifetimeSeconds)) {
    return signSnapshotAndTimestamp(tx, provider, settings, organizationId, now)
  }
  if (!stale(timestamp.expiresAt, settings.timestampLifetimeSeconds)) return undefined
  const signers = await onlineSigners(tx, provider, organizationId)
  return {
    timestampVersion: await signTimestamp(
      tx,
      signers.timestamp,
      settings,
      organizationId,
      now,
      snapshot,
    ),
  }
}

/** Organizations that have an update repository. */
export async function repositoryOrganizations(tx: Transaction): Promise<string[]> {
  const rows = await tx.selectFrom('update_repositories').select('organization_id').execute()
  return rows.map((row) => row.organization_id)
}

const metadataFile = /^(?:(\d{1,12})\.(root|snapshot|targets)|(timestamp))\.json$/

/**
 * The bytes of metadata file `file` of the organization's repository, as a TUF client asks for
 * it with consistent snapshots: `N.root.json`, `N.snapshot.json`, `N.targets.json` or
 * `timestamp.json`. `ERR_NOT_FOUND` for anything else or a version not published.
 */
export async function readMetadataFile(
  tx: Transaction,
  organizationId: string,
  file: string,
): Promise<Uint8Array> {
  const match = metadataFile.exec(file)
  if (match === null) throw new WardError('ERR_NOT_FOUND', 'no such metadata file')
  if (match[3] !== undefined) {
    const stored = await latest(tx, organizationId, 'timestamp')
    if (stored === undefined) throw new WardError('ERR_NOT_FOUND', 'nothing is published yet')
    return stored.body
  }
  const row = await tx
    .selectFrom('update_metadata')
    .select('body')
    .where('organization_id', '=', organizationId)
    .where('role', '=', match[2] as TufRole)
    .where('version', '=', Number(match[1]))
    .executeTakeFirst()
  if (row === undefined) throw new WardError('ERR_NOT_FOUND', 'no such metadata version')
  return new Uint8Array(row.body)
}

/**
 * The image of target file `file` (`<sha256>.<target name>`, as TUF clients name it under
 * consistent snapshots) of the organization's repository; `ERR_NOT_FOUND` unless a release
 * of that name has that hash.
 */
export async function readTargetFile(
  tx: Transaction,
  organizationId: string,
  file: string,
): Promise<Uint8Array> {
  const match = /^([0-9a-f]{64})\.(.{1,128})$/.exec(file)
  if (match === null) throw new WardError('ERR_NOT_FOUND', 'no such target file')
  const row = await tx
    .selectFrom('firmware_releases')
    .innerJoin('firmware_images', (join) =>
      join
        .onRef('firmware_images.organization_id', '=', 'firmware_releases.organization_id')
        .onRef('firmware_images.sha256', '=', 'firmware_releases.image_sha256'),
    )
    .select('firmware_images.content')
    .where('firmware_releases.organization_id', '=', organizationId)
    .where('firmware_releases.target_name', '=', match[2] as string)
    .where('firmware_releases.image_sha256', '=', match[1] as string)
    .executeTakeFirst()
  if (row === undefined) throw new WardError('ERR_NOT_FOUND', 'no such target file')
  return new Uint8Array(row.content)
}

/** The key id Ward computes for a key, exposed for callers that check a root's ids. */
export const keyIdOf = tufKeyId
