import { createPrivateKey, createPublicKey, randomUUID } from 'node:crypto'

import { WardError, bytesEqual } from '@ward/core'

import type { KeyWrappingProvider } from '../keys/index.js'
import type { Transaction } from '../store/index.js'
import { signCrl, type CertificateRevocationList, type CrlSigner } from './crl.js'
import { checkId } from './device-uri.js'
import type { CertificateAuthorityTable } from './tables.js'
import {
  addDays,
  backdateMs,
  ecdsaSha256,
  p256KeyAlgorithm,
  randomSerialNumber,
  sha256Hex,
  toArrayBuffer,
  x509,
  x509Crypto,
  type CryptoKey,
  type CryptoKeyPair,
} from './x509.js'

/** Where a CA stands in an organization's hierarchy. */
export type AuthorityRole = 'root' | 'issuing'

/** The public facts of one of an organization's certificate authorities. */
export interface CertificateAuthority {
  readonly id: string
  readonly organizationId: string
  readonly role: AuthorityRole
  /** The CA that signed this one's certificate; `null` for the self-signed root. */
  readonly issuerId: string | null
  /** RFC 4514 form of the subject name, for people; the certificate holds the exact bytes. */
  readonly subject: string
  readonly serialNumber: string
  /** Lowercase hex key identifier, as in the certificate's subject key identifier. */
  readonly subjectKeyIdentifier: string
  /** Lowercase hex SHA-256 of the certificate's DER. */
  readonly fingerprintSha256: string
  readonly certificatePem: string
  readonly notBefore: string
  readonly notAfter: string
  /** False once the private key has been moved offline; Ward then cannot sign with this CA. */
  readonly keyOnline: boolean
}

/** An organization's two authorities: the root, and the issuing CA the root certified. */
export interface OrganizationAuthorities {
  readonly root: CertificateAuthority
  readonly issuing: CertificateAuthority
}

/** A CA ready to sign: its public record, parsed certificate and unwrapped private key. */
export interface AuthoritySigner extends CrlSigner {
  readonly authority: CertificateAuthority
}

/** How long each CA is valid, and how long the root's CRL lasts before it must be re-signed. */
export const authorityLifetimes = {
  rootDays: 20 * 365 + 5,
  issuingDays: 5 * 365 + 1,
  rootCrlDays: 365,
  /** The root's CRL is re-signed when less than this remains of it. */
  rootCrlRenewDays: 30,
} as const

const slugPattern = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/
const hostNamePattern =
  /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/

/**
 * Creates an organization's device authorities: a self-signed root CA (ECDSA P-256, valid 20
 * years, path length 1, key usage keyCertSign and cRLSign) and an online issuing CA it
 * certifies (5 years, path length 0, the same key usage), each with subject and authority key
 * identifiers. Their names are `CN=Ward device root CA` and `CN=Ward device issuing CA` under
 * `O=<slug>` and the domain components of `hostName`, so every organization of every Ward has
 * names of its own. Both private keys are stored only wrapped by `provider`, bound to the CA's
 * id, role and organization, and exist in clear only in this process's memory. The root's
 * first CRL (empty, valid one year) is signed here too.
 *
 * The root's key is needed online only for that CRL, re-signed when less than 30 days of it
 * remain, and for certifying issuing CAs. Keeping the root offline takes: moving its key to
 * offline custody (an HSM or an air-gapped machine) and clearing `wrapped_private_key` and
 * `provider` on its row, after which Ward refuses to sign with it (`ERR_KEY_UNAVAILABLE`);
 * signing each year's root CRL offline and storing it in `crl_pem`/`crl_next_update` before
 * the old one lapses, because a TLS server checking revocation refuses every device once the
 * root's CRL has expired; and certifying the next issuing CA offline. No command does the move
 * or the import yet; until one does, the root key stays wrapped online.
 *
 * Throws `ERR_AUTHORITY_EXISTS` when the organization already has authorities and
 * `ERR_INPUT_INVALID` for an id, slug or host name that cannot appear in a name.
 */
