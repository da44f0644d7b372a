import { createHash, createPublicKey, randomBytes, webcrypto } from 'node:crypto'

// @peculiar/x509 resolves its algorithms through tsyringe, which needs the metadata polyfill.
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'

import { WardError, type WardErrorCode } from '@ward/core'

export { x509 }

/** Node's WebCrypto, typed as the X.509 library expects it; every library call is given it. */
export const x509Crypto = webcrypto as unknown as NonNullable<
  Parameters<typeof x509.X509CertificateGenerator.create>[1]
>

/** A WebCrypto key, as Node's WebCrypto makes them. */
export type CryptoKey = webcrypto.CryptoKey

/** A WebCrypto key pair, as Node's WebCrypto makes them. */
export type CryptoKeyPair = webcrypto.CryptoKeyPair

/** The one key algorithm of Ward's authorities and devices: ECDSA on NIST P-256. */
export const p256KeyAlgorithm = { name: 'ECDSA', namedCurve: 'P-256' } as const

/** ECDSA with SHA-256, the signature every Ward certificate and CRL carries. */
export const ecdsaSha256 = { name: 'ECDSA', hash: 'SHA-256' } as const

/** Extended key usage for TLS client authentication (RFC 5280, id-kp-clientAuth). */
export const clientAuthUsage = '1.3.6.1.5.5.7.3.2'

/**
 * Clock skew Ward allows for: certificates and CRLs start this long before they are made, so a
 * peer whose clock is a little behind does not see them as not yet valid.
 */
export const backdateMs = 5 * 60 * 1000

const dayMs = 24 * 3600 * 1000

/** `days` whole days after `from`. */
export function addDays(from: Date, days: number): Date {
  return new Date(from.getTime() + days * dayMs)
}

/** Longest PEM text Ward reads: a few certificates, never a bulk upload. */
export const maxPemLength = 64 * 1024

/**
 * The DER bodies of the PEM blocks labelled `label` in `text`, in order. Refuses anything but
 * whitespace between blocks, bad base64, and DER whose outer length does not cover exactly the
 * decoded bytes, so trailing or smuggled data never reaches the parser.
 */
export function pemBlocks(
  text: string,
  label: string,
  rule: {
    readonly field: string
    readonly code: WardErrorCode
    readonly maxBlocks: number
    /** Longest text read; {@link maxPemLength} unless given. */
    readonly maxLength?: number
  },
): Uint8Array[] {
  const invalid = (message: string) =>
    new WardError(rule.code, `${rule.field} ${message}`, { details: { field: rule.field } })
  const maxLength = rule.maxLength ?? maxPemLength
  if (text.length > maxLength) throw invalid(`is longer than ${maxLength} characters`)
  const pattern = /-----BEGIN ([A-Z0-9 ]+)-----([^-]*)-----END ([A-Z0-9 ]+)-----/g
  const blocks: Uint8Array[] = []
  let rest = ''
  let last = 0
  for (const match of text.matchAll(pattern)) {
    rest += text.slice(last, match.index)
    last = match.index + match[0].length
    if (match[1] !== label || match[3] !== label) {
      throw invalid(`must hold only PEM blocks labelled ${label}`)
    }
    const body = (match[2] ?? '').replace(/\s+/g, '')
    if (body.length === 0 || body.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(body)) {
      throw invalid('holds a PEM block that is not valid base64')
    }
    const der = new Uint8Array(Buffer.from(body, 'base64'))
    if (!isSingleDerValue(der)) {
      throw invalid('holds a PEM block that is not one DER structure')
    }
    blocks.push(der)
  }
  rest += text.slice(last)
  if (rest.trim().length > 0) throw invalid(`must hold only PEM blocks labelled ${label}`)
  if (blocks.length === 0) throw invalid(`holds no PEM block labelled ${label}`)
  if (blocks.length > rule.maxBlocks) {
    throw invalid(`holds more than ${rule.maxBlocks} PEM blocks`)
  }
  return blocks
}

/** True when `der` is exactly one DER SEQUENCE, with nothing after it. */
export function isSingleDerValue(der: Uint8Array): boolean {
  if (der.length < 2 || der[0] !== 0x30) return false
  const first = der[1] as number
  if (first < 0x80) return 2 + first === der.length
  const lengthBytes = first & 0x7f
  if (lengthBytes === 0 || lengthBytes > 4 || der.length < 2 + lengthBytes) return false
  let length = 0
  for (let index = 0; index < lengthBytes; index++) {
    length = length * 256 + (der[2 + index] as number)
  }
  return 2 + lengthBytes + length === der.length
}

