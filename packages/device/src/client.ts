import { X509Certificate, createPrivateKey, sign, webcrypto } from 'node:crypto'
import { access, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises'
import { Agent, request } from 'node:https'
import type { IncomingHttpHeaders } from 'node:http'
import { join } from 'node:path'
import { checkServerIdentity, type PeerCertificate } from 'node:tls'

// @peculiar/x509 finds its algorithms through tsyringe, which needs the metadata polyfill
// loaded first.
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { WardError, toBase64 } from '@ward/core'
import type { WardErrorCode } from '@ward/core'

import { batchBundle, isRecord, outcomeText, readBatchResponse } from './fhir.js'
import type { QueuedReading } from './queue.js'

/** Lowest TLS version the device accepts. TLS 1.2 is limited to ECDHE suites with AEAD. */
export type TlsMinimum = 'TLSv1.3' | 'TLSv1.2'

/** How the device connects, whether enrolling or enrolled. */
export interface ConnectionOptions {
  /** Lowest TLS version to accept. Default `TLSv1.3`. */
  minTlsVersion?: TlsMinimum
  /** How long a request may take, from connecting to the last byte of the answer. Default 30 s. */
  timeoutMs?: number
  /**
   * For an enrolled device: Ward's device endpoint now, when it is no longer at the address the
   * device enrolled with (another port, say). Used for this client's connections, and stored
   * with the identity at the next renewal. The server name and trust anchors stay the ones
   * enrolled with.
   */
  url?: string
}

/** A device identity provisioned at the factory, used instead of an enrollment token. */
export interface FactoryIdentity {
  /** PEM chain of the factory certificate, under the manufacturer CA registered with Ward. */
  certificateChainPem: string
  /** PEM private key of the factory certificate (ECDSA P-256). It signs the CSR, nothing more. */
  privateKeyPem: string
}

/** What `enroll` needs. Give either `token` or `factory`. */
export interface EnrollOptions extends ConnectionOptions {
  /** Base URL of Ward's device endpoint, such as `https://ward.example.org:8444`. */
  url: string
  /**
   * Base URL where Ward accepts enrollment, such as `https://ward.example.org:8443`: Ward's
   * HTTPS API, since the device endpoint wants a client certificate the device does not have
   * yet. Default: `url`.
   */
  enrollmentUrl?: string
  /** TLS server name: `<organization slug>.<WARD_HOST_NAME>`. */
  serverName: string
  /** PEM trust anchors the device checks Ward's certificate against. */
  caPem: string
  /** The device's serial number, as registered with Ward. */
  serial: string
  /** One-time enrollment token issued for this serial. */
  token?: string
  /** Factory identity, for devices provisioned by their manufacturer. */
  factory?: FactoryIdentity
  /** Directory that will hold the device's key and certificate; created with mode 0700. */
  keyDirectory: string
}

/** Who the device is, as Ward enrolled it. */
export interface DeviceIdentity {
  deviceId: string
  serial: string
  url: string
  serverName: string
  /** When the current certificate expires, as an ISO 8601 time. */
  notAfter: string
}

/** What Ward answered for one reading of a batch. */
export interface ReadingOutcome {
  messageId: string
  /**
   * `accepted`: stored now (201). `duplicate`: stored before under this message id (200).
   * `rejected`: refused for what it holds (422 and other 4xx); sending it again cannot help.
   * `deferred`: any other answer; the reading is not known to be stored and must be resent.
   */
  result: 'accepted' | 'duplicate' | 'rejected' | 'deferred'
  status: number
  reason?: string
}

/** Anything that can deliver a batch of readings; `DeviceClient` is the real one. */
export interface ReadingSender {
  sendBatch(
    readings: readonly QueuedReading[],
    options?: { signal?: AbortSignal },
  ): Promise<ReadingOutcome[]>
}

/**
 * A request to Ward that got no usable answer: the connection failed, or Ward answered with an
 * error for the request as a whole. `status` is undefined when no HTTP answer arrived.
 */
export class DeliveryError extends WardError {
  readonly status: number | undefined
  /** The delay Ward asked for in `Retry-After`, in milliseconds. */
  readonly retryAfterMs: number | undefined
  /** The `code` of Ward's problem details, when it sent one. */
  readonly problemCode: string | undefined
  /**
   * True when Ward refused the request for what it holds (400, 413, 422): sending the same
   * readings again fails the same way, so they must be split or set aside instead.
   */
  readonly refusesContent: boolean

  constructor(
    code: WardErrorCode,
    message: string,
    facts: { status?: number; retryAfterMs?: number; problemCode?: string; cause?: unknown },
  ) {
    super(code, message, {
      cause: facts.cause,
      details: {
        status: facts.status ?? null,
        problemCode: facts.problemCode ?? null,
        retryAfterMs: facts.retryAfterMs ?? null,
      },
    })
    this.name = 'DeliveryError'
    this.status = facts.status
    this.retryAfterMs = facts.retryAfterMs
    this.problemCode = facts.problemCode
    this.refusesContent = facts.status === 400 || facts.status === 413 || facts.status === 422
  }
}

/** Ward's own host name in a device server name `<organization>.<host>`. */
function wardHostName(serverName: string): string {
  return serverName.slice(serverName.indexOf('.') + 1)
}

const IDENTITY_FILE = 'identity.json'
const CA_FILE = 'ca.pem'
const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
const SERIAL_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/
const ANSWER_LIMIT_BYTES = 16 * 1024 * 1024
const DEFAULT_TIMEOUT_MS = 30_000

// TLS 1.3 suites first; the ECDHE AEAD suites only matter when TLS 1.2 is allowed.
const CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
].join(':')