export async function createOrganizationAuthorities(
  tx: Transaction,
  provider: KeyWrappingProvider,
  input: { readonly organizationId: string; readonly slug: string; readonly hostName: string },
): Promise<OrganizationAuthorities> {
  checkId(input.organizationId, 'organizationId')
  if (!slugPattern.test(input.slug)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      'slug must be 1–63 lowercase letters, digits or inner hyphens',
      {
        details: { field: 'slug' },
      },
    )
  }
  if (!hostNamePattern.test(input.hostName)) {
    throw new WardError('ERR_INPUT_INVALID', 'hostName must be a lowercase DNS name', {
      details: { field: 'hostName' },
    })
  }
  const existing = await tx
    .selectFrom('certificate_authorities')
    .select('id')
    .where('organization_id', '=', input.organizationId)
    .executeTakeFirst()
  if (existing !== undefined) {
    throw new WardError(
      'ERR_AUTHORITY_EXISTS',
      `organization ${input.organizationId} already has device authorities`,
      { details: { organizationId: input.organizationId } },
    )
  }

  const now = new Date()
  const notBefore = new Date(now.getTime() - backdateMs)

  const rootKeys = await generateAuthorityKeys()
  const rootSki = await x509.SubjectKeyIdentifierExtension.create(
    rootKeys.publicKey,
    false,
    x509Crypto,
  )
  const rootCertificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerialNumber(),
      name: authorityName(input.slug, input.hostName, 'Ward device root CA'),
      notBefore,
      notAfter: addDays(now, authorityLifetimes.rootDays),
      signingAlgorithm: ecdsaSha256,
      keys: rootKeys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 1, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
          true,
        ),
        rootSki,
        new x509.AuthorityKeyIdentifierExtension(rootSki.keyId),
      ],
    },
    x509Crypto,
  )
  const root = await insertAuthority(tx, provider, {
    organizationId: input.organizationId,
    role: 'root',
    issuerId: null,
    certificate: rootCertificate,
    subjectKeyIdentifier: rootSki.keyId,
    privateKey: rootKeys.privateKey,
  })

  const issuingKeys = await generateAuthorityKeys()
  const issuingSki = await x509.SubjectKeyIdentifierExtension.create(
    issuingKeys.publicKey,
    false,
    x509Crypto,
  )
  const issuingNotAfter = addDays(now, authorityLifetimes.issuingDays)
  const issuingCertificate = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerialNumber(),
      subject: authorityName(input.slug, input.hostName, 'Ward device issuing CA'),
      issuer: rootCertificate.subjectName,
      notBefore,
      notAfter:
        issuingNotAfter < rootCertificate.notAfter ? issuingNotAfter : rootCertificate.notAfter,
      signingAlgorithm: ecdsaSha256,
      publicKey: issuingKeys.publicKey,
      signingKey: rootKeys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
          true,
        ),
        issuingSki,
        new x509.AuthorityKeyIdentifierExtension(rootSki.keyId),
      ],
    },
    x509Crypto,
  )
  const issuing = await insertAuthority(tx, provider, {
    organizationId: input.organizationId,
    role: 'issuing',
    issuerId: root.id,
    certificate: issuingCertificate,
    subjectKeyIdentifier: issuingSki.keyId,
    privateKey: issuingKeys.privateKey,
  })

  await storeRootCrl(tx, {
    authority: root,
    certificate: rootCertificate,
    subjectKeyIdentifier: rootSki.keyId,
    privateKey: rootKeys.privateKey,
  })
  return { root, issuing }
}

/** The organization's authorities; `ERR_AUTHORITY_NOT_FOUND` when it has none yet. */
export async function findOrganizationAuthorities(
  tx: Transaction,
  organizationId: string,
): Promise<OrganizationAuthorities> {
  const rows = await tx
    .selectFrom('certificate_authorities')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .execute()
  const root = rows.find((row) => row.role === 'root')
  const issuing = rows.find((row) => row.role === 'issuing')
  if (root === undefined || issuing === undefined) throw noAuthorities(organizationId)
  return { root: toAuthority(root), issuing: toAuthority(issuing) }
}

/**
 * Unwraps the private key of the organization's `role` CA and returns it ready to sign. Checks
 * that the key matches the CA certificate's public key, so a wrapped key moved onto another
 * row cannot sign under the wrong name. `ERR_AUTHORITY_NOT_FOUND` when there is no such CA,
 * `ERR_KEY_UNAVAILABLE` when its key is offline or held by another provider.
 */
