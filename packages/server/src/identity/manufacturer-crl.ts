import { WardError } from '@ward/core'

import { backdateMs, isSingleDerValue, pemBlocks, x509, x509Crypto } from './x509.js'

/**
 * Largest manufacturer CRL Ward takes, in DER bytes: about twelve thousand revoked
 * certificates. A manufacturer whose CRL is larger must split its fleet under several CAs.
 */
export const maxManufacturerCrlBytes = 512 * 1024

/** Longest PEM text of a manufacturer CRL: the largest DER in base64, lines of 64 with CRLF. */
const maxManufacturerCrlPemLength = Math.ceil(((maxManufacturerCrlBytes * 4) / 3) * (66 / 64)) + 100

/**
 * How the X.509 library parses a manufacturer CRL. Its default of 10,000 ASN.1 nodes stops at
 * about 1,400 revoked certificates; a node takes at least two bytes, so half the size limit
 * lets every CRL within the limit parse while still bounding the work.
 */
const crlParseOptions = { berOptions: { maxNodes: maxManufacturerCrlBytes / 2 } }

const crlNumberOid = '2.5.29.20'
const authorityKeyIdentifierOid = '2.5.29.35'
const deltaCrlIndicatorOid = '2.5.29.27'
const issuingDistributionPointOid = '2.5.29.28'

/** A manufacturer's CRL, parsed and checked for form (not yet for its signer). */
export interface ManufacturerCrl {
  readonly der: Uint8Array
  readonly crl: x509.X509Crl
  /** The CRL number, which grows with each CRL its issuer signs. */
  readonly number: bigint
  readonly thisUpdate: Date
  readonly nextUpdate: Date
  /** How many certificates it lists. */
  readonly entries: number
}

/**
 * Parses a manufacturer's CRL, PEM (`X509 CRL`) or DER, and checks its form: at most
 * {@link maxManufacturerCrlBytes} (`ERR_PAYLOAD_TOO_LARGE`); one DER CertificateList the X.509
 * library reads; a CRL number of at most 20 octets and a nextUpdate after its thisUpdate, both
 * of which RFC 5280 asks every CRL issuer for; and a complete CRL — not a delta CRL, nor one
 * scoped by an issuing distribution point, whose silence about a certificate would not mean it
 * stands — with no critical extension Ward does not know, on the CRL or on an entry. Anything
 * else is `ERR_CRL_INVALID`, naming what is wrong.
 */
export function parseManufacturerCrl(input: string | Uint8Array): ManufacturerCrl {
  const der = crlDer(input)
  if (der.length > maxManufacturerCrlBytes) throw tooLarge()
  if (!isSingleDerValue(der)) throw invalid('is not one DER structure')
  let crl: x509.X509Crl
  try {
    crl = new x509.X509Crl(der, crlParseOptions)
  } catch (cause) {
    throw invalid('is not an X.509 CRL', cause)
  }

  for (const extension of crl.extensions) {
    if (extension.type === deltaCrlIndicatorOid) {
      throw invalid("is a delta CRL; upload the manufacturer's complete CRL")
    }
    if (extension.type === issuingDistributionPointOid) {
      throw invalid(
        "has an issuing distribution point (a partitioned or indirect CRL); upload the manufacturer's complete CRL",
      )
    }
    const known = extension.type === crlNumberOid || extension.type === authorityKeyIdentifierOid
    if (extension.critical && !known) {
      throw invalid(`has a critical extension Ward does not know (${extension.type})`)
    }
  }
  const numberExtension = crl.getExtension(crlNumberOid)
  if (numberExtension === null) throw invalid('carries no CRL number (RFC 5280, 5.2.3)')
  const number = derNonNegativeInteger(new Uint8Array(numberExtension.value))

  const thisUpdate = crl.thisUpdate
  const nextUpdate = crl.nextUpdate
  if (nextUpdate === undefined) throw invalid('carries no nextUpdate (RFC 5280, 5.1.2.5)')
  if (nextUpdate.getTime() <= thisUpdate.getTime()) {
    throw invalid(
      `nextUpdate ${nextUpdate.toISOString()} is not after its thisUpdate ${thisUpdate.toISOString()}`,
    )
  }

  let entries: readonly x509.X509CrlEntry[]
  try {
    entries = crl.entries
  } catch (cause) {
    throw invalid('lists a revoked certificate that does not parse', cause)
  }
  for (const entry of entries) {
    const critical = entry.extensions.find((extension) => extension.critical)
    if (critical !== undefined) {
      throw invalid(
        `lists serial ${entry.serialNumber} with a critical extension (${critical.type}), as only indirect CRLs do`,
      )
    }
  }
  return { der, crl, number, thisUpdate, nextUpdate, entries: entries.length }
}

