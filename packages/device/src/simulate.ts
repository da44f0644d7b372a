import { setMaxListeners } from 'node:events'
import { join } from 'node:path'

import { WardError } from '@ward/core'

import { DeviceAgent } from './agent.js'
import type { AgentCounters, RetryOptions } from './agent.js'
import type { ReadingSender } from './client.js'
import { isObservation } from './fhir.js'
import type { Observation } from './fhir.js'
import { DurableQueue } from './queue.js'
import type { QueueOptions } from './queue.js'

/** One simulated device: its number and the directory that is its own. */
export interface SimulatedDevice {
  /** 0 for the first device, counting up. */
  index: number
  /** `<directory>/device-<index>` (or what `directoryOf` says); its queue is `queue/` in it. */
  directory: string
}

/** A connection for one simulated device; closed when the simulation ends. */
/**
 * A simulated device's connection. `templates`, when given, are what this device makes its
 * readings from instead of the simulation's own, so a mixed fleet can run in one simulation.
 */
export type SimulatedConnection = ReadingSender & {
  close?: () => void
  templates?: readonly Observation[]
}

/** What `simulate` runs. */
export interface SimulateOptions {
  /** How many devices run at once. */
  devices: number
  /** Readings each device makes per second; fractions are fine. */
  rate: number
  /** How many seconds the devices make readings. */
  duration: number
  /** FHIR Observations the readings are made from, used in turn. */
  templates: readonly Observation[]
  /** Directory holding one subdirectory per device. */
  directory: string
  /**
   * The directory of device `index`, when not `<directory>/device-<index>`: a fleet whose
   * devices each have their own directory (by serial, say) keeps each queue with its device.
   */
  directoryOf?: (index: number) => string
  /** Opens a device's connection to Ward, enrolling it first if need be. */
  connect: (device: SimulatedDevice) => Promise<SimulatedConnection>
  /** Most readings per request. Default 100. */
  batchSize?: number
  queue?: QueueOptions
  retry?: RetryOptions
  /** After `duration`, how many seconds to wait for queues to empty. Default 30. */
  drainSeconds?: number
  /** Receives the progress line printed every second, and the final one. Default: stdout. */
  progress?: (line: string) => void
  /** Ends the simulation early, as if `duration` had passed. */
  signal?: AbortSignal
}

/** What a simulation did, summed over its devices. */
export interface SimulationSummary {
  devices: number
  /** Readings made and durably enqueued. */
  generated: number
  /** Readings that could not be enqueued (queue full); counted, never silently dropped. */
  refused: number
  accepted: number
  duplicate: number
  rejected: number
  /** Readings still queued on the devices when the simulation ended. */
  queued: number
  retries: number
  seconds: number
}

interface RunningDevice {
  queue: DurableQueue
  agent: DeviceAgent
  connection: SimulatedConnection
  generated: number
  enqueues: Set<Promise<void>>
  templates: readonly Observation[]
}

/**
 * Runs `devices` simulated devices in this process, each with its own queue, identity and
 * agent. For `duration` seconds each device makes `rate` readings a second from the templates,
 * timed now (`effectiveDateTime`, or `effectivePeriod` shifted to end now) and named by the
 * message id the queue gives them; its agent delivers them as a real device would. Prints a
 * progress line every second, then waits up to `drainSeconds` for the queues to empty and
 * resolves with the totals. Readings still queued at the end stay in the device directories.
 */
