import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { basename, join } from 'node:path'

import { WardError, isSemanticVersion, type TufPublicKey } from '@ward/core'
import {
  buildRoot,
  buildTargets,
  generateTufKey,
  metadataBytes,
  parseMetadata,
  readPublishDirectory,
  sha256Hex,
  signMetadata,
  tufSignerFromPem,
  type OnlineKeys,
  type OperationContext,
  type TargetsSigned,
  type Ward,
} from '@ward/server'

/** The update commands' lines in `ward --help`. */
export const updateUsage = `  ward updates keygen --out <dir> --name <n> [--algorithm ed25519|ecdsa-p256]
                                                offline: a root or targets key (<n>.key, mode
                                                0600) and its public key <n>.pub.json
  ward updates online-keys --org <slug> --out <file.json>
                                                Ward's online snapshot and timestamp keys
  ward updates sign-root --repo <dir> --version <n> --root-keys <a.pub.json,…>
         --root-threshold <k> --targets-keys <t.pub.json,…> [--targets-threshold <k>]
         --online-keys <file.json> --sign-with <a.key,…> [--expires-days 365]
                                                offline: write <dir>/<n>.root.json
  ward updates sign-release --repo <dir> --image <f.bin> --version <semver> --models <m,…>
         --min-version <semver> --notes <text> --sign-with <t.key,…> [--name <target>]
         [--hardware-revisions <r,…>] [--sbom <sbom.json>] [--expires-days 365]
                                                offline: write the next <dir>/<n>.targets.json
  ward updates publish <dir> --org <slug>       check and publish what was signed offline
  ward updates releases --org <slug>            list the organization's releases`

/** Options the update commands take. */
export const updateOptions = [
  'out',
  'name',
  'algorithm',
  'org',
  'repo',
  'version',
  'root-keys',
  'root-threshold',
  'targets-keys',
  'targets-threshold',
  'online-keys',
  'sign-with',
  'expires-days',
  'image',
  'models',
  'hardware-revisions',
  'min-version',
  'notes',
  'sbom',
]

type Values = Record<string, string | undefined>

/** What the update commands need from the CLI around them. */
export interface UpdateCommandContext {
  readonly values: Values
  readonly positionals: readonly string[]
  readonly context: OperationContext
  readonly withWard: <T>(work: (ward: Ward) => Promise<T>) => Promise<T>
  readonly required: (value: string | undefined, flag: string) => string
}

/**
 * Runs `ward updates <subcommand>`; undefined when it is not one. Keygen, sign-root and
 * sign-release never open Ward: they are for the offline machine that holds the root and
 * targets keys.
 */
