#!/usr/bin/env node
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

import { WardError, isWardError } from '@ward/core'

import { DeviceAgent } from './agent.js'
import { DeviceClient, enroll } from './client.js'
import type { ConnectionOptions, TlsMinimum } from './client.js'
import { runCommands } from './commands.js'
import { observationsIn } from './fhir.js'
import type { Observation } from './fhir.js'
import { DurableQueue } from './queue.js'
import { simulate } from './simulate.js'
import { updateCommand, updateCommandUsage } from './update-command.js'

const usage = `ward-device — Ward's device agent and fleet simulator

usage:
  ward-device enroll --url <url> [--enrollment-url <url>] --server-name <name> --ca <file>
                     --serial <serial> (--token <token> | --factory-cert <file>
                     --factory-key <file>) --dir <dir>
      make a key pair in <dir>, send a certificate request, store the certificate Ward issues
  ward-device renew --dir <dir> [--url <url>]
      get a new certificate for a new key over mutual TLS; the old one stays until it is stored
  ward-device send --dir <dir> [--url <url>] [--file <file>] [--timeout <seconds>]
                   [--batch-size <n>]
      queue the Observations in <file> (one Observation, an array or a Bundle), then deliver
      everything queued in <dir>/queue; without --file, deliver what is already queued.
      Before and after, carry out Ward's lifecycle commands: on a wipe, erase the queue, the
      key and the certificate, confirm, and stop
  ward-device simulate --devices <n> --rate <r> --duration <seconds> --dir <dir>
                       --url <url> [--enrollment-url <url>] --server-name <name> --ca <file>
                       [--tokens <file>]
                       [--template <file>]... [--batch-size <n>] [--drain <seconds>]
      run <n> devices in this process, each making <r> readings a second for <seconds>,
      printing progress every second; device i lives in <dir>/device-<i>
${updateCommandUsage}
options:
  --url <url>            Ward's device endpoint, e.g. https://ward.example.org:8444; for an
                         enrolled device, only when Ward moved since it enrolled
  --enrollment-url <url> where Ward accepts enrollment: its API, e.g.
                         https://ward.example.org:8443 (default: --url)
  --server-name <name>   TLS server name: <organization slug>.<WARD_HOST_NAME>
  --ca <file>            PEM trust anchors for Ward's certificate
  --serial <serial>      the device's serial number, as registered with Ward
  --token <token>        one-time enrollment token issued for that serial
  --factory-cert <file>  factory certificate chain (PEM), instead of a token
  --factory-key <file>   factory private key (PEM); it signs the request and stays here
  --dir <dir>            the device's directory: key (mode 0600), certificate, queue
  --file <file>          JSON file of Observations to send
  --timeout <seconds>    how long send keeps trying before it gives up (default 60);
                         what is not delivered stays queued for the next send
  --batch-size <n>       most readings per request (default 100)
  --tls-min <version>    TLSv1.3 (default) or TLSv1.2 (ECDHE AEAD suites only)
  --devices <n>          simulated devices
  --rate <r>             readings per second per simulated device
  --duration <seconds>   how long simulated devices make readings
  --tokens <file>        enrollment tokens for simulated devices not yet enrolled: line i
                         is "<serial> <token>" for device i; blank lines and # comments skipped
  --template <file>      Observation template(s), repeatable (default: SpO2 and pulse rate);
                         each reading is timed now and gets its own message id
  --drain <seconds>      how long simulate waits for queues to empty at the end (default 30)

exit codes: 0 done, 1 failed (or readings left undelivered or rejected), 2 usage error
`

/** Exit codes: 0 success, 1 operation failed, 2 usage error. */
class UsageError extends Error {}

type Values = Record<string, string | string[] | undefined>

const CONNECTION = ['url', 'enrollment-url', 'server-name', 'ca', 'tls-min'] as const

