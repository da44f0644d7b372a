/**
 * Ward's demo: brings Ward up on its embedded default in its own home (`./.ward-demo`, or
 * `WARD_HOME`), creates an organization, the four standard device models, fifty patients with
 * obviously fictitious identities and fifty devices, enrolls the devices as simulated agents,
 * streams the HL7 FHIR example readings from `../shared/data/fhir` for a minute (re-timed to now)
 * over mutual TLS with a progress line, then exports and verifies the organization's audit log.
 *
 * `--duration <seconds>` and `--rate <readings a second per device>` change the stream.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'

import { checkObservation, parseVerifierKey, toHex, type DeviceModelPolicy } from '@ward/core'
import { DeviceClient, enroll, retime, simulate, type Observation } from '@ward/device'
import {
  createLogger,
  initializeWard,
  loadConfig,
  standardDeviceModels,
  systemContext,
  type OperationContext,
} from '@ward/server'
import { serveWard } from '@ward/server/http'

import { verifyExport } from '../packages/cli/src/verify.js'

const { values } = parseArgs({
  options: { duration: { type: 'string' }, rate: { type: 'string' } },
})
const duration = Number(values.duration ?? 60)
// One reading a second per device stays within every standard model's rate cap.
const rate = Number(values.rate ?? 1)
const slug = 'demo-clinic'
const fleetSize = 50
const shared = resolve(
  process.env['WARD_SHARED_DIR'] ?? new URL('../../shared', import.meta.url).pathname,
)

process.env['WARD_HOME'] ??= './.ward-demo'
process.env['WARD_HTTP_PORT'] ??= '0'
process.env['WARD_DEVICE_PORT'] ??= '0'
process.env['WARD_LOG_LEVEL'] ??= 'warn'

const say = (line: string) => process.stdout.write(`${line}\n`)

/** Every Observation in the HL7 example sets, bundles opened. */
function exampleReadings(): { file: string; resource: Observation }[] {
  const readings: { file: string; resource: Observation }[] = []
  for (const set of ['phd-examples', 'r4-examples']) {
    const directory = join(shared, 'data', 'fhir', set)
    for (const file of readdirSync(directory)
      .filter((name) => name.endsWith('.json'))
      .sort()) {
      const resource = JSON.parse(readFileSync(join(directory, file), 'utf8')) as Record<
        string,
        unknown
      >
      if (resource['resourceType'] === 'Observation')
        readings.push({ file, resource: resource as Observation })
      if (resource['resourceType'] === 'Bundle') {
        for (const entry of (resource['entry'] as { resource?: Record<string, unknown> }[]) ?? []) {
          if (entry.resource?.['resourceType'] === 'Observation') {
            readings.push({ file, resource: entry.resource as Observation })
          }
        }
      }
    }
  }
  return readings
}

/**
 * The readings a device of `policy` streams: every example its model allows, plus the
 * examples that came from the same kind of device but that its model does not allow (the
 * clock-synchronisation observations), which Ward rejects with a reason.
 */
function templatesFor(
  policy: DeviceModelPolicy,
  readings: { file: string; resource: Observation }[],
): Observation[] {
  const allowed = readings.filter(({ resource }) => {
    try {
      const probe = { system: 'urn:ward:device-message-id', value: 'probe' }
      // Judged as streamed: timed now, since the examples' own times may be years old.
      const streamed = { ...retime(template(resource), new Date()), identifier: [probe] }
      checkObservation(streamed, policy, 'Patient/probe')
      return true
    } catch {
      return false
    }
  })
  const timeStamps = readings.filter(({ file }) => file.startsWith('coin-'))
  return [...allowed, ...timeStamps.slice(0, 1)].map(({ resource }) => template(resource))
}

/**
 * An example reading as a template: its subject and identifiers are the example's, not ours,
 * and so is its patient as performer, which Ward refuses as a patient other than the device's.
 */
function template(resource: Observation): Observation {
  const copy: Record<string, unknown> = { ...resource }
  const subject = (copy['subject'] as { reference?: unknown } | undefined)?.reference
  delete copy['subject']
  delete copy['identifier']
  if (Array.isArray(copy['performer'])) {
    const others = (copy['performer'] as { reference?: unknown }[]).filter(
      (performer) => performer.reference !== subject,
    )
    if (others.length > 0) copy['performer'] = others
    else delete copy['performer']
  }
  return copy as Observation
}

