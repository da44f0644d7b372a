import { EventEmitter } from 'node:events'

import { WardError } from '@ward/core'

import { DeliveryError } from './client.js'
import type { ReadingOutcome, ReadingSender, RenewableCertificate } from './client.js'
import type { DurableQueue, QueuedReading } from './queue.js'

/** How the agent waits before sending again after a failure. */
export interface RetryOptions {
  /** First backoff ceiling; each further failure in a row doubles it. Default 500 ms. */
  baseDelayMs?: number
  /** Highest backoff ceiling. Default 60 s. */
  maxDelayMs?: number
  /** Longest `Retry-After` the agent obeys; a longer one is cut to this. Default 10 min. */
  maxRetryAfterMs?: number
}

/** What a `DeviceAgent` needs. */
export interface DeviceAgentOptions {
  queue: DurableQueue
  client: ReadingSender
  /** Most readings in one request. Default 100. */
  batchSize?: number
  retry?: RetryOptions
  /** Source of randomness for jitter, in [0, 1). Default `Math.random`. */
  random?: () => number
  /**
   * The certificate to renew before it expires, usually the same `DeviceClient` as `client`.
   * Without it the agent never renews.
   */
  certificate?: RenewableCertificate
  /**
   * How far into its validity the certificate is renewed, as a fraction of its lifetime.
   * Default 2/3: a one-year certificate is renewed about four months before it expires, which
   * leaves room for a device that is offline for weeks.
   */
  renewAt?: number
  /** The clock, in milliseconds since the epoch. Default `Date.now`. */
  now?: () => number
}

/** Running totals of what the agent did, since it was made. */
export interface AgentCounters {
  /** Readings put on the wire, resends included. */
  sent: number
  /** Readings Ward stored on this agent's request (201). */
  accepted: number
  /** Readings Ward had stored before under the same message id (200). */
  duplicate: number
  /** Readings Ward refused, moved to the rejected log. */
  rejected: number
  /** Readings waiting in the queue now. */
  queued: number
  /** Waits before sending again after a failure or a deferred answer. */
  retries: number
}

/** Events a `DeviceAgent` emits. */
export interface AgentEvents {
  /** After every batch answered or failed, with the counters as they stand. */
  progress: [counters: AgentCounters]
  /** Before each wait, with what went wrong and how long the agent will wait. */
  retry: [error: unknown, delayMs: number]
  /** After the certificate was renewed. */
  renewed: []
  /** After a renewal failed, with why and how long until the agent tries again. */
  'renewal-failed': [error: unknown, retryInMs: number]
}

/**
 * Delivers a device's queued readings to Ward, oldest first, in batches, and keeps doing so as
 * new readings arrive until stopped.
 *
 * A reading leaves the queue only when Ward answered 201 or 200 for it (acknowledged) or
 * refused it for what it holds (moved to the rejected log, never resent). Everything else —
 * connection failures, 5xx, 429, 503, answers that cannot be read — leaves the batch in the
 * queue and the agent waits before sending it again: exponential backoff with full jitter, or
 * what `Retry-After` asks plus a little jitter. Resending is safe because Ward stores a reading
 * once per message id. A whole request refused for its content (400, 413, 422) is split in
 * halves until the reading at fault stands alone, and that one is rejected.
 *
 * Given a `certificate`, the agent also renews it once `renewAt` of its lifetime has passed,
 * before the next batch or while idle. The old certificate stays valid beside the new one, so
 * a failed renewal costs nothing but a later retry (backoff from a minute up to an hour).
 */
export class DeviceAgent extends EventEmitter<AgentEvents> {
  private readonly queue: DurableQueue
  private readonly client: ReadingSender
  private readonly batchSize: number
  private readonly baseDelayMs: number
  private readonly maxDelayMs: number
  private readonly maxRetryAfterMs: number
  private readonly random: () => number
  private readonly certificate: RenewableCertificate | undefined
  private readonly renewAt: number
  private readonly now: () => number
  private renewalFailures = 0
  private nextRenewalAttempt = 0
  private readonly totals = { sent: 0, accepted: 0, duplicate: 0, rejected: 0, retries: 0 }
  private readonly drainWaiters = new Set<DrainWaiter>()
  private abort = new AbortController()
  private running: Promise<void> | undefined
  private stopping = false
  private idle = false

