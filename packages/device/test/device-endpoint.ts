// A stand-in for Ward's device endpoint, faithful to the device protocol, for the agent's
// tests: real TLS 1.3 with per-organization server names, real certificates, mutual TLS for
// everything but enrollment, batch-responses with 201/200/422 per reading, and switches to
// answer 429/503 or to die mid-request.
import { randomUUID, verify, webcrypto, X509Certificate } from 'node:crypto'
import { createServer } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Server } from 'node:https'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { createSecureContext } from 'node:tls'

import 'reflect-metadata'
import * as x509 from '@peculiar/x509'

import { messageIdOf } from '../src/fhir.js'
import type { Observation } from '../src/fhir.js'

/** The organization's TLS server name the tests use. */
export const SERVER_NAME = 'acme.ward.test'

const crypto = webcrypto as unknown as NonNullable<
  Parameters<typeof x509.X509CertificateGenerator.create>[1]
>
const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }

type CryptoKeyPair = webcrypto.CryptoKeyPair
const DAY = 24 * 3600 * 1000

/** A certificate with its PEM and its key pair. */
export interface Issuer {
  certificatePem: string
  privateKeyPem: string
  keys: CryptoKeyPair
  name: string
}

/** Everything the test endpoint and its devices need to trust each other. */
export interface TestPki {
  /** Trust anchor the devices check the endpoint against. */
  serverCa: Issuer
  /** The endpoint's certificate for `serverName`. */
  server: Issuer
  /** The organization's issuing CA for device certificates. */
  deviceCa: Issuer
  /** A manufacturer CA and one factory identity under it. */
  manufacturerCa: Issuer
  factory: Issuer
}

/** Makes a fresh PKI: every key is new, every certificate P-256 and valid for a day. */
export async function makePki(serverName = SERVER_NAME): Promise<TestPki> {
  const serverCa = await selfSignedCa('CN=Test TLS Root')
  const deviceCa = await selfSignedCa('CN=Acme Device Issuing CA')
  const manufacturerCa = await selfSignedCa('CN=Oximetry Inc Manufacturer CA')
  const server = await leaf(serverCa, `CN=${serverName}`, [
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    // Devices check Ward's certificate against Ward's host name, the part after the
    // organization in the server name.
    new x509.SubjectAlternativeNameExtension([
      { type: 'dns', value: serverName },
      { type: 'dns', value: serverName.slice(serverName.indexOf('.') + 1) },
    ]),
  ])
  const factory = await leaf(manufacturerCa, 'CN=PO-FACTORY-1', [
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
  ])
  return { serverCa, server, deviceCa, manufacturerCa, factory }
}

/** Makes a certificate for `subject` under `issuer`, with a fresh key pair. */
export async function leaf(
  issuer: Issuer,
  subject: string,
  extensions: x509.Extension[],
): Promise<Issuer> {
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])
  const certificate = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject,
      issuer: issuer.name,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + DAY),
      signingAlgorithm: ALGORITHM,
      publicKey: keys.publicKey,
      signingKey: issuer.keys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        ...extensions,
      ],
    },
    crypto,
  )
  return {
    certificatePem: certificate.toString('pem'),
    privateKeyPem: await privateKeyPem(keys),
    keys,
    name: subject,
  }
}

async function selfSignedCa(name: string): Promise<Issuer> {
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerial(),
      name,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + DAY),
      signingAlgorithm: ALGORITHM,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
          true,
        ),
      ],
    },
    crypto,
  )
  return {
    certificatePem: certificate.toString('pem'),
    privateKeyPem: await privateKeyPem(keys),
    keys,
    name,
  }
}

async function privateKeyPem(keys: CryptoKeyPair): Promise<string> {
  return x509.PemConverter.encode(
    await crypto.subtle.exportKey('pkcs8', keys.privateKey),
    'PRIVATE KEY',
  )
}

function randomSerial(): string {
  return `01${Buffer.from(crypto.getRandomValues(new Uint8Array(15))).toString('hex')}`
}

/** What the endpoint does with one request to `/v1/observations`, before reading it. */
export type Interference =
  | { kind: 'answer' }
  | { kind: 'refuse'; status: number; retryAfter?: string }
  | { kind: 'crash'; afterStoring: boolean }