const webCrypto = webcrypto as unknown as NonNullable<
  Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[1]
>

/** The validity period of a certificate. */
export interface CertificateValidity {
  readonly notBefore: Date
  readonly notAfter: Date
}

/** A device identity whose certificate can be renewed in the field; `DeviceClient` is one. */
export interface RenewableCertificate {
  certificateValidity(): CertificateValidity
  renew(): Promise<unknown>
}

function validityOf(certificateChain: string): CertificateValidity {
  const leaf = new X509Certificate(certificateChain)
  return { notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo) }
}

interface StoredIdentity extends DeviceIdentity {
  generation: number
}

interface Endpoint {
  url: URL
  serverName: string
  timeoutMs: number
}

interface Answer {
  status: number
  headers: IncomingHttpHeaders
  body: unknown
}

/**
 * Enrolls the device with Ward: makes a P-256 key pair on the device, sends a PKCS#10
 * certificate request under the enrollment token (or signed with the factory key), and stores
 * the key (mode 0600), the certificate chain Ward issued and the trust anchors in
 * `keyDirectory`. The private key is never sent anywhere. Resolves with a client ready to send
 * readings over mutual TLS.
 *
 * Throws `ERR_ALREADY_INITIALIZED` when the directory already holds an identity,
 * `ERR_INPUT_INVALID` for a bad serial or when neither or both of token and factory are given,
 * a `DeliveryError` when Ward refuses or cannot be reached, and `ERR_KEY_INVALID` when the
 * certificate Ward returned is not for the key the device made.
 */
export function enroll(options: EnrollOptions): Promise<DeviceClient> {
  return DeviceClient.enroll(options)
}

/**
 * An enrolled device's connection to Ward: sends batches of readings and renews its
 * certificate, over mutual TLS with its own key, keeping connections alive between requests.
 */
export class DeviceClient implements ReadingSender, RenewableCertificate {
  private stored: StoredIdentity
  private validity: CertificateValidity
  private agent: Agent
  private readonly endpoint: Endpoint
  private readonly caPem: string
  private readonly minTlsVersion: TlsMinimum | undefined

  private constructor(
    private readonly keyDirectory: string,
    identity: StoredIdentity,
    material: {
      caPem: string
      privateKeyPem: string
      certificateChain: string
      minTlsVersion: TlsMinimum | undefined
      timeoutMs: number | undefined
    },
  ) {
    this.stored = identity
    this.validity = validityOf(material.certificateChain)
    this.caPem = material.caPem
    this.minTlsVersion = material.minTlsVersion
    this.endpoint = endpointOf(identity.url, identity.serverName, material.timeoutMs)
    this.agent = this.mutualAgent(material.privateKeyPem, material.certificateChain)
  }

