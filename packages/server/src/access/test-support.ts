import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto'

// Used only by the access domain's tests: a WebAuthn authenticator in software, with a real
// P-256 key pair and real ES256 signatures, and the little CBOR it needs to speak.

type CborValue = number | string | Uint8Array | CborValue[] | Map<CborValue, CborValue>

/** Encodes the subset of CBOR (RFC 8949) that WebAuthn's attestation objects use. */
export function encodeCbor(value: CborValue): Buffer {
  if (typeof value === 'number') {
    return value >= 0 ? head(0, value) : head(1, -1 - value)
  }
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'utf8')
    return Buffer.concat([head(3, bytes.length), bytes])
  }
  if (value instanceof Uint8Array) return Buffer.concat([head(2, value.length), value])
  if (Array.isArray(value)) return Buffer.concat([head(4, value.length), ...value.map(encodeCbor)])
  const parts: Buffer[] = [head(5, value.size)]
  for (const [key, item] of value) parts.push(encodeCbor(key), encodeCbor(item))
  return Buffer.concat(parts)
}

function head(major: number, length: number): Buffer {
  if (length < 24) return Buffer.of((major << 5) | length)
  if (length < 256) return Buffer.of((major << 5) | 24, length)
  if (length < 65_536) return Buffer.of((major << 5) | 25, length >> 8, length & 0xff)
  const buffer = Buffer.alloc(5)
  buffer[0] = (major << 5) | 26
  buffer.writeUInt32BE(length, 1)
  return buffer
}

const base64url = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64url')

/**
 * A security key in software: ES256 (P-256), attestation "none", a sign counter that goes up
 * by one per assertion (tests may set it to replay a clone).
 */
export class SoftwareAuthenticator {
  readonly credentialId = randomBytes(32)
  readonly #privateKey: KeyObject
  readonly #publicKey: KeyObject
  counter = 0

  constructor() {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    this.#privateKey = pair.privateKey
    this.#publicKey = pair.publicKey
  }

  /** Answers registration options as a browser would, as RegistrationResponseJSON. */
  register(options: { challenge: string; rp: { id?: string } }, origin: string) {
    const rpId = options.rp.id as string
    const jwk = this.#publicKey.export({ format: 'jwk' })
    const coseKey = new Map<CborValue, CborValue>([
      [1, 2],
      [3, -7],
      [-1, 1],
      [-2, Buffer.from(jwk.x as string, 'base64url')],
      [-3, Buffer.from(jwk.y as string, 'base64url')],
    ])
    const length = Buffer.alloc(2)
    length.writeUInt16BE(this.credentialId.length)
    const authData = Buffer.concat([
      sha256(rpId),
      Buffer.of(0x01 | 0x04 | 0x40),
      counterBytes(this.counter),
      Buffer.alloc(16),
      length,
      this.credentialId,
      encodeCbor(coseKey),
    ])
    const attestationObject = encodeCbor(
      new Map<CborValue, CborValue>([
        ['fmt', 'none'],
        ['attStmt', new Map()],
        ['authData', authData],
      ]),
    )
    const clientData = clientDataJson('webauthn.create', options.challenge, origin)
    return {
      id: base64url(this.credentialId),
      rawId: base64url(this.credentialId),
      type: 'public-key',
      response: {
        clientDataJSON: base64url(clientData),
        attestationObject: base64url(attestationObject),
        transports: ['usb'],
      },
      clientExtensionResults: {},
    }
  }

  /**
   * Answers authentication options as AuthenticationResponseJSON, signing
   * `authenticatorData ‖ SHA-256(clientDataJSON)`. `forge` flips a bit of the signature.
   */
  authenticate(
    options: { challenge: string; rpId?: string },
    origin: string,
    tamper: { forge?: boolean; counter?: number } = {},
  ) {
    this.counter = tamper.counter ?? this.counter + 1
    const authData = Buffer.concat([
      sha256(options.rpId as string),
      Buffer.of(0x01 | 0x04),
      counterBytes(this.counter),
    ])
    const clientData = clientDataJson('webauthn.get', options.challenge, origin)
    const signature = sign(
      'sha256',
      Buffer.concat([authData, sha256(clientData)]),
      this.#privateKey,
    )
    if (tamper.forge === true)
      signature.writeUInt8((signature.at(-1) as number) ^ 0x01, signature.length - 1)
    return {
      id: base64url(this.credentialId),
      rawId: base64url(this.credentialId),
      type: 'public-key',
      response: {
        clientDataJSON: base64url(clientData),
        authenticatorData: base64url(authData),
        signature: base64url(signature),
      },
      clientExtensionResults: {},
    }
  }
}

function sha256(data: string | Uint8Array): Buffer {
  return createHash('sha256').update(data).digest()
}

function counterBytes(counter: number): Buffer {
  const bytes = Buffer.alloc(4)
  bytes.writeUInt32BE(counter)
  return bytes
}

function clientDataJson(type: string, challenge: string, origin: string): Buffer {
  return Buffer.from(JSON.stringify({ type, challenge, origin, crossOrigin: false }), 'utf8')
}
