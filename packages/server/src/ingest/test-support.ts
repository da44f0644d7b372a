import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { request, type Agent } from 'node:https'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { connect } from 'node:tls'

import {
  freshDatabase,
  temporaryDirectory,
  testConfig,
  type TestDatabase,
} from '../../test/support.js'
import type { WardConfig } from '../config/index.js'
import { systemContext } from '../context.js'
import { standardDeviceModels } from '../devices/index.js'
import { serveWard, type RunningWard } from '../http/index.js'
import { makeDeviceCsr } from '../identity/test-support.js'
import { createLogger } from '../logging/index.js'
import type { Patient } from '../records/index.js'
import { initializeWard, type Ward } from '../ward.js'

// Used only by the ingest domain's tests: a served Ward with its service log captured, an
// organization with the standard device models and a fictitious patient, devices enrolled over
// HTTPS with keys made by openssl, and the HTTPS, curl and openssl clients that talk to it.

/** A Ward serving on free ports of 127.0.0.1, its service log kept in `logLines`. */
export interface TestWard {
  readonly config: WardConfig
  readonly running: RunningWard
  readonly ward: Ward
  readonly database: TestDatabase
  /** Scratch directory for certificates, keys and request bodies. */
  readonly directory: string
  /** The API certificate: what devices and the clients here trust Ward's server by. */
  readonly serverCaPath: string
  readonly serverCaPem: string
  readonly logLines: string[]
  close(): Promise<void>
}

/** A Ward on `dialect`, initialized and served; `env` adds `WARD_*` settings. */
export async function startTestWard(
  dialect: 'sqlite' | 'postgres',
  env: Record<string, string> = {},
): Promise<TestWard> {
  const scratch = temporaryDirectory()
  const database = await freshDatabase(dialect, scratch.path)
  const config = testConfig(join(scratch.path, 'home'), database.url, {
    WARD_HTTP_HOST: '127.0.0.1',
    WARD_DEVICE_HOST: '127.0.0.1',
    ...env,
  })
  const logLines: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
      done()
    },
  })
  let running: RunningWard
  try {
    await initializeWard(config, systemContext('test'))
    running = await serveWard(config, createLogger('info', sink))
  } catch (error) {
    await database.drop()
    scratch.remove()
    throw error
  }
  return {
    config,
    running,
    ward: running.ward,
    database,
    directory: scratch.path,
    serverCaPath: config.http.certFile,
    serverCaPem: readFileSync(config.http.certFile, 'utf8'),
    logLines,
    close: async () => {
      await running.close()
      await database.drop()
      scratch.remove()
    },
  }
}

/** The JSON service log lines whose event name (`msg`) is `event`. */
export function logged(testWard: TestWard, event: string): Record<string, unknown>[] {
  return testWard.logLines
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line['msg'] === event)
}

/** An organization with the standard device models and one fictitious patient. */
export interface TestOrganization {
  readonly id: string
  readonly slug: string
  /** The TLS server name its devices use. */
  readonly serverName: string
  readonly patient: Patient
}

/** Creates organization `slug` as a test operator would, through Ward's own operations. */
export async function createTestOrganization(ward: Ward, slug: string): Promise<TestOrganization> {
  const context = systemContext('test')
  const organization = await ward.createOrganization(context, {
    slug,
    name: `${slug} test clinic`,
  })
  for (const model of standardDeviceModels) {
    await ward.fleet.createDeviceModel(context, slug, model)
  }
  const patient = await ward.fleet.createPatient(context, slug, {
    name: { family: 'Testpatient', given: ['Fictional'] },
    birthDate: '1970-01-01',
  })
  return {
    id: organization.id,
    slug,
    serverName: `${slug}.${ward.config.hostName}`,
    patient,
  }
}

/** A device enrolled with Ward, its key and certificate chain in files for curl and openssl. */
export interface TestDevice {
  readonly serial: string
  readonly deviceId: string
  readonly keyPem: string
  readonly chainPem: string
  readonly keyPath: string
  readonly chainPath: string
}

/**
 * Registers a device of `model` (default: a pulse oximeter), assigns it to the organization's
 * patient (or to `patient`, or to nobody with `patient: null`) and issues its enrollment token.
 */
export async function registerTestDevice(
  ward: Ward,
  organization: TestOrganization,
  options: { model?: string; patient?: Patient | null } = {},
): Promise<{ serial: string; token: string }> {
  const context = systemContext('test')
  const serial = `SN-${randomUUID().slice(0, 8)}`
  await ward.fleet.createDevice(context, organization.slug, {
    serial,
    model: options.model ?? 'Pulse oximeter',
  })
  const patient = options.patient === undefined ? organization.patient : options.patient
  if (patient !== null) {
    await ward.fleet.assignDevice(context, organization.slug, serial, patient.pseudonym)
  }
  const { token } = await ward.fleet.issueEnrollmentToken(context, organization.slug, serial)
  return { serial, token }
}