  /** Enrolls the device; see the `enroll` function, which calls this. */
  static async enroll(options: EnrollOptions): Promise<DeviceClient> {
    const endpoint = checkEnrollment(options)
    if (await exists(join(options.keyDirectory, IDENTITY_FILE))) {
      throw new WardError('ERR_ALREADY_INITIALIZED', 'the key directory is already enrolled', {
        details: { directory: options.keyDirectory },
      })
    }

    const { privateKeyPem, csrPem, csrDer } = await makeKeyAndRequest(options.serial)
    const body: Record<string, string> = { serial: options.serial, csr: csrPem }
    if (options.token !== undefined) {
      body['token'] = options.token
    } else if (options.factory !== undefined) {
      const factoryKey = createPrivateKey(options.factory.privateKeyPem)
      body['factoryCertificate'] = options.factory.certificateChainPem
      body['factorySignature'] = toBase64(sign('sha256', csrDer, factoryKey))
    }

    const enrollmentEndpoint =
      options.enrollmentUrl === undefined
        ? endpoint
        : endpointOf(options.enrollmentUrl, options.serverName, options.timeoutMs)
    const agent = new Agent({ ca: options.caPem, ...tlsFloor(options.minTlsVersion) })
    let issued: Issued
    try {
      const answer = await post(enrollmentEndpoint, agent, '/v1/enroll', body)
      issued = readIssued(answer, privateKeyPem, 'enrollment')
    } finally {
      agent.destroy()
    }

    await mkdir(options.keyDirectory, { recursive: true, mode: 0o700 })
    const identity: StoredIdentity = {
      deviceId: issued.deviceId,
      serial: options.serial,
      url: endpoint.url.href,
      serverName: options.serverName,
      notAfter: issued.notAfter,
      generation: 1,
    }
    await writeDurably(join(options.keyDirectory, CA_FILE), options.caPem, 0o644)
    await storeGeneration(options.keyDirectory, identity, privateKeyPem, issued.certificateChain)
    return new DeviceClient(options.keyDirectory, identity, {
      caPem: options.caPem,
      privateKeyPem,
      certificateChain: issued.certificateChain,
      minTlsVersion: options.minTlsVersion,
      timeoutMs: options.timeoutMs,
    })
  }

  /**
   * Opens the identity `enroll` stored in `keyDirectory`. Throws `ERR_NOT_INITIALIZED` when
   * the directory holds none, and `ERR_KEY_INVALID` when its files are damaged.
   */
  static async open(keyDirectory: string, options: ConnectionOptions = {}): Promise<DeviceClient> {
    let identity: StoredIdentity
    try {
      identity = parseIdentity(
        JSON.parse(await readFile(join(keyDirectory, IDENTITY_FILE), 'utf8')),
      )
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new WardError('ERR_NOT_INITIALIZED', 'the key directory holds no enrolled identity', {
          details: { directory: keyDirectory },
        })
      }
      throw new WardError('ERR_KEY_INVALID', 'the stored identity cannot be read', {
        cause,
        details: { file: IDENTITY_FILE },
      })
    }