async function main(argv: string[]): Promise<number> {
  const [command] = argv
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(usage)
    return command === undefined ? 2 : 0
  }

  const args = argv.slice(1)
  switch (command) {
    case 'enroll':
      return enrollCommand(args)
    case 'renew':
      return renewCommand(args)
    case 'send':
      return sendCommand(args)
    case 'simulate':
      return simulateCommand(args)
    case 'update':
      return updateCommand(args)
  }
  throw new UsageError(`unknown command: ${command}`)
}

async function enrollCommand(args: string[]): Promise<number> {
  const values = parse(args, [
    ...CONNECTION,
    'serial',
    'token',
    'factory-cert',
    'factory-key',
    'dir',
  ])
  const directory = required(values, 'dir')
  const token = optional(values, 'token')
  const factoryCert = optional(values, 'factory-cert')
  const factoryKey = optional(values, 'factory-key')
  if ((token === undefined) === (factoryCert === undefined && factoryKey === undefined)) {
    throw new UsageError('enroll needs --token, or --factory-cert and --factory-key')
  }
  if ((factoryCert === undefined) !== (factoryKey === undefined)) {
    throw new UsageError('--factory-cert and --factory-key go together')
  }

  const client = await enroll({
    ...connectionInputs(values),
    serial: required(values, 'serial'),
    keyDirectory: directory,
    ...(token === undefined ? {} : { token }),
    ...(factoryCert === undefined || factoryKey === undefined
      ? {}
      : {
          factory: {
            certificateChainPem: readText(factoryCert, '--factory-cert'),
            privateKeyPem: readText(factoryKey, '--factory-key'),
          },
        }),
  })
  const identity = client.identity
  client.close()
  process.stdout.write(
    `enrolled ${identity.serial} as device ${identity.deviceId}; ` +
      `certificate valid until ${identity.notAfter}; identity stored in ${directory}\n`,
  )
  return 0
}

async function renewCommand(args: string[]): Promise<number> {
  const values = parse(args, ['dir', 'url', 'tls-min'])
  const client = await DeviceClient.open(required(values, 'dir'), connectionOptions(values))
  try {
    const identity = await client.renew()
    process.stdout.write(`renewed; certificate valid until ${identity.notAfter}\n`)
  } finally {
    client.close()
  }
  return 0
}

async function sendCommand(args: string[]): Promise<number> {
  const values = parse(args, ['dir', 'url', 'file', 'timeout', 'batch-size', 'tls-min'])
  const directory = required(values, 'dir')
  const file = optional(values, 'file')
  const timeoutSeconds = number(values, 'timeout', 60)
  const batchSize = integer(values, 'batch-size', 100)
  const observations = file === undefined ? [] : observationsIn(readJson(file, '--file'))

  const client = await DeviceClient.open(directory, connectionOptions(values))
  const queue = await DurableQueue.open(join(directory, 'queue'))
  const agent = new DeviceAgent({ queue, client, batchSize, certificate: client })
  try {
    // Commands first: a device told to wipe itself queues and sends nothing more.
    if (await obeyCommands(client, directory, queue)) return 0
    const enqueued = new Set<string>()
    for (const observation of observations) enqueued.add(await queue.enqueue(observation))

    let drained = true
    await agent.drain(AbortSignal.timeout(timeoutSeconds * 1000)).catch(() => {
      drained = false
    })
    await agent.stop()
    if (await obeyCommands(client, directory, queue)) return 0

    const counters = agent.counters
    process.stdout.write(
      `queued ${enqueued.size}; accepted ${counters.accepted}, duplicate ${counters.duplicate}, ` +
        `rejected ${counters.rejected}, still queued ${queue.size}\n`,
    )
    const rejected = (await queue.rejectedReadings()).filter((reading) =>
      enqueued.has(reading.messageId),
    )
    for (const reading of rejected) {
      process.stderr.write(`ward-device: rejected ${reading.messageId}: ${reading.reason}\n`)
    }
    if (!drained) {
      process.stderr.write(
        `ward-device: ${queue.size} readings not delivered within ${timeoutSeconds} s; ` +
          `they stay queued in ${join(directory, 'queue')} for the next send\n`,
      )
    }
    return drained && rejected.length === 0 ? 0 : 1
  } finally {
    await agent.stop()
    client.close()
    await queue.close()
  }
}