/**
 * Registers a device as {@link registerTestDevice} does and enrolls it over HTTPS with a key
 * and CSR made by openssl, as a device would.
 */
export async function enrollTestDevice(
  testWard: TestWard,
  organization: TestOrganization,
  options: { model?: string; patient?: Patient | null } = {},
): Promise<TestDevice> {
  const { serial, token } = await registerTestDevice(testWard.ward, organization, options)
  const material = await makeDeviceCsr(testWard.directory, serial)

  const answer = await httpsRequest(testWard.running.url, '/v1/enroll', {
    serverName: organization.serverName,
    ca: testWard.serverCaPem,
    body: { serial, csr: material.csrPem, token },
  })
  if (answer.status !== 201) throw new Error(`enrollment answered ${answer.status}: ${answer.body}`)
  const enrolled = answer.json() as { deviceId: string; certificateChain: string }
  const chainPath = join(testWard.directory, `${serial}.chain.pem`)
  writeFileSync(chainPath, enrolled.certificateChain)
  return {
    serial,
    deviceId: enrolled.deviceId,
    keyPem: material.keyPem,
    chainPem: enrolled.certificateChain,
    keyPath: material.keyPath,
    chainPath,
  }
}

/** An HTTPS answer, its body as text. */
export interface Answer {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly body: string
  json(): unknown
}

/**
 * One HTTPS request to `base` + `path` on 127.0.0.1 with TLS server name `serverName`: a POST
 * of `body` (JSON, unless a string) when there is one, a GET otherwise. `cert` and `key` make
 * it mutual TLS; `agent` reuses connections.
 */
export function httpsRequest(
  base: string,
  path: string,
  options: {
    serverName: string
    ca: string
    cert?: string
    key?: string
    body?: unknown
    contentType?: string
    agent?: Agent
  },
): Promise<Answer> {
  const url = new URL(path, base)
  const payload =
    options.body === undefined
      ? undefined
      : typeof options.body === 'string'
        ? options.body
        : JSON.stringify(options.body)
  return new Promise((resolve, reject) => {
    const outgoing = request(
      url,
      {
        method: payload === undefined ? 'GET' : 'POST',
        servername: options.serverName,
        ca: options.ca,
        ...(options.cert === undefined ? {} : { cert: options.cert }),
        ...(options.key === undefined ? {} : { key: options.key }),
        ...(options.agent === undefined ? {} : { agent: options.agent }),
        headers:
          payload === undefined
            ? {}
            : {
                'content-type': options.contentType ?? 'application/fhir+json',
                'content-length': Buffer.byteLength(payload),
              },
      },
      (incoming) => {
        const chunks: Buffer[] = []
        incoming.on('data', (chunk: Buffer) => chunks.push(chunk))
        incoming.on('error', reject)
        incoming.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8')
          resolve({
            status: incoming.statusCode ?? 0,
            headers: incoming.headers,
            body,
            json: () => JSON.parse(body) as unknown,
          })
        })
      },
    )
    outgoing.on('error', reject)
    outgoing.end(payload)
  })
}

/** Posts `body` to the device endpoint as `device`, over a connection of its own. */
export function postAsDevice(
  testWard: TestWard,
  organization: TestOrganization,
  device: TestDevice,
  body: unknown,
  path = '/v1/observations',
): Promise<Answer> {
  return httpsRequest(testWard.running.devices.url, path, {
    serverName: organization.serverName,
    ca: testWard.serverCaPem,
    cert: device.chainPem,
    key: device.keyPem,
    body,
  })
}

/** The statuses of a batch-response's entries, such as `201 Created`, in order. */
export function entryStatuses(answer: Answer): string[] {
  const bundle = answer.json() as { entry: { response: { status: string } }[] }
  return bundle.entry.map((entry) => entry.response.status)
}

/** What a command printed and how it exited. */
export interface CommandResult {
  readonly exitCode: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `command` with `args`, writing `input` (or nothing) to its standard input. */
export function run(command: string, args: readonly string[], input = ''): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    const stdout: Buffer[] = []
    const stderr: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk))
    child.on('error', reject)
    child.on('close', (exitCode) =>
      resolve({
        exitCode,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      }),
    )
    child.stdin.end(input)
  })
}

/** How a curl request ended: the HTTP status (0 when none came) and the body. */
export interface CurlResult extends CommandResult {
  readonly status: number
  readonly body: string
}

/**
 * Runs curl against the device endpoint under the organization's server name (resolved to
 * 127.0.0.1), trusting Ward's API certificate, posting `body` from a file when given. `extra`
 * adds arguments, such as `--cert` and `--key`.
 */