    const files = [CA_FILE, keyFile(identity.generation), certificateFile(identity.generation)]
    const [caPem, privateKeyPem, certificateChain] = await Promise.all(
      files.map((file) =>
        readFile(join(keyDirectory, file), 'utf8').catch((cause: unknown) => {
          throw new WardError('ERR_KEY_INVALID', `the stored ${file} cannot be read`, {
            cause,
            details: { file },
          })
        }),
      ),
    )
    if (caPem === undefined || privateKeyPem === undefined || certificateChain === undefined) {
      throw new WardError('ERR_KEY_INVALID', 'the stored identity is incomplete')
    }
    if (options.url !== undefined) identity = { ...identity, url: options.url }
    return new DeviceClient(keyDirectory, identity, {
      caPem,
      privateKeyPem,
      certificateChain,
      minTlsVersion: options.minTlsVersion,
      timeoutMs: options.timeoutMs,
    })
  }

  /** The device's identity as Ward enrolled it, with the current certificate's expiry. */
  get identity(): DeviceIdentity {
    const { deviceId, serial, url, serverName, notAfter } = this.stored
    return { deviceId, serial, url, serverName, notAfter }
  }

  /**
   * Posts the readings as one FHIR batch Bundle and resolves with Ward's answer for each, in
   * order. Throws a `DeliveryError` when no per-reading answer came back: the connection failed,
   * Ward answered the whole request with an error (429 and 503 carry `retryAfterMs`), or the
   * answer was not a batch-response with one entry per reading.
   */
  async sendBatch(
    readings: readonly QueuedReading[],
    options: { signal?: AbortSignal } = {},
  ): Promise<ReadingOutcome[]> {
    if (readings.length === 0) return []
    const bundle = batchBundle(readings.map((reading) => reading.observation))
    const answer = await post(this.endpoint, this.agent, '/v1/observations', bundle, options.signal)
    if (answer.status < 200 || answer.status > 299) throw refusal(answer, 'delivery')

    let entries
    try {
      entries = readBatchResponse(answer.body, readings.length)
    } catch (cause) {
      throw new DeliveryError('ERR_ENCODING_INVALID', (cause as Error).message, {
        status: answer.status,
        cause,
      })
    }
    return entries.map((entry, index): ReadingOutcome => {
      const messageId = readings[index]!.messageId
      const outcome: ReadingOutcome = {
        messageId,
        result: resultOf(entry.status),
        status: entry.status,
      }
      if (outcome.result === 'rejected') outcome.reason = entry.reason ?? `HTTP ${entry.status}`
      return outcome
    })
  }

  /**
   * Renews the device certificate: makes a new key pair, sends its certificate request over
   * mutual TLS with the current certificate, and switches to the new key and certificate once
   * both are stored. Until then the old ones stay in use, so a failed renewal changes nothing.
   * A request on the wire over the old connections fails and is for the caller to resend.
   */
  async renew(): Promise<DeviceIdentity> {
    const { privateKeyPem, csrPem } = await makeKeyAndRequest(this.stored.serial)
    const answer = await post(this.endpoint, this.agent, '/v1/renew', { csr: csrPem })
    const issued = readIssued(answer, privateKeyPem, 'renewal')

    const previous = this.stored.generation
    const renewed: StoredIdentity = {
      ...this.stored,
      deviceId: issued.deviceId,
      notAfter: issued.notAfter,
      generation: previous + 1,
    }
    await storeGeneration(this.keyDirectory, renewed, privateKeyPem, issued.certificateChain)
    await unlink(join(this.keyDirectory, keyFile(previous))).catch(() => undefined)
    await unlink(join(this.keyDirectory, certificateFile(previous))).catch(() => undefined)

    this.stored = renewed
    this.validity = validityOf(issued.certificateChain)
    const old = this.agent
    this.agent = this.mutualAgent(privateKeyPem, issued.certificateChain)
    old.destroy()
    return this.identity
  }

  /** When the certificate in use became valid and when it expires. */
  certificateValidity(): CertificateValidity {
    return this.validity
  }

  /**
   * Downloads `path` from Ward's device endpoint over mutual TLS. Resolves with the status and
   * body of any answer; rejects with a `DeliveryError` when the connection fails, no answer
   * comes in time or the body would exceed `maxBytes` (the download stops there).
   */
  download(
    path: string,
    maxBytes: number,
    signal?: AbortSignal,
  ): Promise<{ status: number; body: Buffer }> {
    return download(this.endpoint, this.agent, path, maxBytes, signal)
  }

  /**
   * Posts `payload` as JSON to `path` over mutual TLS and resolves with the parsed answer;
   * a `DeliveryError` when Ward answers with an error or cannot be reached.
   */
  async postJson(path: string, payload: unknown): Promise<unknown> {
    const answer = await post(this.endpoint, this.agent, path, payload)
    if (answer.status < 200 || answer.status > 299) throw refusal(answer, path)
    return answer.body
  }

  /** Closes the connections this client keeps open. */
  close(): void {
    this.agent.destroy()
  }

  /**
   * One request to the device endpoint over mutual TLS: a GET, or a POST of `payload` as JSON.
   * Resolves with whatever Ward answered; throws a `DeliveryError` only when no answer came.
   */
  request(
    method: 'GET' | 'POST',
    path: string,
    payload?: unknown,
    signal?: AbortSignal,
  ): Promise<{ status: number; headers: IncomingHttpHeaders; body: unknown }> {
    return post(this.endpoint, this.agent, path, payload, signal, method)
  }

  /** The directory holding the device's key, certificate and identity. */
  get directory(): string {
    return this.keyDirectory
  }

  /** The certificate the device presents now. */
  async certificate(): Promise<X509Certificate> {
    const file = join(this.keyDirectory, certificateFile(this.stored.generation))
    return new X509Certificate(await readFile(file, 'utf8'))
  }

  /** Signs `data` (ECDSA P-256, SHA-256, DER) with the device's current private key. */
  async signWithDeviceKey(data: Uint8Array): Promise<Buffer> {
    const file = join(this.keyDirectory, keyFile(this.stored.generation))
    return sign('sha256', data, createPrivateKey(await readFile(file, 'utf8')))
  }

  /**
   * Erases the device's identity: every key and certificate generation, the trust anchors and
   * identity.json, each overwritten with zeros and flushed before it is unlinked, then closes
   * the connections. Resolves with the names of the files erased. Overwriting cannot reach
   * copies a flash translation layer or a copy-on-write file system keeps elsewhere; a device
   * that must rule those out keeps its key in a secure element and destroys it there.
   */
  async eraseIdentity(): Promise<string[]> {
    this.agent.destroy()
    const names = (await readdir(this.keyDirectory)).filter(
      (name) =>
        /^device-\d+\.(key|crt)(\.tmp)?$/.test(name) ||
        name === IDENTITY_FILE ||
        name === CA_FILE ||
        name === `${IDENTITY_FILE}.tmp`,
    )
    // The key first: from then on nothing can act as this device.
    names.sort((a, b) => Number(b.endsWith('.key')) - Number(a.endsWith('.key')))
    for (const name of names) await overwriteAndUnlink(join(this.keyDirectory, name))
    return names
  }

  private mutualAgent(privateKeyPem: string, certificateChain: string): Agent {
    return new Agent({
      keepAlive: true,
      maxSockets: 4,
      ca: this.caPem,
      key: privateKeyPem,
      cert: certificateChain,
      ...tlsFloor(this.minTlsVersion),
    })
  }
}