  constructor(options: DeviceAgentOptions) {
    super()
    this.queue = options.queue
    this.client = options.client
    this.batchSize = positive(options.batchSize ?? 100, 'batchSize')
    this.baseDelayMs = positive(options.retry?.baseDelayMs ?? 500, 'retry.baseDelayMs')
    this.maxDelayMs = positive(options.retry?.maxDelayMs ?? 60_000, 'retry.maxDelayMs')
    this.maxRetryAfterMs = positive(
      options.retry?.maxRetryAfterMs ?? 600_000,
      'retry.maxRetryAfterMs',
    )
    this.random = options.random ?? Math.random
    this.certificate = options.certificate
    this.renewAt = options.renewAt ?? 2 / 3
    if (!(this.renewAt > 0 && this.renewAt < 1)) {
      throw new WardError('ERR_CONFIG_INVALID', 'agent option renewAt must be between 0 and 1', {
        details: { field: 'renewAt' },
      })
    }
    this.now = options.now ?? Date.now
  }

  /** The counters as they stand now. */
  get counters(): AgentCounters {
    return { ...this.totals, queued: this.queue.size }
  }

  /** Starts delivering in the background; does nothing when already started. */
  start(): void {
    if (this.running !== undefined) return
    this.stopping = false
    this.abort = new AbortController()
    this.running = this.run()
      .catch((error: unknown) => this.failDrains(error))
      .finally(() => {
        this.running = undefined
      })
  }

