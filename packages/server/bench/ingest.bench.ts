/**
 * Ingest benchmark on the embedded SQLite store: fifty devices, each with its own enrolled
 * certificate, send batches of readings over mutual TLS as fast as answers come back. The full
 * path (handshake trust per organization, device identification, model policy, sealing under
 * the patient's data key, idempotent insert, one audit event per batch) is measured beside a
 * bare route in the same run: the same clients and TLS, a server that parses the batch and
 * inserts the readings as they are, without checks, encryption or audit, once into a minimal
 * table and once into Ward's own observations table and indexes in clear. Each server runs in a
 * process of its own, apart from the load generator, as it would in production.
 *
 * `WARD_BENCH_SECONDS` sets each phase's length (default 20), `WARD_BENCH_BATCH` the readings per
 * request (default 100), `WARD_BENCH_PROFILE` a directory for the servers' CPU profiles.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'

import { deviceMessageIdSystem } from '@ward/core'
import { DeviceClient, enroll, type QueuedReading } from '@ward/device'

import { standardDeviceModels } from '../src/devices/index.js'
import { deviceTrust } from '../src/identity/index.js'
import { Ward, initializeWard, loadConfig, systemContext } from '../src/index.js'

const seconds = Number(process.env['WARD_BENCH_SECONDS'] ?? 20)
const batch = Number(process.env['WARD_BENCH_BATCH'] ?? 100)
const deviceCount = 50
// The sustained phase: the ingest aim, 10,000 readings a second, unless set otherwise.
const sustainedRate = Number(process.env['WARD_BENCH_SUSTAINED_RATE'] ?? 10_000)
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

/**
 * Every device sends batch after batch for `seconds`. With `perSecond`, the fleet paces itself
 * to that many readings a second in all (each device sending on its own schedule, as devices
 * do), so latency is measured at a sustained load rather than at saturation, where it is only
 * the queue. Returns readings stored a second and per-batch latencies.
 */
async function load(clients: DeviceClient[], server: ChildProcess, perSecond?: number) {
  const latencies: number[] = []
  const serverCpuBefore = cpuSecondsOf(server)
  const ownCpuBefore = process.cpuUsage()
  let stored = 0
  const end = performance.now() + seconds * 1000
  await Promise.all(
    clients.map(async (client, index) => {
      const interval = perSecond === undefined ? 0 : (1000 * batch * clients.length) / perSecond
      let next = performance.now() + (interval * index) / clients.length
      while (performance.now() < end) {
        if (interval > 0) {
          const wait = next - performance.now()
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
          next += interval
        }
        const start = performance.now()
        const outcomes = await client.sendBatch(readings(batch))
        latencies.push(performance.now() - start)
        stored += outcomes.filter((outcome) => outcome.result === 'accepted').length
      }
    }),
  )
  const ownCpu = process.cpuUsage(ownCpuBefore)
  const serverCpu = cpuSecondsOf(server) - serverCpuBefore
  latencies.sort((a, b) => a - b)
  const at = (share: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * share))] ?? 0
  const batches = Math.max(1, latencies.length)
  return {
    perSecond: stored / seconds,
    p50: at(0.5),
    p99: at(0.99),
    requests: latencies.length,
    // CPU milliseconds a batch cost each side; time a commit spends waiting for the disk is
    // not CPU time, so these add up to less than the wall-clock time a batch takes.
    serverCpuMs: (1000 * serverCpu) / batches,
    clientCpuMs: (ownCpu.user + ownCpu.system) / 1000 / batches,
  }
}

/**
 * CPU seconds (user and system) the child process has used so far, from Linux's
 * /proc/<pid>/stat; NaN elsewhere. Clock ticks are assumed to be the usual 100 a second.
 */
function cpuSecondsOf(child: ChildProcess): number {
  try {
    const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8')
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return Number.NaN
  }
}

const cpuLine = (result: { serverCpuMs: number; clientCpuMs: number }) =>
  `CPU per batch: server ${format(result.serverCpuMs, 2)} ms, load generator ${format(result.clientCpuMs, 2)} ms`

const format = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