/**
 * Asks Ward for lifecycle commands and carries them out; true when the device wiped itself and
 * must stop. Not reaching Ward is reported and left for the next cycle.
 */
async function obeyCommands(
  client: DeviceClient,
  directory: string,
  queue: DurableQueue,
): Promise<boolean> {
  let outcome
  try {
    outcome = await runCommands({ client, queueDirectory: join(directory, 'queue'), queue })
  } catch (error) {
    if (!isWardError(error)) throw error
    process.stderr.write(`ward-device: commands not fetched: ${error.message}\n`)
    return false
  }
  if (outcome === undefined) return false
  const { erased } = outcome.report
  process.stdout.write(
    `wiped on command ${outcome.commandId}: erased ${erased.queuedReadings} queued and ` +
      `${erased.rejectedReadings} refused readings, ${erased.keys.length} key and ` +
      `${erased.certificates.length} certificate; ` +
      (outcome.confirmed
        ? `Ward recorded wipe certificate ${outcome.wipeCertificate ?? ''}\n`
        : 'Ward did not confirm in time\n'),
  )
  return true
}

async function simulateCommand(args: string[]): Promise<number> {
  const values = parse(
    args,
    [...CONNECTION, 'devices', 'rate', 'duration', 'dir', 'tokens', 'batch-size', 'drain'],
    ['template'],
  )
  const devices = integer(values, 'devices')
  const rate = number(values, 'rate')
  const duration = number(values, 'duration')
  const directory = required(values, 'dir')
  const batchSize = integer(values, 'batch-size', 100)
  const drainSeconds = number(values, 'drain', 30)
  const tokensFile = optional(values, 'tokens')
  const tokens = tokensFile === undefined ? [] : readTokens(tokensFile)
  const templateFiles = values['template']
  const templates = Array.isArray(templateFiles)
    ? templateFiles.flatMap((templateFile) => observationsIn(readJson(templateFile, '--template')))
    : defaultTemplates()
  const connection = connectionInputs(values)

  const abort = new AbortController()
  const interrupt = () => abort.abort()
  process.once('SIGINT', interrupt)
  process.once('SIGTERM', interrupt)
  try {
    const summary = await simulate({
      devices,
      rate,
      duration,
      directory,
      templates,
      batchSize,
      drainSeconds,
      signal: abort.signal,
      connect: async ({ index, directory: deviceDirectory }) => {
        if (existsSync(join(deviceDirectory, 'identity.json'))) {
          return DeviceClient.open(deviceDirectory, connectionOptions(values))
        }
        const enrollment = tokens[index]
        if (enrollment === undefined) {
          throw new WardError(
            'ERR_NOT_INITIALIZED',
            `device ${index} is not enrolled and --tokens has no line ${index + 1}`,
          )
        }
        return enroll({ ...connection, ...enrollment, keyDirectory: deviceDirectory })
      },
    })
    process.stdout.write(
      `simulated ${summary.devices} devices for ${summary.seconds.toFixed(1)} s: ` +
        `generated ${summary.generated}, refused ${summary.refused}, ` +
        `accepted ${summary.accepted}, duplicate ${summary.duplicate}, ` +
        `rejected ${summary.rejected}, still queued ${summary.queued}, retries ${summary.retries}\n`,
    )
    return summary.queued === 0 && summary.refused === 0 ? 0 : 1
  } finally {
    process.off('SIGINT', interrupt)
    process.off('SIGTERM', interrupt)
  }
}

function connectionInputs(values: Values): {
  url: string
  enrollmentUrl?: string
  serverName: string
  caPem: string
} & ConnectionOptions {
  const enrollmentUrl = optional(values, 'enrollment-url')
  return {
    url: required(values, 'url'),
    ...(enrollmentUrl === undefined ? {} : { enrollmentUrl }),
    serverName: required(values, 'server-name'),
    caPem: readText(required(values, 'ca'), '--ca'),
    ...connectionOptions(values),
  }
}