export async function loadAuthoritySigner(
  tx: Transaction,
  provider: KeyWrappingProvider,
  organizationId: string,
  role: AuthorityRole,
): Promise<AuthoritySigner> {
  const row = await findAuthorityRow(tx, organizationId, role)
  const authority = toAuthority(row)
  if (row.wrapped_private_key === null || row.provider === null) {
    throw new WardError(
      'ERR_KEY_UNAVAILABLE',
      `the ${role} CA of organization ${organizationId} has its key offline`,
      { details: { authority: row.id } },
    )
  }
  if (row.provider !== provider.name) {
    throw new WardError(
      'ERR_KEY_UNAVAILABLE',
      `the ${role} CA of organization ${organizationId} is held by ${row.provider}`,
      { details: { authority: row.id } },
    )
  }

  const pkcs8 = await provider.unwrap(
    row.wrapped_private_key,
    wrappingContext(organizationId, role, row.id),
  )
  const certificate = new x509.X509Certificate(row.certificate_pem)
  try {
    const derived = createPublicKey(
      createPrivateKey({ key: Buffer.from(pkcs8), format: 'der', type: 'pkcs8' }),
    ).export({ format: 'der', type: 'spki' })
    if (!bytesEqual(new Uint8Array(derived), new Uint8Array(certificate.publicKey.rawData))) {
      throw new WardError(
        'ERR_KEY_INVALID',
        `the ${role} CA of organization ${organizationId} does not match its certificate`,
        { details: { authority: row.id } },
      )
    }
    const privateKey = await x509Crypto.subtle.importKey(
      'pkcs8',
      toArrayBuffer(pkcs8),
      p256KeyAlgorithm,
      false,
      ['sign'],
    )
    return {
      authority,
      certificate,
      subjectKeyIdentifier: row.subject_key_identifier,
      privateKey,
    }
  } finally {
    pkcs8.fill(0)
  }
}

/**
 * The root CA's current CRL. The root certifies only the issuing CA, so its CRL changes only
 * if that is revoked; it is kept, and re-signed when less than
 * {@link authorityLifetimes.rootCrlRenewDays} remain of it and the root's key is online.
 */
export async function currentRootCrl(
  tx: Transaction,
  provider: KeyWrappingProvider,
  organizationId: string,
): Promise<CertificateRevocationList> {
  const row = await findAuthorityRow(tx, organizationId, 'root')
  const renewBy = addDays(new Date(), authorityLifetimes.rootCrlRenewDays).toISOString()
  const stale =
    row.crl_pem === null || row.crl_next_update === null || row.crl_next_update < renewBy
  if (stale && row.wrapped_private_key !== null) {
    return storeRootCrl(tx, await loadAuthoritySigner(tx, provider, organizationId, 'root'))
  }
  if (row.crl_pem === null || row.crl_next_update === null) {
    throw new WardError(
      'ERR_KEY_UNAVAILABLE',
      `the root CA of organization ${organizationId} has no CRL and its key is offline`,
      { details: { authority: row.id } },
    )
  }
  const crl = new x509.X509Crl(row.crl_pem)
  return {
    pem: row.crl_pem,
    number: row.crl_number,
    thisUpdate: crl.thisUpdate.toISOString(),
    nextUpdate: row.crl_next_update,
  }
}

/**
 * Takes the next CRL number of CA `authorityId`. The update locks the CA's row until the
 * transaction ends, so concurrent signers get distinct, increasing numbers.
 */
export async function nextCrlNumber(tx: Transaction, authorityId: string): Promise<number> {
  const row = await tx
    .updateTable('certificate_authorities')
    .set((eb) => ({ crl_number: eb('crl_number', '+', 1) }))
    .where('id', '=', authorityId)
    .returning('crl_number')
    .executeTakeFirstOrThrow()
  return Number(row.crl_number)
}