/**
 * Refuses a CRL whose thisUpdate is in the future, allowing the clock skew Ward allows
 * everywhere ({@link backdateMs}, 5 minutes): a CRL from the future is a mistake or a clock
 * gone wrong, and taking it would let it outrank the CRLs signed before it.
 */
export function checkThisUpdate(crl: ManufacturerCrl, now: Date): void {
  if (crl.thisUpdate.getTime() > now.getTime() + backdateMs) {
    throw invalid(
      `thisUpdate ${crl.thisUpdate.toISOString()} is in the future (now ${now.toISOString()})`,
    )
  }
}

/**
 * True when `certificate` — a manufacturer CA — signed `crl` under its own name: the CRL's
 * issuer is its subject, its key usage (when it has one) allows cRLSign, and the signature
 * verifies under its key.
 */
export async function signedBy(
  crl: ManufacturerCrl,
  certificate: x509.X509Certificate,
): Promise<boolean> {
  if (crl.crl.issuer !== certificate.subject) return false
  const keyUsage = certificate.getExtension(x509.KeyUsagesExtension)
  if (keyUsage !== null && (keyUsage.usages & x509.KeyUsageFlags.cRLSign) === 0) return false
  try {
    return await crl.crl.verify({ publicKey: certificate }, x509Crypto)
  } catch {
    return false
  }
}

/** Whether `certificate` names the CRL's issuer but its key usage does not allow signing CRLs. */
export function mayNotSignCrl(crl: ManufacturerCrl, certificate: x509.X509Certificate): boolean {
  const keyUsage = certificate.getExtension(x509.KeyUsagesExtension)
  return (
    crl.crl.issuer === certificate.subject &&
    keyUsage !== null &&
    (keyUsage.usages & x509.KeyUsageFlags.cRLSign) === 0
  )
}

/** The CRL stored with a manufacturer CA, as it was checked when uploaded. */
export function storedManufacturerCrl(der: Uint8Array): x509.X509Crl {
  return new x509.X509Crl(der, crlParseOptions)
}

function crlDer(input: string | Uint8Array): Uint8Array {
  const text =
    typeof input === 'string'
      ? input
      : input[0] === 0x2d // '-': PEM text, as a file holds it
        ? Buffer.from(input).toString('utf8')
        : undefined
  if (text === undefined) return input as Uint8Array
  if (text.length > maxManufacturerCrlPemLength) throw tooLarge()
  const [der] = pemBlocks(text, 'X509 CRL', {
    field: 'crl',
    code: 'ERR_CRL_INVALID',
    maxBlocks: 1,
    maxLength: maxManufacturerCrlPemLength,
  })
  return der as Uint8Array
}

/** The value of a DER INTEGER of at most 20 octets that is not negative (a CRL number). */
function derNonNegativeInteger(der: Uint8Array): bigint {
  const length = der[1] ?? 0
  const content = der.subarray(2)
  const wellFormed =
    der[0] === 0x02 &&
    length > 0 &&
    length < 0x80 &&
    content.length === length &&
    ((content[0] as number) & 0x80) === 0
  if (!wellFormed) throw invalid('CRL number is not a non-negative DER INTEGER')
  // A leading zero octet only marks the value positive; it does not count toward 20 octets.
  const octets = content[0] === 0 && content.length > 1 ? content.subarray(1) : content
  if (octets.length > 20) throw invalid('CRL number is longer than 20 octets (RFC 5280, 5.2.3)')
  return BigInt(`0x${Buffer.from(content).toString('hex')}`)
}

function invalid(message: string, cause?: unknown): WardError {
  return new WardError('ERR_CRL_INVALID', `crl ${message}`, {
    ...(cause === undefined ? {} : { cause }),
    details: { field: 'crl' },
  })
}

function tooLarge(): WardError {
  return new WardError(
    'ERR_PAYLOAD_TOO_LARGE',
    `crl is larger than ${maxManufacturerCrlBytes / 1024} KiB of DER`,
    { details: { field: 'crl', maxBytes: maxManufacturerCrlBytes } },
  )
}