/**
 * The delay a `Retry-After` header asks for, in milliseconds: a number of seconds, or an HTTP
 * date measured from `now`. Undefined when the header is missing or unreadable; never negative.
 */
export function parseRetryAfter(header: string | undefined, now = Date.now()): number | undefined {
  if (header === undefined) return undefined
  const text = header.trim()
  if (/^\d+$/.test(text)) return Number(text) * 1000
  // HTTP dates start with the day's name; this keeps Date.parse from reading "-5" as a year.
  if (!/^[A-Za-z]{3}/.test(text)) return undefined
  const date = Date.parse(text)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

interface Issued {
  deviceId: string
  certificateChain: string
  notAfter: string
}

function resultOf(status: number): ReadingOutcome['result'] {
  if (status === 201) return 'accepted'
  if (status === 200) return 'duplicate'
  // A reading refused for itself is refused again if resent; 408 and 429 are about timing.
  if (status >= 400 && status <= 499 && status !== 408 && status !== 429) return 'rejected'
  return 'deferred'
}

async function makeKeyAndRequest(
  serial: string,
): Promise<{ privateKeyPem: string; csrPem: string; csrDer: Buffer }> {
  const keys = await webCrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    { name: `CN=${serial}`, keys, signingAlgorithm: KEY_ALGORITHM },
    webCrypto,
  )
  const pkcs8 = await webCrypto.subtle.exportKey('pkcs8', keys.privateKey)
  return {
    privateKeyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'),
    csrPem: csr.toString('pem'),
    csrDer: Buffer.from(csr.rawData),
  }
}