/** One request to `/v1/observations` as the endpoint saw it. */
export interface ObservationsRequest {
  number: number
  at: number
  deviceId: string
  messageIds: string[]
  outcome: 'answered' | 'refused' | 'crashed'
  /** The TLS version the connection speaks. */
  protocol: string | null
}

/** How the endpoint behaves. */
export interface EndpointOptions {
  pki: TestPki
  serverName?: string
  /** One-time enrollment tokens, each bound to one serial. */
  tokens?: Record<string, string>
  /** Patient every device is assigned to. */
  patient?: string
  /** Most entries in one batch. Default 1000. */
  maxEntries?: number
  /** Largest body accepted. Default 1 MiB. */
  bodyLimitBytes?: number
  /** Decides, per request to `/v1/observations`, whether to answer, refuse or die. */
  interfere?: (request: { number: number; messageIds: string[] }) => Interference
  /** A reason to refuse one reading with 422, or undefined to store it. */
  validate?: (observation: Observation) => string | undefined
  /** Highest TLS version the endpoint speaks. Default TLSv1.3. */
  maxVersion?: 'TLSv1.2' | 'TLSv1.3'
}

/** An in-process device endpoint on 127.0.0.1 that stores readings in memory. */
export class TestDeviceEndpoint {
  /** Readings stored, by `<device id>/<message id>`. */
  readonly stored = new Map<string, Observation>()
  /** How many times each `<device id>/<message id>` was stored (answered 201). */
  readonly created = new Map<string, number>()
  readonly requests: ObservationsRequest[] = []
  /** Every certificate request received, PEM. */
  readonly certificateRequests: string[] = []
  /** Every enrollment request body received, as text. */
  readonly enrollmentBodies: string[] = []
  port = 0

  private server: Server | undefined
  private readonly sockets = new Set<Socket>()
  private readonly tokens: Map<string, string>
  private readonly serverName: string

  private constructor(private readonly options: EndpointOptions) {
    this.tokens = new Map(Object.entries(options.tokens ?? {}))
    this.serverName = options.serverName ?? SERVER_NAME
  }