/** The organization's `role` CA row; `ERR_AUTHORITY_NOT_FOUND` when there is none. */
export async function findAuthorityRow(
  tx: Transaction,
  organizationId: string,
  role: AuthorityRole,
): Promise<CertificateAuthorityTable> {
  const row = await tx
    .selectFrom('certificate_authorities')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('role', '=', role)
    .executeTakeFirst()
  if (row === undefined) throw noAuthorities(organizationId)
  return row
}

// Revoking the issuing CA is not offered yet, so the root's CRL is always empty.
async function storeRootCrl(
  tx: Transaction,
  signer: AuthoritySigner,
): Promise<CertificateRevocationList> {
  const number = await nextCrlNumber(tx, signer.authority.id)
  const now = new Date()
  const crl = await signCrl(signer, {
    number,
    thisUpdate: new Date(now.getTime() - backdateMs),
    nextUpdate: addDays(now, authorityLifetimes.rootCrlDays),
    entries: [],
  })
  await tx
    .updateTable('certificate_authorities')
    .set({ crl_pem: crl.pem, crl_next_update: crl.nextUpdate })
    .where('id', '=', signer.authority.id)
    .execute()
  return crl
}

async function generateAuthorityKeys(): Promise<CryptoKeyPair> {
  // Extractable only so that the private key can be wrapped; it is never exported in clear.
  return x509Crypto.subtle.generateKey(p256KeyAlgorithm, true, ['sign', 'verify'])
}

async function insertAuthority(
  tx: Transaction,
  provider: KeyWrappingProvider,
  input: {
    readonly organizationId: string
    readonly role: AuthorityRole
    readonly issuerId: string | null
    readonly certificate: x509.X509Certificate
    readonly subjectKeyIdentifier: string
    readonly privateKey: CryptoKey
  },
): Promise<CertificateAuthority> {
  const id = randomUUID()
  const pkcs8 = new Uint8Array(await x509Crypto.subtle.exportKey('pkcs8', input.privateKey))
  let wrapped: Uint8Array
  try {
    wrapped = await provider.wrap(pkcs8, wrappingContext(input.organizationId, input.role, id))
  } finally {
    pkcs8.fill(0)
  }
  const row: CertificateAuthorityTable = {
    id,
    organization_id: input.organizationId,
    role: input.role,
    issuer_id: input.issuerId,
    subject: input.certificate.subject,
    serial_number: input.certificate.serialNumber,
    subject_key_identifier: input.subjectKeyIdentifier,
    fingerprint_sha256: sha256Hex(input.certificate.rawData),
    certificate_pem: `${input.certificate.toString('pem')}\n`,
    not_before: input.certificate.notBefore.toISOString(),
    not_after: input.certificate.notAfter.toISOString(),
    wrapped_private_key: wrapped,
    provider: provider.name,
    crl_number: 0,
    crl_pem: null,
    crl_next_update: null,
    created_at: new Date().toISOString(),
  }
  await tx.insertInto('certificate_authorities').values(row).execute()
  return toAuthority(row)
}

function authorityName(slug: string, hostName: string, commonName: string): x509.Name {
  const domainComponents = hostName
    .split('.')
    .reverse()
    .map((label) => ({ DC: [{ ia5String: label }] }))
  return new x509.Name([
    ...domainComponents,
    { O: [{ utf8String: slug }] },
    { CN: [{ utf8String: commonName }] },
  ])
}

function wrappingContext(organizationId: string, role: AuthorityRole, id: string): string {
  return `certificate-authority ${role} ${organizationId} ${id}`
}

function toAuthority(row: CertificateAuthorityTable): CertificateAuthority {
  return {
    id: row.id,
    organizationId: row.organization_id,
    role: row.role as AuthorityRole,
    issuerId: row.issuer_id,
    subject: row.subject,
    serialNumber: row.serial_number,
    subjectKeyIdentifier: row.subject_key_identifier,
    fingerprintSha256: row.fingerprint_sha256,
    certificatePem: row.certificate_pem,
    notBefore: row.not_before,
    notAfter: row.not_after,
    keyOnline: row.wrapped_private_key !== null,
  }
}

function noAuthorities(organizationId: string): WardError {
  return new WardError(
    'ERR_AUTHORITY_NOT_FOUND',
    `organization ${organizationId} has no device authorities`,
    { details: { organizationId } },
  )
}
