import { join } from 'node:path'

import { enroll, FirmwareUpdater, type DeviceClient } from '@ward/device'

import { systemContext } from '../context.js'
import {
  createTestOrganization,
  registerTestDevice,
  type TestOrganization,
  type TestWard,
} from '../ingest/test-support.js'
import type { Ward } from '../ward.js'
import {
  buildRoot,
  buildTargets,
  generateTufKey,
  type GeneratedTufKey,
  type ReleaseInput,
} from './offline-signing.js'
import type { OnlineKeys, PublishBundle, PublishResult } from './repository.js'
import {
  metadataBytes,
  signMetadata,
  tufSignerFromPem,
  type RootSigned,
  type TargetsSigned,
  type TufEnvelope,
} from './tuf-metadata.js'

// Used only by the updates domain's tests: an organization's offline signing machine, kept in
// memory, and enrolled devices running the real update agent.

const year = 365 * 86_400_000

/** The offline side of one organization's repository: its root and targets keys. */
export class OfflineSigner {
  rootKeys: GeneratedTufKey[] = [generateTufKey(), generateTufKey('ecdsa-p256'), generateTufKey()]
  rootThreshold = 2
  targetsKeys: GeneratedTufKey[] = [generateTufKey()]
  roots: Uint8Array[] = []
  targets: TufEnvelope<TargetsSigned> | undefined
  readonly images = new Map<string, Uint8Array>()
  readonly sboms = new Map<string, Uint8Array>()

  constructor(readonly online: OnlineKeys) {}

  /**
   * Root metadata for `version` over the current keys, signed by `signers` (default: all),
   * expiring at `expires` (default: in a year).
   */
  root(
    version: number,
    signers: GeneratedTufKey[] = this.rootKeys,
    expires = new Date(Date.now() + year),
  ): Uint8Array {
    const signed: RootSigned = buildRoot({
      version,
      expires,
      rootKeys: this.rootKeys.map((key) => key.publicKey),
      rootThreshold: this.rootThreshold,
      targetsKeys: this.targetsKeys.map((key) => key.publicKey),
      targetsThreshold: 1,
      online: this.online,
    })
    return metadataBytes(
      signMetadata(
        signed,
        signers.map((key) => tufSignerFromPem(key.privateKeyPem)),
      ),
    )
  }

  /**
   * The next targets metadata with `release` added, signed by `signers` (default: targets),
   * expiring at `release.expires` (default: in a year).
   */
  release(
    release: Omit<ReleaseInput, 'expires' | 'fields'> & {
      fields?: Partial<ReleaseInput['fields']>
      expires?: Date
    },
    signers: GeneratedTufKey[] = this.targetsKeys,
  ): { file: string; bytes: Uint8Array } {
    const signed = buildTargets(this.targets?.signed, {
      ...release,
      fields: {
        version: '1.1.0',
        minVersion: '1.0.0',
        models: ['Pulse oximeter'],
        hardwareRevisions: [],
        notes: 'Fixes alarm latency.',
        ...release.fields,
      },
      expires: release.expires ?? new Date(Date.now() + year),
    })
    this.targets = signMetadata(
      signed,
      signers.map((key) => tufSignerFromPem(key.privateKeyPem)),
    )
    const target = signed.targets[release.name]
    this.images.set(target?.hashes.sha256 ?? '', release.image)
    if (release.sbom !== undefined && target?.custom.ward.sbom !== undefined) {
      this.sboms.set(target.custom.ward.sbom.sha256, release.sbom)
    }
    return { file: `${signed.version}.targets.json`, bytes: metadataBytes(this.targets) }
  }

  bundle(
    roots: Record<number, Uint8Array>,
    targets?: { file: string; bytes: Uint8Array },
  ): PublishBundle {
    return {
      roots: new Map(Object.entries(roots).map(([version, bytes]) => [Number(version), bytes])),
      ...(targets === undefined ? {} : { targets }),
      images: this.images,
      sboms: this.sboms,
    }
  }
}

/** Publishes as the CLI's `ward updates publish` does. */
export function publish(ward: Ward, slug: string, bundle: PublishBundle): Promise<PublishResult> {
  return ward.updates.publish(systemContext('test'), slug, bundle)
}

/** An organization with an offline signer whose version 1 root is published. */
export async function repositoryWithRoot(
  ward: Ward,
  slug: string,
): Promise<{ organization: TestOrganization; offline: OfflineSigner; root1: Uint8Array }> {
  const organization = await createTestOrganization(ward, slug)
  const online = await ward.updates.onlineKeys(systemContext('test'), slug)
  const offline = new OfflineSigner(online)
  const root1 = offline.root(1)
  offline.roots.push(root1)
  return { organization, offline, root1 }
}

/** A firmware image of `size` bytes whose content depends on `seed`. */
export function firmwareImage(seed: string, size = 4096): Uint8Array {
  const image = new Uint8Array(size)
  for (let index = 0; index < size; index++)
    image[index] = (index * 31 + seed.charCodeAt(index % seed.length)) & 0xff
  return image
}

/** Enrolls a pulse oximeter with Ward; the client talks over the device endpoint. */
export async function enrollUpdateDevice(
  testWard: TestWard,
  organization: TestOrganization,
  directory: string,
): Promise<DeviceClient> {
  const { serial, token } = await registerTestDevice(testWard.ward, organization)
  return enroll({
    url: testWard.running.deviceUrl,
    enrollmentUrl: testWard.running.url,
    serverName: organization.serverName,
    caPem: testWard.serverCaPem,
    serial,
    token,
    keyDirectory: join(directory, 'identity'),
  })
}

/** A device's update agent in state directory `directory`, running `factoryVersion`. */
export function updaterFor(
  client: DeviceClient,
  directory: string,
  trustedRoot: Uint8Array,
  options: { factoryVersion?: string; healthy?: boolean; hardwareRevision?: string } = {},
): FirmwareUpdater {
  return new FirmwareUpdater({
    client,
    stateDirectory: directory,
    trustedRoot,
    model: 'Pulse oximeter',
    hardwareRevision: options.hardwareRevision ?? 'B',
    factoryVersion: options.factoryVersion ?? '1.0.0',
    healthCheck: async () => options.healthy ?? true,
  })
}