/** Starts `script` as a child process with `env`; resolves with what its listening line says. */
function startServer(
  script: string,
  env: Record<string, string>,
): Promise<{ child: ChildProcess; url: string; deviceUrl?: string }> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env }
  // The benchmark's own settings are not Ward's, and Ward refuses settings it does not know.
  for (const name of Object.keys(childEnv))
    if (name.startsWith('WARD_BENCH_')) delete childEnv[name]
  // WARD_BENCH_PROFILE=<dir> has each server write a CPU profile there, to see where time goes.
  const profile = process.env['WARD_BENCH_PROFILE']
  const profiling = profile === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profile}`]
  const child = spawn(
    process.execPath,
    [...profiling, '--conditions=@ward/source', '--import', 'tsx', script],
    {
      env: childEnv,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
    lines.on('line', (line) => {
      const entry = JSON.parse(line) as { msg?: string; url?: string; deviceUrl?: string }
      if (entry.msg === 'listening' && entry.url !== undefined) {
        resolve({
          child,
          url: entry.url,
          ...(entry.deviceUrl === undefined ? {} : { deviceUrl: entry.deviceUrl }),
        })
      }
    })
    child.once('exit', (code) =>
      reject(new Error(`${script} exited with ${code} before listening`)),
    )
  })
}

async function stop(child: ChildProcess) {
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
}

async function main() {
  const home = join(directory, 'home')
  const env = {
    WARD_HOME: home,
    WARD_HTTP_PORT: '0',
    WARD_DEVICE_PORT: '0',
    WARD_LOG_LEVEL: 'warn',
    WARD_HOST_NAME: 'ward.bench',
  }
  const config = loadConfig({ env })
  const operator = { ...systemContext('bench'), actor: { type: 'operator' as const, id: 'bench' } }
  await initializeWard(config, operator)
  console.log(
    `Ward ingest benchmark: ${deviceCount} devices, batches of ${batch}, ${seconds} s a phase, SQLite (WAL, synchronous=FULL), ` +
      `server and load generator in separate processes, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`,
  )

  // The fleet is set up directly, as the ward command would, before the server starts.
  const ward = await Ward.open(config)
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
  const tokens: string[] = []
  for (let i = 0; i < deviceCount; i += 1) {
    const patient = await ward.fleet.createPatient(operator, 'bench', {
      name: { family: `Benchpatient-${i}`, given: ['Fictitious'] },
      birthDate: '1960-01-01',
    })
    await ward.fleet.createDevice(operator, 'bench', { serial: serialOf(i), model: model.id })
    await ward.fleet.assignDevice(operator, 'bench', serialOf(i), patient.pseudonym)
    tokens.push((await ward.fleet.issueEnrollmentToken(operator, 'bench', serialOf(i))).token)
  }
  const trust = await deviceTrust(ward.store.db, ward.keys, organization.id)
  await ward.close()

  const server = await startServer(wardServer, { ...env, WARD_LOG_LEVEL: 'info' })
  const caPem = readFileSync(config.http.certFile, 'utf8')
  const clients: DeviceClient[] = []
  for (let i = 0; i < deviceCount; i += 1) {
    clients.push(
      await enroll({
        url: server.deviceUrl as string,
        enrollmentUrl: server.url,
        serverName: `bench.${config.hostName}`,
        caPem,
        serial: serialOf(i),
        token: tokens[i] as string,
        keyDirectory: join(directory, 'devices', serialOf(i)),
      }),
    )
  }
  const full = await load(clients, server.child)
  const sustained = await load(clients, server.child, sustainedRate)
  for (const client of clients) client.close()
  await stop(server.child)

  const caFile = join(directory, 'device-ca.pem')
  writeFileSync(caFile, trust.ca.join('\n'))
  /** The same load, from the same device identities, against a bare route on `schema`. */
  const bareRoute = async (schema: 'minimal' | 'ward') => {
    const bare = await startServer(bareServer, {
      BARE_SCHEMA: schema,
      BARE_DATABASE: join(directory, `bare-${schema}.db`),
      BARE_KEY_FILE: config.http.keyFile,
      BARE_CERT_FILE: config.http.certFile,
      BARE_CA_FILE: caFile,
    })
    const bareClients: DeviceClient[] = []
    for (let i = 0; i < deviceCount; i += 1) {
      const copy = join(directory, `bare-${schema}-devices`, serialOf(i))
      cpSync(join(directory, 'devices', serialOf(i)), copy, { recursive: true })
      const identityFile = join(copy, 'identity.json')
      const identity = JSON.parse(readFileSync(identityFile, 'utf8')) as Record<string, unknown>
      writeFileSync(identityFile, JSON.stringify({ ...identity, url: bare.url }))
      bareClients.push(await DeviceClient.open(copy))
    }
    const measured = await load(bareClients, bare.child)
    for (const client of bareClients) client.close()
    await stop(bare.child)
    return measured
  }
  const baseline = await bareRoute('minimal')
  const sameSchema = await bareRoute('ward')

  console.log(
    `full path: ${format(full.perSecond)} readings/s, p50 ${format(full.p50, 1)} ms, ` +
      `p99 ${format(full.p99, 1)} ms per batch of ${batch} (${format(full.requests)} requests); ` +
      cpuLine(full),
  )
  console.log(
    `bare route: ${format(baseline.perSecond)} readings/s, p50 ${format(baseline.p50, 1)} ms, ` +
      `p99 ${format(baseline.p99, 1)} ms per batch (${format(baseline.requests)} requests); ` +
      cpuLine(baseline),
  )
  console.log(
    `bare route into Ward's observations table, in clear: ${format(sameSchema.perSecond)} readings/s, ` +
      `p50 ${format(sameSchema.p50, 1)} ms, p99 ${format(sameSchema.p99, 1)} ms per batch; ` +
      cpuLine(sameSchema),
  )
  console.log(
    `full path / bare route: ${format(full.perSecond / baseline.perSecond, 2)} of the bare rate; ` +
      `${format(full.perSecond / sameSchema.perSecond, 2)} of the same-table bare rate`,
  )
  console.log(
    `full path paced at ${format(sustainedRate)} readings/s: ${format(sustained.perSecond)} stored/s, ` +
      `p50 ${format(sustained.p50, 1)} ms, p99 ${format(sustained.p99, 1)} ms per batch; ` +
      cpuLine(sustained),
  )
  console.log(
    `server CPU per batch, full path / bare route: ${format(full.serverCpuMs / baseline.serverCpuMs, 2)}; ` +
      `full path / same-table bare route: ${format(full.serverCpuMs / sameSchema.serverCpuMs, 2)}`,
  )
  rmSync(directory, { recursive: true, force: true })
}

function serialOf(i: number): string {
  return `BENCH-${String(i).padStart(3, '0')}`
}

const wardServer = fileURLToPath(new URL('../test/serve-ward.ts', import.meta.url))
const bareServer = fileURLToPath(new URL('./bare-ingest-server.ts', import.meta.url))

main().catch((error: unknown) => {
  console.error(error)
  rmSync(directory, { recursive: true, force: true })
  process.exit(1)
})