async function main() {
  const config = loadConfig({ env: process.env })
  const operator: OperationContext = {
    ...systemContext('demo'),
    actor: { type: 'operator', id: 'demo' },
  }
  say(`Ward demo — home ${config.home}, ${duration} s at ${rate} readings/s per device`)
  await initializeWard(config, operator)
  const running = await serveWard(config, createLogger(config.log.level))
  const { ward } = running
  try {
    const organizations = await ward.listOrganizations()
    if (!organizations.some((organization) => organization.slug === slug)) {
      await ward.createOrganization(operator, { slug, name: 'Demo Clinic (fictitious)' })
      for (const model of standardDeviceModels)
        await ward.fleet.createDeviceModel(operator, slug, model)
    }
    const models = await ward.fleet.listDeviceModels(slug)
    const readings = exampleReadings()
    const templates = new Map(
      models.map((model) => [model.id, templatesFor(model.policy, readings)]),
    )

    let devices = await ward.fleet.listDevices(slug)
    if (devices.length < fleetSize) {
      say(`creating ${fleetSize} fictitious patients and devices`)
      for (let i = devices.length; i < fleetSize; i += 1) {
        const number = String(i + 1).padStart(3, '0')
        const patient = await ward.fleet.createPatient(operator, slug, {
          name: { family: `Demopatient-${number}`, given: ['Fictitious'] },
          birthDate: `19${String(40 + (i % 50)).padStart(2, '0')}-01-${String(1 + (i % 28)).padStart(2, '0')}`,
          medicalRecordNumber: `FICTITIOUS-MRN-${number}`,
        })
        const model = models[i % models.length]!
        const serial = `DEMO-${number}`
        await ward.fleet.createDevice(operator, slug, { serial, model: model.id })
        await ward.fleet.assignDevice(operator, slug, serial, patient.pseudonym)
      }
      devices = await ward.fleet.listDevices(slug)
    }

    // Devices wiped or decommissioned (by `npm run demo:lifecycle`, say) stay out of the stream.
    devices = devices.filter(
      (device) => device.status !== 'wiped' && device.status !== 'decommissioned',
    )
    const caPem = readFileSync(config.http.certFile, 'utf8')
    const serverName = `${slug}.${config.hostName}`
    const deviceHome = join(config.home, 'devices')
    mkdirSync(deviceHome, { recursive: true, mode: 0o700 })
    say(`enrolling ${devices.length} simulated devices over ${running.url}`)

    const summary = await simulate({
      devices: devices.length,
      rate,
      duration,
      templates: templates.get(models[0]!.id)!,
      directory: deviceHome,
      // Each device's key, certificate and queue together, in its own directory by serial.
      directoryOf: (index) => join(deviceHome, devices[index]!.serial),
      progress: say,
      connect: async (simulated) => {
        const device = devices[simulated.index]!
        const keyDirectory = simulated.directory
        let client: DeviceClient
        if (existsSync(join(keyDirectory, 'identity.json'))) {
          // Ward listens on a free port each run: the device is told where it is now.
          client = await DeviceClient.open(keyDirectory, { url: running.deviceUrl })
        } else {
          const { token } = await ward.fleet.issueEnrollmentToken(operator, slug, device.serial)
          client = await enroll({
            url: running.deviceUrl,
            serverName,
            caPem,
            enrollmentUrl: running.url,
            serial: device.serial,
            token,
            keyDirectory,
          })
        }
        return Object.assign(client, { templates: templates.get(device.modelId) ?? [] })
      },
    })
    say(
      `streamed ${summary.generated} readings from ${summary.devices} devices in ${summary.seconds.toFixed(0)} s: ` +
        `${summary.accepted} accepted, ${summary.duplicate} duplicates, ${summary.rejected} rejected, ` +
        `${summary.queued} still queued`,
    )

    const out = join(config.home, 'audit-export', slug)
    const exported = await ward.exportAuditLog(operator, slug, out)
    const key = await ward.verifierKey(slug)
    const verified = verifyExport(out, parseVerifierKey(key))
    say(`audit log ${slug}: ${exported.size} events exported to ${out}`)
    say(`verified ${verified.origin}: size ${verified.size}, root ${toHex(verified.rootHash)}`)
    say('')
    say('Where to look next:')
    say(`  WARD_HOME=${config.home} npm run -s ward -- device list --org ${slug}`)
    say(`  WARD_HOME=${config.home} npm run -s ward -- audit verify ${out} --key "${key}"`)
    say(`  why readings were rejected: ${deviceHome}/<serial>/queue/rejected.log`)
  } finally {
    await running.close()
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${(error as Error).message}\n`)
  process.exit(1)
})
