/**
 * Updates benchmark on the embedded SQLite store, in two parts.
 *
 * Publication: one organization's repository is given a hundred releases, one publication at a
 * time as `ward updates publish` makes them (each new targets metadata lists every release so
 * far, is checked against the root's targets keys and stored with its image, and gets a new
 * snapshot and timestamp signed online); the time of the publication that brings it from 100 to
 * 101 releases is what is reported.
 *
 * Checks: a thousand devices, each enrolled with its own certificate, check for updates at once
 * with the real tuf-js client over mutual TLS against the published repository. A first check
 * fetches root, timestamp, snapshot and targets; later checks, the steady state of a fleet that
 * polls, fetch the next root (absent) and the timestamp. Ward runs in a process of its own; the
 * thousand clients share the benchmark's process.
 *
 * `WARD_BENCH_DEVICES` sets the fleet size (default 1000), `WARD_BENCH_ROUNDS` the steady-state
 * rounds (default 5), `WARD_BENCH_IMAGE_BYTES` each image's size (default 65536),
 * `WARD_BENCH_PROFILE` a directory for the server's CPU profile.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

import { enroll, FirmwareUpdater, type DeviceClient } from '@ward/device'

import { Ward, initializeWard, loadConfig, systemContext } from '../src/index.js'
import { standardDeviceModels } from '../src/devices/index.js'
import { OfflineSigner, firmwareImage } from '../src/updates/test-support.js'

const deviceCount = Number(process.env['WARD_BENCH_DEVICES'] ?? 1000)
const rounds = Number(process.env['WARD_BENCH_ROUNDS'] ?? 5)
const imageBytes = Number(process.env['WARD_BENCH_IMAGE_BYTES'] ?? 65_536)
const releaseCount = 100
const directory = mkdtempSync(join(tmpdir(), 'ward-updates-bench-'))

const format = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

function percentile(sorted: number[], share: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * share))] ?? 0
}

async function main() {
  const home = join(directory, 'home')
  const env = {
    WARD_HOME: home,
    WARD_HTTP_PORT: '0',
    WARD_DEVICE_PORT: '0',
    WARD_LOG_LEVEL: 'warn',
    WARD_HOST_NAME: 'ward.bench',
    // A thousand devices come from one address here; in the field each has its own.
    WARD_HTTP_RATE_LIMIT_PER_MINUTE: '1000000',
  }
  const config = loadConfig({ env })
  const operator = { ...systemContext('bench'), actor: { type: 'operator' as const, id: 'bench' } }
  await initializeWard(config, operator)
  console.log(
    `Ward updates benchmark: ${deviceCount} devices, ${releaseCount} releases of ${format(imageBytes)} bytes, ` +
      `SQLite (WAL, synchronous=FULL), ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`,
  )

  const ward = await Ward.open(config)
  await ward.createOrganization(operator, { slug: 'bench', name: 'Bench Clinic' })
  await ward.fleet.createDeviceModel(operator, 'bench', standardDeviceModels[0]!)
  const offline = new OfflineSigner(await ward.updates.onlineKeys(operator, 'bench'))
  const root1 = offline.root(1)

  const publishTimes: number[] = []
  for (let index = 0; index <= releaseCount; index++) {
    const targets = offline.release({
      name: `oximeter-1.${index + 1}.0.bin`,
      image: firmwareImage(`release-${index}`, imageBytes),
      fields: { version: `1.${index + 1}.0` },
    })
    const bundle = offline.bundle(index === 0 ? { 1: root1 } : {}, targets)
    const start = performance.now()
    await ward.updates.publish(operator, 'bench', bundle)
    publishTimes.push(performance.now() - start)
    // Only the newest image is in a bundle, as in a repository directory kept offline.
    offline.images.clear()
  }

  const tokens: string[] = []
  for (let index = 0; index < deviceCount; index++) {
    await ward.fleet.createDevice(operator, 'bench', {
      serial: serialOf(index),
      model: 'Pulse oximeter',
    })
    tokens.push((await ward.fleet.issueEnrollmentToken(operator, 'bench', serialOf(index))).token)
  }
  await ward.close()

  const server = await startServer(wardServer, { ...env, WARD_LOG_LEVEL: 'info' })
  const caPem = readFileSync(config.http.certFile, 'utf8')
  const clients: DeviceClient[] = []
  const enrollStart = performance.now()
  for (let index = 0; index < deviceCount; index += 10) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(10, deviceCount - index) }, (_, offset) =>
        enroll({
          url: server.deviceUrl,
          enrollmentUrl: server.url,
          serverName: `bench.${config.hostName}`,
          caPem,
          serial: serialOf(index + offset),
          token: tokens[index + offset] as string,
          keyDirectory: join(directory, 'devices', serialOf(index + offset), 'identity'),
        }),
      ),
    )
    clients.push(...batch)
  }
  const enrollSeconds = (performance.now() - enrollStart) / 1000
  const updaters = clients.map((client, index) => {
    const state = join(directory, 'devices', serialOf(index), 'state')
    mkdirSync(state, { recursive: true })
    return new FirmwareUpdater({
      client,
      stateDirectory: state,
      trustedRoot: root1,
      model: 'Pulse oximeter',
      hardwareRevision: 'A',
      factoryVersion: '1.0.0',
    })
  })

  const round = async () => {
    const latencies: number[] = []
    let found = 0
    const start = performance.now()
    await Promise.all(
      updaters.map(async (updater) => {
        const begun = performance.now()
        const available = await updater.check()
        latencies.push(performance.now() - begun)
        if (available?.fields.version === `1.${releaseCount + 1}.0`) found++
      }),
    )
    const seconds = (performance.now() - start) / 1000
    latencies.sort((a, b) => a - b)
    if (found !== updaters.length)
      throw new Error(`${updaters.length - found} devices missed the release`)
    return {
      perSecond: updaters.length / seconds,
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99),
      seconds,
    }
  }

  const first = await round()
  const steady: { perSecond: number; p50: number; p99: number }[] = []
  const cpuBefore = processCpuMs(server.child.pid)
  for (let index = 0; index < rounds; index++) steady.push(await round())
  const serverCpuPerCheck = (processCpuMs(server.child.pid) - cpuBefore) / (rounds * deviceCount)
  for (const client of clients) client.close()
  await stop(server.child)

  const last = publishTimes[publishTimes.length - 1] ?? 0
  const sortedPublish = [...publishTimes].sort((a, b) => a - b)
  console.log(
    `publish the 101st release into a repository of ${releaseCount}: ${format(last, 1)} ms ` +
      `(median over all ${publishTimes.length} publications ${format(percentile(sortedPublish, 0.5), 1)} ms)`,
  )
  console.log(`enrolled ${deviceCount} devices in ${format(enrollSeconds, 1)} s`)
  console.log(
    `first check, ${deviceCount} devices at once (root, timestamp, snapshot, targets): ` +
      `${format(first.perSecond)} checks/s, p50 ${format(first.p50)} ms, p99 ${format(first.p99)} ms`,
  )
  const best = steady.reduce((a, b) => (a.perSecond >= b.perSecond ? a : b))
  const p99s = steady.map((entry) => entry.p99).sort((a, b) => a - b)
  console.log(
    `steady-state checks, ${deviceCount} devices at once, ${rounds} rounds: ` +
      `${format(steady.reduce((sum, entry) => sum + entry.perSecond, 0) / steady.length)} checks/s on average ` +
      `(best ${format(best.perSecond)}), p50 ${format(
        percentile(
          steady.map((entry) => entry.p50).sort((a, b) => a - b),
          0.5,
        ),
      )} ms, ` +
      `p99 ${format(percentile(p99s, 0.5))} ms (median of the rounds' p99)`,
  )
  console.log(
    `Ward's own CPU per steady-state check: ${format(serverCpuPerCheck, 2)} ms, ` +
      `about ${format(1000 / serverCpuPerCheck)} checks/s per core for the server alone`,
  )
  rmSync(directory, { recursive: true, force: true })
}

/** User plus system CPU time of process `pid` so far, in milliseconds, from /proc. */
function processCpuMs(pid: number | undefined): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
  const ticks = Number(fields[11]) + Number(fields[12])
  // Linux reports these in clock ticks of 1/100 s.
  return ticks * 10
}

function serialOf(index: number): string {
  return `UPD-${String(index).padStart(4, '0')}`
}

function startServer(
  script: string,
  env: Record<string, string>,
): Promise<{ child: ChildProcess; url: string; deviceUrl: string }> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env }
  for (const name of Object.keys(childEnv))
    if (name.startsWith('WARD_BENCH_')) delete childEnv[name]
  // WARD_BENCH_PROFILE=<dir> has the server write a CPU profile there, to see where time goes.
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
      if (entry.msg === 'listening' && entry.url !== undefined && entry.deviceUrl !== undefined) {
        resolve({ child, url: entry.url, deviceUrl: entry.deviceUrl })
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

const wardServer = fileURLToPath(new URL('../test/serve-ward.ts', import.meta.url))

main().catch((error: unknown) => {
  console.error(error)
  rmSync(directory, { recursive: true, force: true })
  process.exit(1)
})