function readIssued(answer: Answer, privateKeyPem: string, step: string): Issued {
  if (answer.status !== 201 && answer.status !== 200) throw refusal(answer, step)
  const body = answer.body
  if (
    !isRecord(body) ||
    typeof body['deviceId'] !== 'string' ||
    typeof body['certificateChain'] !== 'string' ||
    typeof body['notAfter'] !== 'string'
  ) {
    throw new DeliveryError('ERR_ENCODING_INVALID', `the ${step} answer lacks a field`, {
      status: answer.status,
    })
  }

  let matches: boolean
  try {
    // The first certificate of the chain is the device's own.
    matches = new X509Certificate(body['certificateChain']).checkPrivateKey(
      createPrivateKey(privateKeyPem),
    )
  } catch (cause) {
    throw new WardError('ERR_KEY_INVALID', `the ${step} answer holds no readable certificate`, {
      cause,
    })
  }
  if (!matches) {
    throw new WardError('ERR_KEY_INVALID', `the certificate from ${step} is not for this key`)
  }
  return {
    deviceId: body['deviceId'],
    certificateChain: body['certificateChain'],
    notAfter: body['notAfter'],
  }
}

function refusal(answer: Answer, step: string): DeliveryError {
  const problem = isRecord(answer.body) ? answer.body : {}
  const problemCode = typeof problem['code'] === 'string' ? problem['code'] : undefined
  const detail =
    typeof problem['detail'] === 'string' ? problem['detail'] : outcomeText(answer.body)
  const retryAfter = parseRetryAfter(headerText(answer.headers['retry-after']))
  const facts: { status: number; retryAfterMs?: number; problemCode?: string } = {
    status: answer.status,
  }
  if (retryAfter !== undefined) facts.retryAfterMs = retryAfter
  if (problemCode !== undefined) facts.problemCode = problemCode
  const message = `Ward answered the ${step} with ${answer.status}${
    problemCode === undefined ? '' : ` ${problemCode}`
  }${detail === undefined ? '' : `: ${detail}`}`
  return new DeliveryError(codeForStatus(answer.status), message, facts)
}

function codeForStatus(status: number): WardErrorCode {
  if (status === 429) return 'ERR_RATE_LIMITED'
  if (status === 413) return 'ERR_PAYLOAD_TOO_LARGE'
  if (status === 401) return 'ERR_UNAUTHENTICATED'
  if (status === 403) return 'ERR_ACCESS_DENIED'
  if (status === 404) return 'ERR_NOT_FOUND'
  if (status >= 400 && status <= 499) return 'ERR_INPUT_INVALID'
  return 'ERR_STORE_UNAVAILABLE'
}

