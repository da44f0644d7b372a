import { derInteger, ecdsaSha256, toPem, x509, x509Crypto, type CryptoKey } from './x509.js'

/**
 * Why a certificate was revoked, as RFC 5280 names the reasons that apply to a device's
 * certificate. Every one of them is final; a suspension, which can be lifted, is a separate
 * status (`certificateHold`).
 */
export type RevocationReason =
  | 'unspecified'
  | 'keyCompromise'
  | 'affiliationChanged'
  | 'superseded'
  | 'cessationOfOperation'
  | 'privilegeWithdrawn'

/** Every {@link RevocationReason}, for checking input. */
export const revocationReasons: readonly RevocationReason[] = [
  'unspecified',
  'keyCompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'privilegeWithdrawn',
]

/** The reason code a suspended certificate is listed with; lifting the suspension unlists it. */
export const holdReason = 'certificateHold'

/** One certificate listed on a CRL. */
export interface RevokedEntry {
  readonly serialNumber: string
  readonly revokedAt: Date
  readonly reason: RevocationReason | typeof holdReason
}

/** A signed CRL with the facts a relying party schedules by. */
export interface CertificateRevocationList {
  readonly pem: string
  /** The CRL number; each CRL of a CA has a larger one than the CRL before it. */
  readonly number: number
  readonly thisUpdate: string
  /** When the CRL stops being valid; a TLS server holding it must have a newer one by then. */
  readonly nextUpdate: string
}

/** What signs a CRL: the CA's certificate (for its name and key identifier) and private key. */
export interface CrlSigner {
  readonly certificate: x509.X509Certificate
  readonly subjectKeyIdentifier: string
  readonly privateKey: CryptoKey
}

const crlNumberOid = '2.5.29.20'

const reasonCodes: Record<RevokedEntry['reason'], x509.X509CrlReason> = {
  unspecified: x509.X509CrlReason.unspecified,
  keyCompromise: x509.X509CrlReason.keyCompromise,
  affiliationChanged: x509.X509CrlReason.affiliationChanged,
  superseded: x509.X509CrlReason.superseded,
  cessationOfOperation: x509.X509CrlReason.cessationOfOperation,
  privilegeWithdrawn: x509.X509CrlReason.privilegeWithdrawn,
  certificateHold: x509.X509CrlReason.certificateHold,
}

/**
 * Signs an X.509 v2 CRL listing `entries`, issued under the signer's exact subject name, with
 * the CRL number and an authority key identifier naming the signer's key. A reason of
 * `unspecified` is left out of the entry, as RFC 5280 asks.
 */
export async function signCrl(
  signer: CrlSigner,
  input: {
    readonly number: number
    readonly thisUpdate: Date
    readonly nextUpdate: Date
    readonly entries: readonly RevokedEntry[]
  },
): Promise<CertificateRevocationList> {
  const crl = await x509.X509CrlGenerator.create(
    {
      issuer: signer.certificate.subjectName,
      thisUpdate: input.thisUpdate,
      nextUpdate: input.nextUpdate,
      signingAlgorithm: ecdsaSha256,
      signingKey: signer.privateKey,
      extensions: [
        new x509.AuthorityKeyIdentifierExtension(signer.subjectKeyIdentifier),
        new x509.Extension(crlNumberOid, false, derInteger(input.number)),
      ],
      entries: input.entries.map((entry) => ({
        serialNumber: entry.serialNumber,
        revocationDate: entry.revokedAt,
        reason: reasonCodes[entry.reason],
      })),
    },
    x509Crypto,
  )
  return {
    // OpenSSL reads CRLs only under the label RFC 7468 gives them.
    pem: toPem(crl.rawData, 'X509 CRL'),
    number: input.number,
    thisUpdate: input.thisUpdate.toISOString(),
    nextUpdate: input.nextUpdate.toISOString(),
  }
}
