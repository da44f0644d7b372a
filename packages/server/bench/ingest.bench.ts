/**
 * Ingest benchmark on the embedded SQLite store: fifty devices, each with its own enrolled
 * certificate, send batches of readings over mutual TLS as fast as answers come back. The full
 * path (handshake trust per organization, device identification, model policy, sealing under
 * the patient's data key, idempotent insert, one audit event per batch) is measured beside a
 * bare route in the same run: the same clients and TLS, a server that parses the batch and
 * inserts the readings as they are, without checks, encryption or audit.
 *
 * `WARD_BENCH_SECONDS` sets each phase's length (default 20), `WARD_BENCH_BATCH` the readings per
 * request (default 100).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'

import SqliteDatabase from 'better-sqlite3'
import Fastify from 'fastify'

import { deviceMessageIdSystem } from '@ward/core'
import { DeviceClient, enroll, type QueuedReading } from '@ward/device'

import { standardDeviceModels } from '../src/devices/index.js'
import { serveWard } from '../src/http/index.js'
import { deviceTrust } from '../src/identity/index.js'
import { createLogger, initializeWard, loadConfig, systemContext } from '../src/index.js'

const seconds = Number(process.env['WARD_BENCH_SECONDS'] ?? 20)
const batch = Number(process.env['WARD_BENCH_BATCH'] ?? 100)
const deviceCount = 50
const directory = mkdtempSync(join(tmpdir(), 'ward-ingest-bench-'))

const spo2 = {
  resourceType: 'Observation' as const,
  status: 'final',
  code: {
    coding: [
      { system: 'urn:iso:std:iso:11073:10101', code: '150456' },
      { system: 'http://loinc.org', code: '2708-6' },
    ],
  },
  valueQuantity: { value: 97, unit: '%', system: 'http://unitsofmeasure.org', code: '%' },
}

let sequence = 0
function readings(count: number): QueuedReading[] {
  const now = new Date().toISOString()
  return Array.from({ length: count }, () => {
    const messageId = `bench-${process.pid}-${++sequence}`
    return {
      messageId,
      enqueuedAt: now,
      observation: {
        ...spo2,
        effectiveDateTime: now,
        identifier: [{ system: deviceMessageIdSystem, value: messageId }],
      },
    }
  })
}

/** Every device sends batch after batch for `seconds`; returns readings a second and latencies. */
async function load(clients: DeviceClient[]) {
  const latencies: number[] = []
  let stored = 0
  const end = performance.now() + seconds * 1000
  await Promise.all(
    clients.map(async (client) => {
      while (performance.now() < end) {
        const start = performance.now()
        const outcomes = await client.sendBatch(readings(batch))
        latencies.push(performance.now() - start)
        stored += outcomes.filter((outcome) => outcome.result === 'accepted').length
      }
    }),
  )
  latencies.sort((a, b) => a - b)
  const at = (share: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * share))] ?? 0
  return { perSecond: stored / seconds, p50: at(0.5), p99: at(0.99), requests: latencies.length }
}

const format = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