  /**
   * Starts the agent if needed and resolves once the queue is empty. Rejects with the signal's
   * reason when `signal` aborts first, and with `ERR_NOT_INITIALIZED` when the agent is
   * stopped first; either way nothing queued is lost.
   */
  drain(signal?: AbortSignal): Promise<void> {
    this.start()
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted === true) {
        reject(signal.reason)
        return
      }
      const waiter: DrainWaiter = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort)
          resolve()
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort)
          reject(error)
        },
      }
      const onAbort = () => {
        this.drainWaiters.delete(waiter)
        reject(signal?.reason)
      }
      // An idle agent with an empty queue will not look at it again until a reading arrives.
      if (this.idle && this.queue.size === 0) {
        resolve()
        return
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.drainWaiters.add(waiter)
    })
  }

  /**
   * Stops delivering: a wait ends at once and a request on the wire is abandoned, its readings
   * left in the queue to be sent again (harmlessly, by message id) after the next start.
   * Resolves when the agent no longer touches the queue.
   */
  async stop(): Promise<void> {
    this.stopping = true
    this.abort.abort()
    await this.running
    this.failDrains(
      new WardError('ERR_NOT_INITIALIZED', 'the agent stopped before the queue drained'),
    )
  }

  /**
   * How long to wait after the `attempt`-th failure in a row: full jitter below a ceiling that
   * doubles from `baseDelayMs` up to `maxDelayMs`; or, when Ward sent `Retry-After`, that delay
   * (cut to `maxRetryAfterMs`) plus up to `baseDelayMs` of jitter, so a fleet told the same
   * moment does not return in step.
   */
  delayFor(attempt: number, retryAfterMs?: number): number {
    if (retryAfterMs !== undefined) {
      return Math.min(retryAfterMs, this.maxRetryAfterMs) + this.random() * this.baseDelayMs
    }
    const ceiling = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.max(0, attempt - 1))
    return this.random() * ceiling
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal
    let failures = 0
    let batchLimit = this.batchSize

    while (!this.stopping) {
      await this.renewIfDue()
      let readings: QueuedReading[]
      try {
        readings = await this.queue.peek(batchLimit)
      } catch (error) {
        // The queue is closed or broken: nothing more can be delivered from it.
        this.failDrains(error)
        return
      }
      if (readings.length === 0) {
        for (const waiter of [...this.drainWaiters]) {
          this.drainWaiters.delete(waiter)
          waiter.resolve()
        }
        this.idle = true
        const untilRenewal = this.msUntilRenewal()
        await this.queue.waitForReadings(
          untilRenewal === undefined
            ? signal
            : AbortSignal.any([signal, AbortSignal.timeout(renewalCheckDelay(untilRenewal))]),
        )
        this.idle = false
        continue
      }

      let delayMs = 0
      let reason: unknown
      try {
        this.totals.sent += readings.length
        const outcomes = await this.client.sendBatch(readings, { signal })
        const deferred = await this.settle(outcomes)
        if (deferred > 0) {
          failures++
          delayMs = this.delayFor(failures)
          reason = new WardError('ERR_STORE_UNAVAILABLE', `${deferred} readings were deferred`)
        } else {
          failures = 0
          batchLimit = Math.min(this.batchSize, batchLimit * 2)
        }
      } catch (error) {
        if (this.stopping) break
        reason = error
        if (error instanceof DeliveryError && error.refusesContent) {
          if (readings.length > 1) {
            batchLimit = Math.max(1, Math.floor(readings.length / 2))
            continue
          }
          try {
            if (await this.queue.reject(readings[0]!.messageId, error.message)) {
              this.totals.rejected++
            }
            this.emit('progress', this.counters)
            continue
          } catch (rejectError) {
            reason = rejectError
          }
        }
        failures++
        delayMs = this.delayFor(
          failures,
          reason instanceof DeliveryError ? reason.retryAfterMs : undefined,
        )
      }

      this.emit('progress', this.counters)
      if (delayMs > 0 && !this.stopping) {
        this.totals.retries++
        this.emit('retry', reason, delayMs)
        await sleep(delayMs, signal)
      }
    }
  }

  /** Milliseconds until the certificate is due for renewal; undefined without a certificate. */
  private msUntilRenewal(): number | undefined {
    if (this.certificate === undefined) return undefined
    const { notBefore, notAfter } = this.certificate.certificateValidity()
    const due = notBefore.getTime() + (notAfter.getTime() - notBefore.getTime()) * this.renewAt
    return Math.max(due, this.nextRenewalAttempt) - this.now()
  }

  private async renewIfDue(): Promise<void> {
    const untilRenewal = this.msUntilRenewal()
    if (untilRenewal === undefined || untilRenewal > 0 || this.stopping) return
    try {
      await this.certificate?.renew()
      this.renewalFailures = 0
      this.nextRenewalAttempt = 0
      this.emit('renewed')
    } catch (error) {
      this.renewalFailures++
      const retryInMs = Math.min(3_600_000, 60_000 * 2 ** (this.renewalFailures - 1))
      this.nextRenewalAttempt = this.now() + retryInMs
      this.emit('renewal-failed', error, retryInMs)
    }
  }

  // Acknowledges what Ward stored and rejects what it refused, then says how many readings
  // remain unsettled and must be sent again.
  private async settle(outcomes: readonly ReadingOutcome[]): Promise<number> {
    const stored = outcomes.filter(
      (outcome) => outcome.result === 'accepted' || outcome.result === 'duplicate',
    )
    await this.queue.acknowledge(stored.map((outcome) => outcome.messageId))
    for (const outcome of stored) {
      if (outcome.result === 'accepted') this.totals.accepted++
      else this.totals.duplicate++
    }

    let deferred = 0
    for (const outcome of outcomes) {
      if (outcome.result === 'rejected') {
        if (
          await this.queue.reject(outcome.messageId, outcome.reason ?? `HTTP ${outcome.status}`)
        ) {
          this.totals.rejected++
        }
      } else if (outcome.result === 'deferred') {
        deferred++
      }
    }
    return deferred
  }

  private failDrains(error: unknown): void {
    for (const waiter of [...this.drainWaiters]) {
      this.drainWaiters.delete(waiter)
      waiter.reject(error)
    }
  }
}

interface DrainWaiter {
  resolve: () => void
  reject: (error: unknown) => void
}

function sleep(milliseconds: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve()
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, milliseconds)
    signal.addEventListener('abort', done, { once: true })
  })
}

// Idle, the agent wakes to renew: not sooner than a second, and at least hourly, so a clock
// that jumps forward is noticed and no timer exceeds what Node can schedule.
function renewalCheckDelay(untilRenewal: number): number {
  return Math.min(3_600_000, Math.max(1000, untilRenewal))
}

function positive(value: number, name: string): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new WardError('ERR_CONFIG_INVALID', `agent option ${name} must be a positive number`, {
      details: { field: name },
    })
  }
  return value
}
