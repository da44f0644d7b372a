import { WardError } from '@ward/core'

interface Bucket {
  tokens: number
  capacity: number
  updatedAt: number
}

/**
 * How many readings each device may still send: a token bucket per device that holds a
 * minute's worth of its model's `maxReadingsPerMinute` and refills at that rate. Every reading
 * sent counts, stored or rejected, so a device cannot flood Ward with readings it knows will
 * be refused.
 */
export class ReadingBudget {
  readonly #buckets = new Map<string, Bucket>()
  readonly #maxDevices: number

  constructor(maxDevices = 100_000) {
    this.#maxDevices = maxDevices
  }

  /**
   * Spends `readings` of the device's budget. Throws `ERR_RATE_LIMITED`, with the seconds until
   * enough has refilled in `details.retryAfterSeconds`, when the budget is short; and
   * `ERR_PAYLOAD_TOO_LARGE` when the batch is larger than a whole minute's budget, because
   * waiting would never make it fit and the device must send smaller batches instead.
   */
  take(deviceId: string, readings: number, perMinute: number, now = Date.now()): void {
    if (readings > perMinute) {
      throw new WardError(
        'ERR_PAYLOAD_TOO_LARGE',
        `this device's model allows ${perMinute} readings a minute; a batch of ${readings} ` +
          `can never fit, send at most ${perMinute} at a time`,
        { details: { limit: perMinute, entries: readings } },
      )
    }
    const bucket = this.#refilled(deviceId, perMinute, now)
    if (bucket.tokens < readings) {
      const retryAfterSeconds = Math.max(
        1,
        Math.ceil(((readings - bucket.tokens) * 60) / perMinute),
      )
      throw new WardError(
        'ERR_RATE_LIMITED',
        `more than ${perMinute} readings a minute from this device`,
        { details: { retryAfterSeconds } },
      )
    }
    bucket.tokens -= readings
  }

  #refilled(deviceId: string, capacity: number, now: number): Bucket {
    let bucket = this.#buckets.get(deviceId)
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxDevices) this.#forgetFull(now)
      bucket = { tokens: capacity, capacity, updatedAt: now }
      this.#buckets.set(deviceId, bucket)
      return bucket
    }
    const refill = ((now - bucket.updatedAt) * capacity) / 60_000
    bucket.tokens = Math.min(capacity, bucket.tokens + Math.max(0, refill))
    bucket.capacity = capacity
    bucket.updatedAt = now
    return bucket
  }

  #forgetFull(now: number) {
    // A full bucket is the same as no bucket: forgetting it changes nothing for its device.
    for (const [deviceId, bucket] of this.#buckets) {
      const refill = ((now - bucket.updatedAt) * bucket.capacity) / 60_000
      if (bucket.tokens + refill >= bucket.capacity) this.#buckets.delete(deviceId)
    }
    // Still full of devices mid-minute: start over rather than grow without bound.
    if (this.#buckets.size >= this.#maxDevices) this.#buckets.clear()
  }
}