async function main() {
  const home = join(directory, 'home')
  const config = loadConfig({
    env: {
      WARD_HOME: home,
      WARD_HTTP_PORT: '0',
      WARD_DEVICE_PORT: '0',
      WARD_LOG_LEVEL: 'warn',
      WARD_HOST_NAME: 'ward.bench',
    },
  })
  const operator = { ...systemContext('bench'), actor: { type: 'operator' as const, id: 'bench' } }
  await initializeWard(config, operator)
  const running = await serveWard(config, createLogger('warn'))
  const { ward } = running
  console.log(
    `Ward ingest benchmark: ${deviceCount} devices, batches of ${batch}, ${seconds} s a phase, SQLite (WAL, synchronous=FULL), ` +
      `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`,
  )

  const organization = await ward.createOrganization(operator, {
    slug: 'bench',
    name: 'Bench Clinic',
  })
  const oximeter = standardDeviceModels[0]!
  const model = await ward.fleet.createDeviceModel(operator, 'bench', {
    ...oximeter,
    name: 'Bench oximeter',
    policy: { ...oximeter.policy, maxReadingsPerMinute: 60_000 },
  })
  const caPem = readFileSync(config.http.certFile, 'utf8')
  const clients: DeviceClient[] = []
  for (let i = 0; i < deviceCount; i += 1) {
    const serial = `BENCH-${String(i).padStart(3, '0')}`
    const patient = await ward.fleet.createPatient(operator, 'bench', {
      name: { family: `Benchpatient-${i}`, given: ['Fictitious'] },
      birthDate: '1960-01-01',
    })
    await ward.fleet.createDevice(operator, 'bench', { serial, model: model.id })
    await ward.fleet.assignDevice(operator, 'bench', serial, patient.pseudonym)
    const { token } = await ward.fleet.issueEnrollmentToken(operator, 'bench', serial)
    clients.push(
      await enroll({
        url: running.deviceUrl,
        enrollmentUrl: running.url,
        serverName: `bench.${config.hostName}`,
        caPem,
        serial,
        token,
        keyDirectory: join(directory, 'devices', serial),
      }),
    )
  }

  const full = await load(clients)

  // The bare route: the same TLS and client certificates, then parse and insert as is.
  const trust = await deviceTrust(ward.store.db, ward.keys, organization.id)
  const plain = new SqliteDatabase(join(directory, 'bare.db'))
  plain.pragma('journal_mode = WAL')
  plain.pragma('synchronous = FULL')
  plain.exec(
    'create table readings (device text not null, message_id text not null, body text not null, primary key (device, message_id))',
  )
  const insert = plain.prepare(
    'insert or ignore into readings (device, message_id, body) values (?, ?, ?)',
  )
  const insertAll = plain.transaction(
    (device: string, entries: { resource: Record<string, unknown> }[]) => {
      for (const entry of entries) {
        const identifier = (entry.resource['identifier'] as { value: string }[])[0]!.value
        insert.run(device, identifier, JSON.stringify(entry.resource))
      }
    },
  )
  const bare = Fastify({
    https: {
      key: readFileSync(config.http.keyFile),
      cert: readFileSync(config.http.certFile),
      ca: trust.ca,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
    },
    bodyLimit: config.device.bodyLimitBytes,
  })
  bare.addContentTypeParser(
    'application/fhir+json',
    { parseAs: 'string' },
    (_request, body, done) => {
      try {
        done(null, JSON.parse(body as string))
      } catch (error) {
        done(error as Error)
      }
    },
  )
  bare.post('/v1/observations', async (request, reply) => {
    const body = request.body as { entry: { resource: Record<string, unknown> }[] }
    insertAll('device', body.entry)
    return reply.type('application/fhir+json').send({
      resourceType: 'Bundle',
      type: 'batch-response',
      entry: body.entry.map(() => ({ response: { status: '201 Created' } })),
    })
  })
  await bare.listen({ host: '127.0.0.1', port: 0 })
  const bareUrl = `https://127.0.0.1:${(bare.server.address() as { port: number }).port}`
  // The same device identities, pointed at the bare route.
  const bareClients: DeviceClient[] = []
  for (let i = 0; i < deviceCount; i += 1) {
    const serial = `BENCH-${String(i).padStart(3, '0')}`
    const copy = join(directory, 'bare-devices', serial)
    cpSync(join(directory, 'devices', serial), copy, { recursive: true })
    const identityFile = join(copy, 'identity.json')
    const identity = JSON.parse(readFileSync(identityFile, 'utf8')) as Record<string, unknown>
    writeFileSync(identityFile, JSON.stringify({ ...identity, url: bareUrl }))
    bareClients.push(await DeviceClient.open(copy))
  }
  const baseline = await load(bareClients)

  console.log(
    `full path: ${format(full.perSecond)} readings/s, p50 ${format(full.p50, 1)} ms, ` +
      `p99 ${format(full.p99, 1)} ms per batch of ${batch} (${format(full.requests)} requests)`,
  )
  console.log(
    `bare route: ${format(baseline.perSecond)} readings/s, p50 ${format(baseline.p50, 1)} ms, ` +
      `p99 ${format(baseline.p99, 1)} ms per batch (${format(baseline.requests)} requests)`,
  )
  console.log(
    `full path / bare route: ${format(full.perSecond / baseline.perSecond, 2)} of the bare rate`,
  )
  for (const client of [...clients, ...bareClients]) client.close()
  await bare.close()
  plain.close()
  await running.close()
  rmSync(directory, { recursive: true, force: true })
}

main().catch((error: unknown) => {
  console.error(error)
  rmSync(directory, { recursive: true, force: true })
  process.exit(1)
})