export async function curlDevice(
  testWard: TestWard,
  serverName: string,
  path: string,
  options: { body?: unknown; extra?: readonly string[] } = {},
): Promise<CurlResult> {
  const port = testWard.running.devices.port
  const args = [
    '--silent',
    '--show-error',
    '--max-time',
    '10',
    '--cacert',
    testWard.serverCaPath,
    '--resolve',
    `${serverName}:${port}:127.0.0.1`,
    '--write-out',
    '\n%{http_code}',
    ...(options.extra ?? []),
  ]
  if (options.body !== undefined) {
    const bodyPath = join(testWard.directory, `${randomUUID()}.json`)
    writeFileSync(bodyPath, JSON.stringify(options.body))
    args.push('--header', 'content-type: application/fhir+json', '--data-binary', `@${bodyPath}`)
  }
  args.push(`https://${serverName}:${port}${path}`)
  const result = await run('curl', args)
  const cut = result.stdout.lastIndexOf('\n')
  return {
    ...result,
    status: Number(result.stdout.slice(cut + 1)) || 0,
    body: result.stdout.slice(0, Math.max(0, cut)),
  }
}

/** curl's arguments for presenting `device`'s certificate and key. */
export function asDevice(device: TestDevice): string[] {
  return ['--cert', device.chainPath, '--key', device.keyPath]
}

/** A pulse oximeter's SpO2 reading taken now, with message id `messageId` and no subject. */
export function spo2Reading(messageId: string, percent = 97): Record<string, unknown> {
  return {
    resourceType: 'Observation',
    status: 'final',
    identifier: [{ system: 'urn:ward:device-message-id', value: messageId }],
    code: { coding: [{ system: 'http://loinc.org', code: '59408-5' }] },
    effectiveDateTime: new Date().toISOString(),
    valueQuantity: {
      value: percent,
      unit: '%',
      system: 'http://unitsofmeasure.org',
      code: '%',
    },
  }
}

/** A batch Bundle of `readings`. */
export function batchOf(readings: readonly unknown[]): Record<string, unknown> {
  return {
    resourceType: 'Bundle',
    type: 'batch',
    entry: readings.map((resource) => ({
      resource,
      request: { method: 'POST', url: 'Observation' },
    })),
  }
}

/**
 * How long a test waits for something the endpoint does on its own time: a refusal logged,
 * fresh CRLs in place, a drain finished. On an idle machine that takes milliseconds to a couple
 * of seconds; a shared, loaded machine can stretch it many times over, and waiting longer
 * costs only a failing test its time, so the limit proves nothing and is generous.
 */
export const patienceMs = 30_000

/** Resolves once `check` holds, trying every 20 ms; rejects after `timeoutMs`. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** One kept-alive mutual-TLS connection to the device endpoint, speaking HTTP/1.1 by hand. */
export interface DeviceConnection {
  /** Posts `body` on this connection and resolves with the answer; `head` is its header block. */
  send(body: unknown, path?: string): Promise<{ status: number; head: string; body: string }>
  /** Writes `bytes` as they are, to send a request in pieces or not at all. */
  write(bytes: string): void
  /** Resolves with the time (`Date.now()`) the connection closed. */
  readonly closed: Promise<number>
  destroy(): void
}

/** Opens a connection to the device endpoint as `device`, kept alive between requests. */
export async function openDeviceConnection(
  testWard: TestWard,
  organization: TestOrganization,
  device: { chainPem: string; keyPem: string },
): Promise<DeviceConnection> {
  const socket = connect({
    host: '127.0.0.1',
    port: testWard.running.devices.port,
    servername: organization.serverName,
    ca: testWard.serverCaPem,
    cert: device.chainPem,
    key: device.keyPem,
  })
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())))
  socket.on('error', () => undefined)
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve)
    socket.once('error', reject)
  })

  let received = Buffer.alloc(0)
  let waiting: (() => void) | undefined
  let failWaiting: (() => void) | undefined
  socket.on('data', (chunk: Buffer) => {
    received = Buffer.concat([received, chunk])
    waiting?.()
  })
  socket.once('close', () => failWaiting?.())
  const answer = () =>
    new Promise<{ status: number; head: string; body: string }>((resolve, reject) => {
      failWaiting = () => reject(new Error('the connection closed before an answer'))
      const check = () => {
        const end = received.indexOf('\r\n\r\n')
        if (end < 0) return
        const head = received.subarray(0, end).toString('latin1')
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0)
        if (received.length < end + 4 + length) return
        const body = received.subarray(end + 4, end + 4 + length).toString('utf8')
        received = received.subarray(end + 4 + length)
        waiting = undefined
        resolve({ status: Number(head.split(' ')[1]), head, body })
      }
      waiting = check
      if (socket.destroyed) failWaiting()
      check()
    })

  return {
    send: (body, path = '/v1/observations') => {
      const payload = Buffer.from(JSON.stringify(body))
      socket.write(
        `POST ${path} HTTP/1.1\r\nhost: ${organization.serverName}\r\n` +
          `content-type: application/fhir+json\r\ncontent-length: ${payload.length}\r\n\r\n`,
      )
      socket.write(payload)
      return answer()
    },
    write: (bytes) => {
      socket.write(bytes)
    },
    closed,
    destroy: () => socket.destroy(),
  }
}