export async function simulate(options: SimulateOptions): Promise<SimulationSummary> {
  checkOptions(options)
  const print = options.progress ?? ((line: string) => process.stdout.write(`${line}\n`))
  const started = Date.now()
  let refused = 0

  const devices: RunningDevice[] = []
  try {
    for (let index = 0; index < options.devices; index++) {
      const directory = options.directoryOf?.(index) ?? join(options.directory, `device-${index}`)
      const queue = await DurableQueue.open(join(directory, 'queue'), options.queue)
      let connection: SimulatedConnection
      try {
        connection = await options.connect({ index, directory })
      } catch (error) {
        await queue.close()
        throw error
      }
      const agentOptions = {
        queue,
        client: connection,
        ...(options.batchSize === undefined ? {} : { batchSize: options.batchSize }),
        ...(options.retry === undefined ? {} : { retry: options.retry }),
      }
      const agent = new DeviceAgent(agentOptions)
      agent.start()
      const templates =
        connection.templates !== undefined && connection.templates.length > 0
          ? connection.templates
          : options.templates
      devices.push({ queue, agent, connection, generated: 0, enqueues: new Set(), templates })
    }

    const generationStart = Date.now()
    const generate = () => {
      const elapsedSeconds = Math.min(options.duration, (Date.now() - generationStart) / 1000)
      const due = Math.floor(elapsedSeconds * options.rate)
      for (const device of devices) {
        while (device.generated < due) {
          device.generated++
          const template = device.templates[(device.generated - 1) % device.templates.length]!
          const enqueue = device.queue.enqueue(retime(template, new Date())).then(
            () => undefined,
            () => {
              refused++
            },
          )
          device.enqueues.add(enqueue)
          void enqueue.finally(() => device.enqueues.delete(enqueue))
        }
      }
    }

    let lastDelivered = 0
    const report = (final: boolean) => {
      const totals = sum(devices.map((device) => device.agent.counters))
      const delivered = totals.accepted + totals.duplicate + totals.rejected
      const seconds = Math.round((Date.now() - generationStart) / 1000)
      print(
        `${final ? 'done' : `${seconds}s`} devices=${devices.length} ` +
          `rate=${delivered - lastDelivered}/s accepted=${totals.accepted} ` +
          `duplicate=${totals.duplicate} rejected=${totals.rejected} queued=${totals.queued} ` +
          `retries=${totals.retries}`,
      )
      lastDelivered = delivered
    }

    const generator = setInterval(generate, Math.max(10, Math.min(100, 1000 / options.rate)))
    const reporter = setInterval(() => report(false), 1000)
    try {
      await waitFor(options.duration * 1000, options.signal)
      if (options.signal?.aborted !== true) generate()
    } finally {
      clearInterval(generator)
    }

    try {
      await Promise.all(devices.flatMap((device) => [...device.enqueues]))
      const deadline = AbortSignal.timeout((options.drainSeconds ?? 30) * 1000)
      const drainSignal =
        options.signal === undefined ? deadline : AbortSignal.any([deadline, options.signal])
      // Every agent listens on the one signal; that many listeners is expected, not a leak.
      setMaxListeners(devices.length + 10, drainSignal)
      await Promise.all(devices.map((device) => device.agent.drain(drainSignal))).catch(
        () => undefined,
      )
    } finally {
      clearInterval(reporter)
    }

    report(true)
    const totals = sum(devices.map((device) => device.agent.counters))
    return {
      devices: devices.length,
      generated: devices.reduce((total, device) => total + device.generated, 0) - refused,
      refused,
      accepted: totals.accepted,
      duplicate: totals.duplicate,
      rejected: totals.rejected,
      queued: totals.queued,
      retries: totals.retries,
      seconds: (Date.now() - started) / 1000,
    }
  } finally {
    for (const device of devices) {
      await device.agent.stop()
      device.connection.close?.()
      await device.queue.close()
    }
  }
}

/**
 * A copy of `template` timed at `now`: `effectivePeriod` keeps its length and ends at `now`;
 * otherwise `effectiveDateTime` becomes `now`. `issued`, when present, becomes `now` too.
 */
export function retime(template: Observation, now: Date): Observation {
  const observation = structuredClone(template)
  const at = now.toISOString()
  if (observation.effectivePeriod !== undefined) {
    const start = Date.parse(observation.effectivePeriod.start ?? '')
    const end = Date.parse(observation.effectivePeriod.end ?? '')
    const length = Number.isNaN(start) || Number.isNaN(end) ? 0 : Math.max(0, end - start)
    observation.effectivePeriod = {
      ...observation.effectivePeriod,
      start: new Date(now.getTime() - length).toISOString(),
      end: at,
    }
  } else {
    observation.effectiveDateTime = at
  }
  if (observation['issued'] !== undefined) observation['issued'] = at
  return observation
}

function sum(counters: readonly AgentCounters[]): AgentCounters {
  const total: AgentCounters = {
    sent: 0,
    accepted: 0,
    duplicate: 0,
    rejected: 0,
    queued: 0,
    retries: 0,
  }
  for (const each of counters) {
    total.sent += each.sent
    total.accepted += each.accepted
    total.duplicate += each.duplicate
    total.rejected += each.rejected
    total.queued += each.queued
    total.retries += each.retries
  }
  return total
}

function waitFor(milliseconds: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted === true) {
      resolve()
      return
    }
    const done = () => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, milliseconds)
    signal?.addEventListener('abort', done, { once: true })
  })
}

function checkOptions(options: SimulateOptions): void {
  const invalid = (field: string, rule: string) =>
    new WardError('ERR_INPUT_INVALID', `${field} must be ${rule}`, { details: { field } })
  if (!Number.isSafeInteger(options.devices) || options.devices < 1) {
    throw invalid('devices', 'a positive integer')
  }
  if (!Number.isFinite(options.rate) || options.rate <= 0) throw invalid('rate', 'positive')
  if (!Number.isFinite(options.duration) || options.duration <= 0) {
    throw invalid('duration', 'positive')
  }
  if (options.templates.length === 0) throw invalid('templates', 'at least one Observation')
  options.templates.forEach((template, index) => {
    if (!isObservation(template)) throw invalid(`templates[${index}]`, 'a FHIR Observation')
  })
}