export async function updateCommand(
  subcommand: string,
  { values, positionals, context, withWard, required }: UpdateCommandContext,
): Promise<string[] | undefined> {
  switch (subcommand) {
    case 'keygen': {
      const out = required(values['out'], '--out <dir>')
      const name = required(values['name'], '--name <name>')
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
        throw inputError('--name must be 1 to 64 of A-Z a-z 0-9 . _ -', 'name')
      }
      const algorithm = values['algorithm'] ?? 'ed25519'
      if (algorithm !== 'ed25519' && algorithm !== 'ecdsa-p256') {
        throw inputError('--algorithm must be ed25519 or ecdsa-p256', 'algorithm')
      }
      const privatePath = join(out, `${name}.key`)
      if (existsSync(privatePath)) throw inputError(`${privatePath} already exists`, 'name')
      mkdirSync(out, { recursive: true, mode: 0o700 })
      const key = generateTufKey(algorithm)
      writeFileSync(privatePath, key.privateKeyPem, { mode: 0o600, flag: 'wx' })
      chmodSync(privatePath, 0o600)
      writeFileSync(join(out, `${name}.pub.json`), `${JSON.stringify(key.publicKey, null, 2)}\n`)
      return [`key ${key.keyId}`, `private key ${privatePath} (keep it offline)`]
    }
    case 'online-keys': {
      const slug = required(values['org'], '--org <slug>')
      const out = required(values['out'], '--out <file.json>')
      const keys = await withWard((ward) => ward.updates.onlineKeys(context, slug))
      writeFileSync(out, `${JSON.stringify(keys, null, 2)}\n`)
      return [`snapshot key ${keys.snapshot.keyId}`, `timestamp key ${keys.timestamp.keyId}`]
    }
    case 'sign-root': {
      const repo = required(values['repo'], '--repo <dir>')
      const version = positiveInteger(required(values['version'], '--version <n>'), 'version')
      const rootKeys = list(required(values['root-keys'], '--root-keys <a.pub.json,…>')).map(
        readPublicKey,
      )
      const targetsKeys = list(
        required(values['targets-keys'], '--targets-keys <t.pub.json,…>'),
      ).map(readPublicKey)
      const online = readJson(
        required(values['online-keys'], '--online-keys <file.json>'),
      ) as OnlineKeys
      const signers = list(required(values['sign-with'], '--sign-with <a.key,…>')).map((path) =>
        tufSignerFromPem(readFileSync(path, 'utf8')),
      )
      const signed = buildRoot({
        version,
        expires: expiresIn(values['expires-days']),
        rootKeys,
        rootThreshold: positiveInteger(
          required(values['root-threshold'], '--root-threshold <k>'),
          'root-threshold',
        ),
        targetsKeys,
        targetsThreshold: positiveInteger(values['targets-threshold'] ?? '1', 'targets-threshold'),
        online,
      })
      const bytes = metadataBytes(signMetadata(signed, signers))
      // The result is checked as Ward will check it, so a mistake shows here, offline.
      parseMetadata(bytes, 'root', `${version}.root.json`)
      mkdirSync(repo, { recursive: true })
      const path = join(repo, `${version}.root.json`)
      writeFileSync(path, bytes, { flag: 'wx' })
      return [`wrote ${path} signed by ${signers.length} key(s)`]
    }
    case 'sign-release': {
      const repo = required(values['repo'], '--repo <dir>')
      const imagePath = required(values['image'], '--image <file>')
      const version = required(values['version'], '--version <semver>')
      const minVersion = required(values['min-version'], '--min-version <semver>')
      for (const [flag, value] of [
        ['version', version],
        ['min-version', minVersion],
      ] as const) {
        if (!isSemanticVersion(value))
          throw inputError(`--${flag} must be a semantic version such as 1.2.0`, flag)
      }
      const image = new Uint8Array(readFileSync(imagePath))
      const sbomPath = values['sbom']
      const sbom = sbomPath === undefined ? undefined : new Uint8Array(readFileSync(sbomPath))
      const signers = list(required(values['sign-with'], '--sign-with <t.key,…>')).map((path) =>
        tufSignerFromPem(readFileSync(path, 'utf8')),
      )
      const previous = newestTargets(repo)
      const name = values['name'] ?? basename(imagePath)
      const signed = buildTargets(previous, {
        name,
        image,
        ...(sbom === undefined ? {} : { sbom }),
        fields: {
          version,
          minVersion,
          models: list(required(values['models'], '--models <model,…>')),
          hardwareRevisions:
            values['hardware-revisions'] === undefined ? [] : list(values['hardware-revisions']),
          notes: required(values['notes'], '--notes <text>'),
        },
        expires: expiresIn(values['expires-days']),
      })
      const file = `${signed.version}.targets.json`
      const bytes = metadataBytes(signMetadata(signed, signers))
      parseMetadata(bytes, 'targets', file)
      mkdirSync(join(repo, 'images'), { recursive: true })
      writeFileSync(join(repo, 'images', sha256Hex(image)), image)
      if (sbom !== undefined) {
        mkdirSync(join(repo, 'sboms'), { recursive: true })
        writeFileSync(join(repo, 'sboms', sha256Hex(sbom)), sbom)
      }
      writeFileSync(join(repo, file), bytes, { flag: 'wx' })
      return [`wrote ${join(repo, file)}: target ${name} version ${version}, ${image.length} bytes`]
    }
    case 'publish': {
      const directory = positionals[0]
      if (
        directory === undefined ||
        !statSync(directory, { throwIfNoEntry: false })?.isDirectory()
      ) {
        throw inputError('publish needs the directory the offline commands wrote', 'directory')
      }
      const slug = required(values['org'], '--org <slug>')
      const result = await withWard((ward) =>
        ward.updates.publish(
          context,
          slug,
          readPublishDirectory(directory, ward.config.updates.maxImageBytes),
        ),
      )
      return [
        ...result.rootVersions.map((version) => `published ${version}.root.json`),
        ...(result.targetsVersion === null
          ? []
          : [`published ${result.targetsVersion}.targets.json`]),
        ...result.releases.map(
          (release) => `release ${release.id}: ${release.targetName} ${release.version}`,
        ),
        ...(result.timestampVersion === null
          ? []
          : [`signed snapshot ${result.snapshotVersion} and timestamp ${result.timestampVersion}`]),
      ]
    }
    case 'releases': {
      const slug = required(values['org'], '--org <slug>')
      const releases = await withWard((ward) => ward.updates.listReleases(slug))
      if (releases.length === 0) return ['no releases']
      return releases.map(
        (release) =>
          `${release.id}\t${release.targetName}\t${release.version}\tmin ${release.minVersion}\t` +
          `${release.models.join(',')}\t${release.length} bytes\t${release.createdAt}\t` +
          (release.withdrawn ? 'withdrawn' : 'available'),
      )
    }
    default:
      return undefined
  }
}

function newestTargets(repo: string): TargetsSigned | undefined {
  if (!existsSync(repo)) return undefined
  let newest: number | undefined
  for (const name of readdirSync(repo)) {
    const match = /^([1-9]\d{0,8})\.targets\.json$/.exec(name)
    if (match !== null && (newest === undefined || Number(match[1]) > newest))
      newest = Number(match[1])
  }
  if (newest === undefined) return undefined
  const file = `${newest}.targets.json`
  return parseMetadata(new Uint8Array(readFileSync(join(repo, file))), 'targets', file).signed
}

function readPublicKey(path: string): TufPublicKey {
  const key = readJson(path) as TufPublicKey
  if (typeof key?.keytype !== 'string' || typeof key?.keyval?.public !== 'string') {
    throw inputError(`${path} is not a TUF public key file (see ward updates keygen)`, 'key')
  }
  return { keytype: key.keytype, scheme: key.scheme, keyval: { public: key.keyval.public } }
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'))
  } catch (cause) {
    throw new WardError('ERR_INPUT_INVALID', `${path} is not a readable JSON file`, { cause })
  }
}

function list(text: string): string[] {
  return text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '')
}

function positiveInteger(text: string, flag: string): number {
  if (!/^[1-9]\d{0,8}$/.test(text)) throw inputError(`--${flag} must be a positive integer`, flag)
  return Number(text)
}

function expiresIn(days: string | undefined): Date {
  const count = positiveInteger(days ?? '365', 'expires-days')
  return new Date(Date.now() + count * 86_400_000)
}

function inputError(message: string, field: string): WardError {
  return new WardError('ERR_INPUT_INVALID', message, { details: { field } })
}