  /** Starts an endpoint on a free port of 127.0.0.1. */
  static async start(options: EndpointOptions): Promise<TestDeviceEndpoint> {
    const endpoint = new TestDeviceEndpoint(options)
    await endpoint.listen(0)
    return endpoint
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`
  }

  /** Adds a one-time enrollment token for `serial`. */
  addToken(token: string, serial: string): void {
    this.tokens.set(token, serial)
  }

  /** Dies at once: stops listening and cuts every connection, answering nothing. */
  async crash(): Promise<void> {
    const server = this.server
    this.server = undefined
    for (const socket of this.sockets) socket.destroy()
    this.sockets.clear()
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  /** Comes back on the same port after a crash, with everything it had stored. */
  async restart(): Promise<void> {
    await this.listen(this.port)
  }

  async close(): Promise<void> {
    await this.crash()
  }

  private async listen(port: number): Promise<void> {
    const context = createSecureContext({
      key: this.options.pki.server.privateKeyPem,
      cert: this.options.pki.server.certificatePem,
      ca: this.options.pki.deviceCa.certificatePem,
      minVersion: 'TLSv1.2',
      maxVersion: this.options.maxVersion ?? 'TLSv1.3',
    })
    const server = createServer(
      {
        // Only the organization's own name gets a certificate, as in Ward.
        SNICallback: (name, callback) => {
          if (name === this.serverName) callback(null, context)
          else callback(new Error(`no organization answers to ${name}`), undefined)
        },
        requestCert: true,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.2',
        maxVersion: this.options.maxVersion ?? 'TLSv1.3',
      },
      (request, response) => {
        this.handle(request, response).catch((error: unknown) => {
          if (!response.headersSent) problem(response, 500, 'ERR_INTERNAL', String(error))
        })
      },
    )
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket)
      socket.on('close', () => this.sockets.delete(socket))
    })
    server.on('tlsClientError', () => undefined)
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => resolve())
    })
    const address = server.address()
    if (address !== null && typeof address === 'object') this.port = address.port
    this.server = server
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const limit = this.options.bodyLimitBytes ?? 1024 * 1024
    const text = await readBody(request, limit)
    if (text === undefined) return problem(response, 413, 'ERR_PAYLOAD_TOO_LARGE', 'body too large')
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      return problem(response, 400, 'ERR_INPUT_INVALID', 'the body is not JSON')
    }

    if (request.method === 'POST' && request.url === '/v1/enroll')
      return this.enroll(body, text, response)

    const socket = request.socket as TLSSocket
    const deviceId = socket.authorized ? deviceIdOf(socket) : undefined
    if (deviceId === undefined) {
      return problem(response, 401, 'ERR_UNAUTHENTICATED', 'a device certificate is required')
    }
    if (request.method === 'POST' && request.url === '/v1/renew')
      return this.renew(body, deviceId, response)
    if (request.method === 'POST' && request.url === '/v1/observations') {
      return this.observations(body, deviceId, request, response)
    }
    return problem(response, 404, 'ERR_NOT_FOUND', 'no such route')
  }

  private async enroll(body: unknown, text: string, response: ServerResponse): Promise<void> {
    this.enrollmentBodies.push(text)
    const fields = record(body)
    const serial = fields['serial']
    const csr = fields['csr']
    if (typeof serial !== 'string' || typeof csr !== 'string') {
      return problem(response, 400, 'ERR_INPUT_INVALID', 'serial and csr are required')
    }
    this.certificateRequests.push(csr)
    const request = new x509.Pkcs10CertificateRequest(csr)
    if (!(await request.verify(crypto))) {
      return problem(response, 400, 'ERR_INPUT_INVALID', 'the CSR signature does not verify')
    }

    const token = fields['token']
    if (typeof token === 'string') {
      if (this.tokens.get(token) !== serial) {
        return problem(response, 401, 'ERR_UNAUTHENTICATED', 'the enrollment token is not valid')
      }
      this.tokens.delete(token)
    } else if (!this.factoryVouches(fields, Buffer.from(request.rawData))) {
      return problem(response, 401, 'ERR_UNAUTHENTICATED', 'the factory signature is not valid')
    }

    const issued = await this.issue(request, randomUUID())
    json(response, 201, issued)
  }

  private factoryVouches(fields: Record<string, unknown>, csrDer: Buffer): boolean {
    const chain = fields['factoryCertificate']
    const signature = fields['factorySignature']
    if (typeof chain !== 'string' || typeof signature !== 'string') return false
    const certificate = new X509Certificate(chain)
    const anchor = new X509Certificate(this.options.pki.manufacturerCa.certificatePem)
    if (!certificate.verify(anchor.publicKey)) return false
    return verify('sha256', csrDer, certificate.publicKey, Buffer.from(signature, 'base64'))
  }

  private async renew(body: unknown, deviceId: string, response: ServerResponse): Promise<void> {
    const csr = record(body)['csr']
    if (typeof csr !== 'string')
      return problem(response, 400, 'ERR_INPUT_INVALID', 'csr is required')
    this.certificateRequests.push(csr)
    const request = new x509.Pkcs10CertificateRequest(csr)
    if (!(await request.verify(crypto))) {
      return problem(response, 400, 'ERR_INPUT_INVALID', 'the CSR signature does not verify')
    }
    json(response, 201, await this.issue(request, deviceId))
  }

  private async issue(
    request: x509.Pkcs10CertificateRequest,
    deviceId: string,
  ): Promise<{ deviceId: string; certificateChain: string; notAfter: string }> {
    const deviceCa = this.options.pki.deviceCa
    const notAfter = new Date(Date.now() + DAY)
    const certificate = await x509.X509CertificateGenerator.create(
      {
        serialNumber: randomSerial(),
        subject: request.subject,
        issuer: deviceCa.name,
        notBefore: new Date(Date.now() - 60_000),
        notAfter,
        signingAlgorithm: ALGORITHM,
        publicKey: request.publicKey,
        signingKey: deviceCa.keys.privateKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
          new x509.SubjectAlternativeNameExtension([
            { type: 'url', value: `urn:ward:device:${deviceId}` },
          ]),
        ],
      },
      crypto,
    )
    return {
      deviceId,
      certificateChain: `${certificate.toString('pem')}\n${deviceCa.certificatePem}\n`,
      notAfter: notAfter.toISOString(),
    }
  }

  private observations(
    body: unknown,
    deviceId: string,
    request: IncomingMessage,
    response: ServerResponse,
  ): void {
    const bundle = record(body)
    if (
      bundle['resourceType'] !== 'Bundle' ||
      bundle['type'] !== 'batch' ||
      !Array.isArray(bundle['entry'])
    ) {
      return problem(response, 400, 'ERR_INPUT_INVALID', 'not a batch Bundle')
    }
    const entries = bundle['entry'] as unknown[]
    if (entries.length > (this.options.maxEntries ?? 1000)) {
      return problem(response, 422, 'ERR_INPUT_INVALID', 'more entries than allowed')
    }
    const resources = entries.map((entry) => record(entry)['resource'])
    const messageIds = resources.map((resource) =>
      isObservationLike(resource) ? (messageIdOf(resource) ?? '') : '',
    )

    const number = this.requests.length + 1
    const interference = this.options.interfere?.({ number, messageIds }) ?? { kind: 'answer' }
    const seen: ObservationsRequest = {
      number,
      at: Date.now(),
      deviceId,
      messageIds,
      outcome: 'answered',
      protocol: (request.socket as TLSSocket).getProtocol(),
    }
    this.requests.push(seen)

    if (interference.kind === 'refuse') {
      seen.outcome = 'refused'
      if (interference.retryAfter !== undefined)
        response.setHeader('retry-after', interference.retryAfter)
      const code = interference.status === 429 ? 'ERR_RATE_LIMITED' : 'ERR_STORE_UNAVAILABLE'
      return problem(response, interference.status, code, 'try again later')
    }
    if (interference.kind === 'crash' && !interference.afterStoring) {
      seen.outcome = 'crashed'
      request.socket.destroy()
      void this.crash()
      return
    }

    const answers = resources.map((resource) => this.store(deviceId, resource))
    if (interference.kind === 'crash') {
      seen.outcome = 'crashed'
      request.socket.destroy()
      void this.crash()
      return
    }
    json(response, 200, { resourceType: 'Bundle', type: 'batch-response', entry: answers })
  }

  private store(deviceId: string, resource: unknown): unknown {
    if (!isObservationLike(resource)) return refused('the entry is not an Observation')
    const messageId = messageIdOf(resource)
    if (messageId === undefined) return refused('the Observation has no device message id')
    const subject = record(resource['subject'])['reference']
    const patient = this.options.patient ?? 'Patient/p-1'
    if (resource['subject'] !== undefined && subject !== patient) {
      return refused('subject is not the patient the device is assigned to')
    }
    const reason = this.options.validate?.(resource)
    if (reason !== undefined) return refused(reason)

    const key = `${deviceId}/${messageId}`
    if (this.stored.has(key)) return { response: { status: '200 OK' } }
    this.stored.set(key, resource)
    this.created.set(key, (this.created.get(key) ?? 0) + 1)
    return { response: { status: '201 Created' } }
  }
}

function refused(text: string): unknown {
  return {
    response: {
      status: '422 Unprocessable Entity',
      outcome: {
        resourceType: 'OperationOutcome',
        issue: [{ severity: 'error', code: 'invalid', diagnostics: text }],
      },
    },
  }
}

function deviceIdOf(socket: TLSSocket): string | undefined {
  const names = socket.getPeerCertificate().subjectaltname ?? ''
  return /URI:urn:ward:device:([0-9a-f-]+)/.exec(names)?.[1]
}

function isObservationLike(value: unknown): value is Observation {
  return record(value)['resourceType'] === 'Observation'
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {}
}

function readBody(request: IncomingMessage, limit: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let tooLarge = false
    request.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) tooLarge = true
      else chunks.push(chunk)
    })
    request.on('end', () => resolve(tooLarge ? undefined : Buffer.concat(chunks).toString('utf8')))
    request.on('error', reject)
  })
}

function json(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/fhir+json' })
  response.end(JSON.stringify(body))
}

function problem(response: ServerResponse, status: number, code: string, detail: string): void {
  response.writeHead(status, { 'content-type': 'application/problem+json' })
  response.end(JSON.stringify({ type: 'about:blank', status, code, detail }))
}
