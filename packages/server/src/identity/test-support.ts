import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { LocalKeyFileProvider, type KeyWrappingProvider } from '../keys/index.js'
import { openStore, type Store } from '../store/index.js'
import { insertOrganization, type Organization } from '../tenancy/index.js'
import { createOrganizationAuthorities, type OrganizationAuthorities } from './authorities.js'

// Used only by the identity domain's tests: spawns the openssl command, as an operator would,
// so that what Ward issues is checked by an implementation other than the one that made it.

/** What `openssl` printed, and whether it exited 0. */
export interface OpensslResult {
  readonly ok: boolean
  readonly stdout: string
  readonly stderr: string
}

/** Runs `openssl` with `args` in `cwd` and reports how it went, without throwing. */
export function runOpenssl(args: readonly string[], cwd: string): Promise<OpensslResult> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error !== null && typeof error.code !== 'number') {
        reject(error)
        return
      }
      resolve({ ok: error === null, stdout, stderr })
    })
  })
}

/** Runs `openssl` and returns its standard output; rejects, with its message, when it fails. */
export async function openssl(args: readonly string[], cwd: string): Promise<string> {
  const result = await runOpenssl(args, cwd)
  if (!result.ok) throw new Error(`openssl ${args.join(' ')} failed: ${result.stderr}`)
  return result.stdout
}

/** A key pair and CSR made by openssl, as a device makes them; `name` prefixes the files. */
export interface DeviceKeyMaterial {
  readonly csrPem: string
  readonly keyPem: string
  readonly csrPath: string
  readonly keyPath: string
}

/**
 * Makes a fresh P-256 key and a CSR for `serial` with `openssl req -new -newkey ec`, or an RSA
 * one with `key: 'rsa'`.
 */
export async function makeDeviceCsr(
  directory: string,
  serial: string,
  key: 'p256' | 'rsa' = 'p256',
): Promise<DeviceKeyMaterial> {
  const name = randomUUID()
  const csrPath = join(directory, `${name}.csr`)
  const keyPath = join(directory, `${name}.key`)
  const keyArguments =
    key === 'p256'
      ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']
      : ['-newkey', 'rsa:2048']
  await openssl(
    [
      'req',
      '-new',
      ...keyArguments,
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      csrPath,
      '-subj',
      `/CN=${serial}`,
    ],
    directory,
  )
  return {
    csrPem: readFileSync(csrPath, 'utf8'),
    keyPem: readFileSync(keyPath, 'utf8'),
    csrPath,
    keyPath,
  }
}

/** Writes `text` to `name` in `directory` and returns the path. */
export function writeFile(directory: string, name: string, text: string): string {
  const path = join(directory, name)
  writeFileSync(path, text)
  return path
}

/** A new organization with its device authorities. */
export async function organizationWithAuthorities(
  store: Store,
  provider: KeyWrappingProvider,
  slug: string,
): Promise<{ organization: Organization; authorities: OrganizationAuthorities }> {
  return store.transaction(async (tx) => {
    const organization = await insertOrganization(tx, { slug, name: `${slug} health` })
    const authorities = await createOrganizationAuthorities(tx, provider, {
      organizationId: organization.id,
      slug,
      hostName: 'ward.test',
    })
    return { organization, authorities }
  })
}

/** A store on one dialect, a master key and a scratch directory for one test suite. */
export interface IdentityFixture {
  readonly directory: string
  readonly store: Store
  readonly provider: KeyWrappingProvider
  close(): Promise<void>
}

/**
 * Opens an {@link IdentityFixture} on `database` (from the server's `freshDatabase`) with a
 * new master key in `directory`; closing it, or failing to open, drops both.
 */
export async function openIdentityFixture(
  database: { readonly url: string; drop(): Promise<void> },
  directory: { readonly path: string; remove(): void },
): Promise<IdentityFixture> {
  let store: Store
  try {
    store = await openStore({ url: database.url })
  } catch (error) {
    // A schema left behind with half a migration would make later test runs fail to migrate.
    await database.drop()
    directory.remove()
    throw error
  }
  const provider = LocalKeyFileProvider.create(join(directory.path, 'master.key'))
  return {
    directory: directory.path,
    store,
    provider,
    close: async () => {
      await store.close()
      await database.drop()
      directory.remove()
    },
  }
}