function post(
  endpoint: Endpoint,
  agent: Agent,
  path: string,
  payload: unknown,
  signal?: AbortSignal,
  method: 'GET' | 'POST' = 'POST',
): Promise<Answer> {
  const body = method === 'GET' ? Buffer.alloc(0) : Buffer.from(JSON.stringify(payload), 'utf8')
  const base = endpoint.url.pathname.replace(/\/+$/, '')

  return new Promise<Answer>((resolve, reject) => {
    const fail = (cause: unknown) => {
      const reason = (cause as NodeJS.ErrnoException).code ?? (cause as Error).message
      // Ward refuses a certificate it does not accept at the handshake, most often by closing
      // the connection: from here that looks like an outage, so the message says both.
      const refusal =
        reason === 'ECONNRESET' || /ALERT/.test(reason)
          ? ", or it refused this device's certificate at the handshake (unknown, expired, " +
            "revoked or suspended); Ward's service log says which"
          : ''
      reject(
        new DeliveryError(
          'ERR_STORE_UNAVAILABLE',
          `Ward's device endpoint is unreachable (${reason})${refusal}`,
          { cause },
        ),
      )
    }
    const outgoing = request(
      {
        protocol: 'https:',
        hostname: endpoint.url.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: endpoint.url.port === '' ? 443 : Number(endpoint.url.port),
        path: `${base}${path}`,
        method,
        agent,
        servername: endpoint.serverName,
        // The server name picks the organization; Ward's certificate names Ward itself, the
        // part after the organization.
        checkServerIdentity: (_host: string, certificate: PeerCertificate) =>
          checkServerIdentity(wardHostName(endpoint.serverName), certificate),
        signal,
        headers: {
          ...(method === 'GET' ? {} : { 'content-type': 'application/fhir+json' }),
          accept: 'application/fhir+json, application/json, application/problem+json',
          'content-length': body.length,
        },
      },
      (incoming) => {
        const chunks: Buffer[] = []
        let received = 0
        incoming.on('data', (chunk: Buffer) => {
          received += chunk.length
          if (received > ANSWER_LIMIT_BYTES) {
            outgoing.destroy(new Error('answer larger than the device accepts'))
            return
          }
          chunks.push(chunk)
        })
        incoming.on('error', fail)
        incoming.on('end', () => {
          clearTimeout(timer)
          const text = Buffer.concat(chunks).toString('utf8')
          let parsed: unknown = undefined
          try {
            parsed = text === '' ? undefined : (JSON.parse(text) as unknown)
          } catch {
            parsed = undefined
          }
          resolve({ status: incoming.statusCode ?? 0, headers: incoming.headers, body: parsed })
        })
      },
    )
    const timer = setTimeout(
      () => outgoing.destroy(new Error(`no answer within ${endpoint.timeoutMs} ms`)),
      endpoint.timeoutMs,
    )
    outgoing.on('error', (error) => {
      clearTimeout(timer)
      fail(error)
    })
    outgoing.end(body)
  })
}

function download(
  endpoint: Endpoint,
  agent: Agent,
  path: string,
  maxBytes: number,
  signal?: AbortSignal,
): Promise<{ status: number; body: Buffer }> {
  const base = endpoint.url.pathname.replace(/\/+$/, '')
  return new Promise((resolve, reject) => {
    const fail = (cause: unknown) => {
      const reason = (cause as NodeJS.ErrnoException).code ?? (cause as Error).message
      reject(
        new DeliveryError('ERR_STORE_UNAVAILABLE', `the download of ${path} failed (${reason})`, {
          cause,
        }),
      )
    }
    const outgoing = request(
      {
        protocol: 'https:',
        hostname: endpoint.url.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: endpoint.url.port === '' ? 443 : Number(endpoint.url.port),
        path: `${base}${path}`,
        method: 'GET',
        agent,
        servername: endpoint.serverName,
        checkServerIdentity: (_host: string, certificate: PeerCertificate) =>
          checkServerIdentity(wardHostName(endpoint.serverName), certificate),
        signal,
      },
      (incoming) => {
        const chunks: Buffer[] = []
        let received = 0
        incoming.on('data', (chunk: Buffer) => {
          received += chunk.length
          if (received > maxBytes) {
            clearTimeout(timer)
            reject(
              new DeliveryError(
                'ERR_PAYLOAD_TOO_LARGE',
                `${path} is larger than ${maxBytes} bytes`,
                {},
              ),
            )
            incoming.destroy()
            outgoing.destroy()
            return
          }
          chunks.push(chunk)
        })
        incoming.on('error', fail)
        incoming.on('end', () => {
          clearTimeout(timer)
          resolve({ status: incoming.statusCode ?? 0, body: Buffer.concat(chunks) })
        })
      },
    )
    const timer = setTimeout(
      () => outgoing.destroy(new Error(`no answer within ${endpoint.timeoutMs} ms`)),
      endpoint.timeoutMs,
    )
    outgoing.on('error', (error) => {
      clearTimeout(timer)
      fail(error)
    })
    outgoing.end()
  })
}