function connectionOptions(values: Values): ConnectionOptions {
  const minimum = optional(values, 'tls-min')
  const url = optional(values, 'url')
  if (minimum !== undefined && minimum !== 'TLSv1.3' && minimum !== 'TLSv1.2') {
    throw new UsageError('--tls-min must be TLSv1.3 or TLSv1.2')
  }
  return {
    ...(minimum === undefined ? {} : { minTlsVersion: minimum satisfies TlsMinimum }),
    ...(url === undefined ? {} : { url }),
  }
}

function readTokens(file: string): { serial: string; token: string }[] {
  return readText(file, '--tokens')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line, index) => {
      const [serial, token, ...rest] = line.split(/\s+/)
      if (serial === undefined || token === undefined || rest.length > 0) {
        throw new UsageError(`--tokens line ${index + 1} is not "<serial> <token>"`)
      }
      return { serial, token }
    })
}

// A pulse oximeter's two readings, so a simulation runs without any file at hand.
function defaultTemplates(): Observation[] {
  const vitalSigns = [
    {
      coding: [
        {
          system: 'http://terminology.hl7.org/CodeSystem/observation-category',
          code: 'vital-signs',
        },
      ],
    },
  ]
  return [
    {
      resourceType: 'Observation',
      status: 'final',
      category: vitalSigns,
      code: { coding: [{ system: 'http://loinc.org', code: '59408-5' }] },
      valueQuantity: { value: 97, unit: '%', system: 'http://unitsofmeasure.org', code: '%' },
    },
    {
      resourceType: 'Observation',
      status: 'final',
      category: vitalSigns,
      code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
      valueQuantity: {
        value: 72,
        unit: 'beats/minute',
        system: 'http://unitsofmeasure.org',
        code: '/min',
      },
    },
  ]
}

/** Parses `--name value` options, all strings, `repeatable` ones as lists; no positionals. */
function parse(args: string[], names: readonly string[], repeatable: readonly string[] = []) {
  const options = Object.fromEntries([
    ...names.map((name) => [name, { type: 'string' as const }]),
    ...repeatable.map((name) => [name, { type: 'string' as const, multiple: true }]),
  ])
  try {
    return parseArgs({ args, options, allowPositionals: false, strict: true }).values as Values
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
}

function optional(values: Values, name: string): string | undefined {
  const value = values[name]
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value === '') throw new UsageError(`--${name} needs a value`)
  return value
}

function required(values: Values, name: string): string {
  const value = optional(values, name)
  if (value === undefined) throw new UsageError(`missing --${name}`)
  return value
}

function number(values: Values, name: string, fallback?: number): number {
  const text = fallback === undefined ? required(values, name) : optional(values, name)
  if (text === undefined) return fallback as number
  const value = Number(text)
  if (!Number.isFinite(value) || value <= 0) throw new UsageError(`--${name} must be positive`)
  return value
}

function integer(values: Values, name: string, fallback?: number): number {
  const value = number(values, name, fallback)
  if (!Number.isSafeInteger(value)) throw new UsageError(`--${name} must be a whole number`)
  return value
}

function readText(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (cause) {
    throw new WardError('ERR_INPUT_INVALID', `${flag} ${file} cannot be read`, {
      cause,
      details: { field: flag },
    })
  }
}

function readJson(file: string, flag: string): unknown {
  const text = readText(file, flag)
  try {
    return JSON.parse(text) as unknown
  } catch (cause) {
    throw new WardError('ERR_INPUT_INVALID', `${flag} ${file} is not JSON`, {
      cause,
      details: { field: flag },
    })
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`ward-device: ${error.message}\n\n${usage}`)
      process.exit(2)
    }
    if (isWardError(error)) {
      process.stderr.write(`ward-device: ${error.code}: ${error.message}\n`)
    } else {
      process.stderr.write(
        `ward-device: unexpected failure: ${(error as Error).stack ?? String(error)}\n`,
      )
    }
    process.exit(1)
  },
)
