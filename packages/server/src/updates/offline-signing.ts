import { createHash, generateKeyPairSync } from 'node:crypto'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

import { WardError, tufDate, tufKeyId, type TufPublicKey } from '@ward/core'

import type { OnlineKeys, PublishBundle } from './repository.js'
import {
  tufPublicKeyOf,
  tufSpecVersion,
  type FirmwareFields,
  type RootSigned,
  type TargetsSigned,
  type TufKeyAlgorithm,
} from './tuf-metadata.js'

// What the offline machine does: make root and targets keys, and write the root and targets
// metadata they sign. Nothing here talks to Ward; `ward updates publish` carries the result.

/** A new TUF key: its PKCS#8 PEM private half (for the offline machine only) and public key. */
export interface GeneratedTufKey {
  readonly privateKeyPem: string
  readonly publicKey: TufPublicKey
  readonly keyId: string
}

/** Makes an Ed25519 (default) or ECDSA P-256 key pair for a TUF role. */
export function generateTufKey(algorithm: TufKeyAlgorithm = 'ed25519'): GeneratedTufKey {
  const { privateKey } =
    algorithm === 'ed25519'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const publicKey = tufPublicKeyOf(privateKey)
  return {
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKey,
    keyId: tufKeyId(publicKey),
  }
}

/** What a root lists: its own keys, the targets keys, and Ward's online keys. */
export interface RootInput {
  readonly version: number
  readonly expires: Date
  readonly rootKeys: readonly TufPublicKey[]
  readonly rootThreshold: number
  readonly targetsKeys: readonly TufPublicKey[]
  readonly targetsThreshold: number
  readonly online: OnlineKeys
}

/** The signed part of a root with consistent snapshots, key ids computed from the keys. */
export function buildRoot(input: RootInput): RootSigned {
  const keys: Record<string, TufPublicKey> = {}
  const ids = (list: readonly TufPublicKey[]) =>
    list.map((key) => {
      const id = tufKeyId(key)
      keys[id] = key
      return id
    })
  const root = ids(input.rootKeys)
  const targets = ids(input.targetsKeys)
  const snapshot = ids([input.online.snapshot.key])
  const timestamp = ids([input.online.timestamp.key])
  return {
    _type: 'root',
    spec_version: tufSpecVersion,
    version: input.version,
    expires: tufDate(input.expires),
    consistent_snapshot: true,
    keys,
    roles: {
      root: { keyids: root, threshold: input.rootThreshold },
      targets: { keyids: targets, threshold: input.targetsThreshold },
      snapshot: { keyids: snapshot, threshold: 1 },
      timestamp: { keyids: timestamp, threshold: 1 },
    },
  }
}

/** A firmware release to add to the targets metadata. */
export interface ReleaseInput {
  readonly name: string
  readonly image: Uint8Array
  readonly fields: Omit<FirmwareFields, 'sbom'>
  readonly sbom?: Uint8Array
  readonly expires: Date
}

/**
 * The next targets metadata: every target of `previous` (when there is one) plus the release,
 * version one higher. A name already listed is refused: releases never change.
 */
export function buildTargets(
  previous: TargetsSigned | undefined,
  release: ReleaseInput,
): TargetsSigned {
  if (previous?.targets[release.name] !== undefined) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `target ${release.name} is already released; a release never changes, so name it anew`,
      { details: { field: 'name' } },
    )
  }
  const fields: FirmwareFields = {
    ...release.fields,
    ...(release.sbom === undefined
      ? {}
      : { sbom: { length: release.sbom.length, sha256: sha256Hex(release.sbom) } }),
  }
  return {
    _type: 'targets',
    spec_version: tufSpecVersion,
    version: (previous?.version ?? 0) + 1,
    expires: tufDate(release.expires),
    targets: {
      ...(previous?.targets ?? {}),
      [release.name]: {
        length: release.image.length,
        hashes: { sha256: sha256Hex(release.image) },
        custom: { ward: fields },
      },
    },
  }
}

/** Lowercase hex SHA-256. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/**
 * Reads a directory the offline commands wrote: `N.root.json` files, `N.targets.json` files
 * (the newest is published), `images/<sha256>` and `sboms/<sha256>`. Files larger than
 * `maxImageBytes` are refused before they are read.
 */
export function readPublishDirectory(directory: string, maxImageBytes: number): PublishBundle {
  const roots = new Map<number, Uint8Array>()
  let targets: { file: string; bytes: Uint8Array; version: number } | undefined
  for (const name of readdirSync(directory)) {
    const root = /^([1-9]\d{0,8})\.root\.json$/.exec(name)
    if (root !== null) roots.set(Number(root[1]), readLimited(join(directory, name), 4 << 20))
    const target = /^([1-9]\d{0,8})\.targets\.json$/.exec(name)
    if (target !== null && (targets === undefined || Number(target[1]) > targets.version)) {
      targets = {
        file: name,
        bytes: readLimited(join(directory, name), 4 << 20),
        version: Number(target[1]),
      }
    }
  }
  const byHash = (folder: string, limit: number) => {
    const files = new Map<string, Uint8Array>()
    let names: string[] = []
    try {
      names = readdirSync(join(directory, folder))
    } catch {
      return files
    }
    for (const name of names) {
      if (/^[0-9a-f]{64}$/.test(name))
        files.set(name, readLimited(join(directory, folder, name), limit))
    }
    return files
  }
  return {
    roots,
    ...(targets === undefined ? {} : { targets: { file: targets.file, bytes: targets.bytes } }),
    images: byHash('images', maxImageBytes),
    sboms: byHash('sboms', 16 << 20),
  }
}

function readLimited(path: string, limit: number): Uint8Array {
  const size = statSync(path).size
  if (size > limit) {
    throw new WardError(
      'ERR_PAYLOAD_TOO_LARGE',
      `${path} is ${size} bytes; at most ${limit} allowed`,
      {
        details: { limit },
      },
    )
  }
  return new Uint8Array(readFileSync(path))
}