function checkEnrollment(options: EnrollOptions): Endpoint {
  if (!SERIAL_PATTERN.test(options.serial)) {
    throw new WardError('ERR_INPUT_INVALID', 'the serial must be 1-128 letters, digits or ._:-', {
      details: { field: 'serial' },
    })
  }
  if ((options.token === undefined) === (options.factory === undefined)) {
    throw new WardError('ERR_INPUT_INVALID', 'give either a token or a factory identity', {
      details: { field: 'token' },
    })
  }
  return endpointOf(options.url, options.serverName, options.timeoutMs)
}

function endpointOf(url: string, serverName: string, timeoutMs: number | undefined): Endpoint {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch (cause) {
    throw new WardError('ERR_INPUT_INVALID', 'the device endpoint URL is not a URL', {
      cause,
      details: { field: 'url' },
    })
  }
  if (parsed.protocol !== 'https:') {
    throw new WardError('ERR_INPUT_INVALID', 'the device endpoint URL must be https', {
      details: { field: 'url' },
    })
  }
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/.test(serverName)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      'the server name must be <organization slug>.<Ward host name>, in lowercase',
      { details: { field: 'serverName' } },
    )
  }
  return { url: parsed, serverName, timeoutMs: timeoutMs ?? DEFAULT_TIMEOUT_MS }
}

function tlsFloor(minimum: TlsMinimum | undefined): { minVersion: TlsMinimum; ciphers: string } {
  return { minVersion: minimum ?? 'TLSv1.3', ciphers: CIPHERS }
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

function parseIdentity(value: unknown): StoredIdentity {
  if (
    !isRecord(value) ||
    typeof value['deviceId'] !== 'string' ||
    typeof value['serial'] !== 'string' ||
    typeof value['url'] !== 'string' ||
    typeof value['serverName'] !== 'string' ||
    typeof value['notAfter'] !== 'string' ||
    !Number.isSafeInteger(value['generation'])
  ) {
    throw new Error('identity.json lacks a field')
  }
  return {
    deviceId: value['deviceId'],
    serial: value['serial'],
    url: value['url'],
    serverName: value['serverName'],
    notAfter: value['notAfter'],
    generation: value['generation'] as number,
  }
}

// Key and chain go to files named for their generation, and only then does identity.json
// point at them: a crash at any moment leaves one complete, matching pair in use.
async function storeGeneration(
  directory: string,
  identity: StoredIdentity,
  privateKeyPem: string,
  certificateChain: string,
): Promise<void> {
  await writeDurably(join(directory, keyFile(identity.generation)), privateKeyPem, 0o600)
  await writeDurably(join(directory, certificateFile(identity.generation)), certificateChain, 0o644)
  await writeDurably(
    join(directory, IDENTITY_FILE),
    `${JSON.stringify(identity, null, 2)}\n`,
    0o600,
  )
}

async function writeDurably(path: string, text: string, mode: number): Promise<void> {
  const temporary = `${path}.tmp`
  await unlink(temporary).catch(() => undefined)
  const handle = await open(temporary, 'wx', mode)
  try {
    await handle.writeFile(text, 'utf8')
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(temporary, path)
  const directory = await open(join(path, '..'), 'r')
  try {
    await directory.sync()
  } finally {
    await directory.close()
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}

function keyFile(generation: number): string {
  return `device-${generation}.key`
}

function certificateFile(generation: number): string {
  return `device-${generation}.crt`
}

/** Overwrites a file with zeros, flushes it, and unlinks it; a file already gone is fine. */
export async function overwriteAndUnlink(path: string): Promise<void> {
  let size: number
  try {
    size = (await stat(path)).size
  } catch {
    return
  }
  const handle = await open(path, 'r+')
  try {
    const zeros = Buffer.alloc(Math.min(size, 1024 * 1024))
    for (let offset = 0; offset < size; offset += zeros.length) {
      await handle.write(zeros, 0, Math.min(zeros.length, size - offset), offset)
    }
    await handle.sync()
  } finally {
    await handle.close()
  }
  await unlink(path)
}
