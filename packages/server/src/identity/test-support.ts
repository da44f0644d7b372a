import { execFile } from 'node:child_process'
import { randomUUID, sign } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { LocalKeyFileProvider, type KeyWrappingProvider } from '../keys/index.js'
import { openStore, type Store } from '../store/index.js'
import { insertOrganization, type Organization } from '../tenancy/index.js'
import { createOrganizationAuthorities, type OrganizationAuthorities } from './authorities.js'
import {
  derInteger,
  ecdsaSha256,
  p256KeyAlgorithm,
  randomSerialNumber,
  toPem,
  x509,
  x509Crypto,
  type CryptoKeyPair,
} from './x509.js'

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

/** A manufacturer CA made with the X.509 library, with its key pair. */
export interface TestManufacturerCa {
  readonly certificate: x509.X509Certificate
  readonly certificatePem: string
  readonly keys: CryptoKeyPair
}

/** A factory identity: its certificate and private key, as PEM, and its serial in hex. */
export interface TestFactoryIdentity {
  readonly certificatePem: string
  readonly privateKeyPem: string
  readonly serialNumber: string
}

/**
 * A self-signed ECDSA P-256 manufacturer CA named `subject` (`CN=…`), allowed to sign
 * certificates and CRLs, valid from a day ago for ten years.
 */
export async function testManufacturerCa(
  subject: string,
  options: { readonly crlSign?: boolean } = {},
): Promise<TestManufacturerCa> {
  const keys = (await x509Crypto.subtle.generateKey(p256KeyAlgorithm, true, [
    'sign',
    'verify',
  ])) as CryptoKeyPair
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerialNumber(),
      name: subject,
      notBefore: new Date(Date.now() - 86_400_000),
      notAfter: new Date(Date.now() + 3650 * 86_400_000),
      signingAlgorithm: ecdsaSha256,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign |
            (options.crlSign === false ? 0 : x509.KeyUsageFlags.cRLSign),
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, x509Crypto),
      ],
    },
    x509Crypto,
  )
  return { certificate, certificatePem: certificate.toString('pem'), keys }
}

/** A factory certificate for device `serial` (its subject serialNumber), signed by `ca`. */
export async function testFactoryIdentity(
  ca: TestManufacturerCa,
  serial: string,
): Promise<TestFactoryIdentity> {
  const keys = (await x509Crypto.subtle.generateKey(p256KeyAlgorithm, true, [
    'sign',
    'verify',
  ])) as CryptoKeyPair
  const serialNumber = randomSerialNumber()
  const certificate = await x509.X509CertificateGenerator.create(
    {
      serialNumber,
      subject: `2.5.4.5=${serial}, CN=${serial}`,
      issuer: ca.certificate.subjectName,
      notBefore: new Date(Date.now() - 86_400_000),
      notAfter: new Date(Date.now() + 365 * 86_400_000),
      signingAlgorithm: ecdsaSha256,
      publicKey: keys.publicKey,
      signingKey: ca.keys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      ],
    },
    x509Crypto,
  )
  const pkcs8 = await x509Crypto.subtle.exportKey('pkcs8', keys.privateKey)
  return {
    certificatePem: certificate.toString('pem'),
    privateKeyPem: toPem(pkcs8, 'PRIVATE KEY'),
    serialNumber: certificate.serialNumber.toLowerCase(),
  }
}

/**
 * A CRL signed by `signer` (by default under its own name) with CRL number `number`, listing
 * `revoked` serials, thisUpdate an hour ago and nextUpdate in a week unless given; `extensions`
 * are added to the CRL number and authority key identifier, or replace them with
 * `{ bare: true }`; `entryExtensions` go on every entry.
 */
export async function testManufacturerCrl(
  signer: TestManufacturerCa,
  input: {
    readonly number?: number
    readonly revoked?: readonly string[]
    readonly thisUpdate?: Date
    readonly nextUpdate?: Date
    readonly issuer?: string
    readonly extensions?: readonly x509.Extension[]
    readonly entryExtensions?: readonly x509.Extension[]
    readonly bare?: boolean
  } = {},
): Promise<string> {
  const thisUpdate = input.thisUpdate ?? new Date(Date.now() - 3600_000)
  const standard = [
    await x509.AuthorityKeyIdentifierExtension.create(signer.keys.publicKey, false, x509Crypto),
    new x509.Extension('2.5.29.20', false, derInteger(input.number ?? 1)),
  ]
  const crl = await x509.X509CrlGenerator.create(
    {
      issuer: input.issuer ?? signer.certificate.subject,
      thisUpdate,
      nextUpdate: input.nextUpdate ?? new Date(thisUpdate.getTime() + 7 * 86_400_000),
      signingAlgorithm: ecdsaSha256,
      signingKey: signer.keys.privateKey,
      extensions: [...(input.bare === true ? [] : standard), ...(input.extensions ?? [])],
      entries: (input.revoked ?? []).map((serialNumber) => ({
        serialNumber,
        revocationDate: new Date(thisUpdate.getTime() - 60_000),
        reason: x509.X509CrlReason.keyCompromise,
        ...(input.entryExtensions === undefined ? {} : { extensions: [...input.entryExtensions] }),
      })),
    },
    x509Crypto,
  )
  return toPem(crl.rawData, 'X509 CRL')
}

/** The factory key's ECDSA SHA-256 signature over `bytes`, base64 DER, as a device makes it. */
export function factorySignatureOver(identity: TestFactoryIdentity, bytes: Uint8Array): string {
  return sign('sha256', bytes, identity.privateKeyPem).toString('base64')
}