/** Parses one DER certificate, or throws `ERR_CERTIFICATE_INVALID` naming `field`. */
export function parseCertificate(der: Uint8Array, field: string): x509.X509Certificate {
  if (!isSingleDerValue(der)) {
    throw new WardError('ERR_CERTIFICATE_INVALID', `${field} is not a DER certificate`, {
      details: { field },
    })
  }
  try {
    return new x509.X509Certificate(der)
  } catch (cause) {
    throw new WardError('ERR_CERTIFICATE_INVALID', `${field} is not an X.509 certificate`, {
      cause,
      details: { field },
    })
  }
}

/** PEM text of `der` under `label`, with a final newline. */
export function toPem(der: ArrayBuffer | Uint8Array, label: string): string {
  const bytes = der instanceof Uint8Array ? toArrayBuffer(der) : der
  return `${x509.PemConverter.encode(bytes, label)}\n`
}

/** A fresh ArrayBuffer holding exactly `bytes`. */
export function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(bytes.length)
  copy.set(bytes)
  return copy.buffer
}

/** Lowercase hex SHA-256 of `bytes`: how Ward names a certificate or key by its content. */
export function sha256Hex(bytes: ArrayBuffer | Uint8Array): string {
  return createHash('sha256')
    .update(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes))
    .digest('hex')
}

/**
 * A fresh certificate serial number: 128 random bits, as the hex the X.509 library encodes as a
 * positive INTEGER. Randomness makes serials unguessable, so a forged certificate cannot be
 * lined up against a known one.
 */
export function randomSerialNumber(): string {
  return randomBytes(16).toString('hex')
}

/**
 * `serialNumber` in Ward's canonical form, the one the X.509 library reads back: lowercase hex
 * of the unsigned value's minimal bytes. Accepts upper case, colons and a sign byte, as OpenSSL
 * and Node print them; throws `ERR_INPUT_INVALID` for anything that is not hex.
 */
export function canonicalSerialNumber(serialNumber: string): string {
  let hex = serialNumber.trim().toLowerCase().replace(/:/g, '')
  if (hex.length === 0 || hex.length > 42 || !/^[0-9a-f]+$/.test(hex)) {
    const message = 'serialNumber must be hexadecimal, at most 20 bytes'
    throw new WardError('ERR_INPUT_INVALID', message, { details: { field: 'serialNumber' } })
  }
  if (hex.length % 2 === 1) hex = `0${hex}`
  while (hex.length > 2 && hex.startsWith('00')) hex = hex.slice(2)
  return hex
}

/** Facts about a SubjectPublicKeyInfo that decide whether Ward accepts the key. */
export interface PublicKeyFacts {
  /** `ec`, `rsa`, `ed25519`, … as Node names key types. */
  readonly type: string
  /** For EC keys, the OpenSSL curve name (`prime256v1` is P-256). */
  readonly namedCurve?: string
  /** For RSA keys, the modulus length in bits. */
  readonly modulusLength?: number
}

/** The key type of a DER SubjectPublicKeyInfo; `undefined` when Node cannot read it. */
export function publicKeyFacts(spki: ArrayBuffer | Uint8Array): PublicKeyFacts | undefined {
  try {
    const key = createPublicKey({
      key: Buffer.from(spki instanceof Uint8Array ? spki : new Uint8Array(spki)),
      format: 'der',
      type: 'spki',
    })
    const details = key.asymmetricKeyDetails ?? {}
    return {
      type: key.asymmetricKeyType ?? 'unknown',
      ...(details.namedCurve === undefined ? {} : { namedCurve: details.namedCurve }),
      ...(details.modulusLength === undefined ? {} : { modulusLength: details.modulusLength }),
    }
  } catch {
    return undefined
  }
}

/** True when the DER SubjectPublicKeyInfo is an ECDSA P-256 key. */
export function isP256PublicKey(spki: ArrayBuffer | Uint8Array): boolean {
  const facts = publicKeyFacts(spki)
  return facts?.type === 'ec' && facts.namedCurve === 'prime256v1'
}

/** DER of a non-negative INTEGER, for extensions the library has no class for. */
export function derInteger(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError('DER integer must be a non-negative safe integer')
  }
  const bytes: number[] = []
  let rest = value
  do {
    bytes.unshift(rest % 256)
    rest = Math.floor(rest / 256)
  } while (rest > 0)
  if ((bytes[0] as number) >= 0x80) bytes.unshift(0)
  return new Uint8Array([0x02, bytes.length, ...bytes])
}
