import { WardError } from '@ward/core'

/**
 * A fixed-window request counter per client address. It runs before anything else a request
 * touches — authentication, routing, the database — so refused and unknown requests count
 * too, and a flood of bad tokens costs the server almost nothing.
 */
export class AddressRateLimit {
  readonly #limit: number
  readonly #windowMs: number
  readonly #windows = new Map<string, { start: number; count: number }>()
  readonly #maxAddresses: number

  constructor(limit: number, windowMs = 60_000, maxAddresses = 100_000) {
    this.#limit = limit
    this.#windowMs = windowMs
    this.#maxAddresses = maxAddresses
  }

  /**
   * Counts one request from `address`; throws `ERR_RATE_LIMITED`, with the seconds until the
   * window ends in `details.retryAfterSeconds`, once the limit is passed.
   */
  take(address: string, now = Date.now()): void {
    let window = this.#windows.get(address)
    if (window === undefined || now - window.start >= this.#windowMs) {
      if (this.#windows.size >= this.#maxAddresses) this.#forgetExpired(now)
      window = { start: now, count: 0 }
      this.#windows.set(address, window)
    }
    window.count += 1
    if (window.count > this.#limit) {
      const retryAfterSeconds = Math.max(1, Math.ceil((window.start + this.#windowMs - now) / 1000))
      throw new WardError(
        'ERR_RATE_LIMITED',
        `more than ${this.#limit} requests a minute from this address`,
        { details: { retryAfterSeconds } },
      )
    }
  }

  /**
   * Throws `ERR_RATE_LIMITED` as {@link take} would if `address` has used up its window
   * already, without counting anything: for limits on outcomes, counted only once known.
   */
  check(address: string, now = Date.now()): void {
    const window = this.#windows.get(address)
    if (window === undefined || now - window.start >= this.#windowMs) return
    if (window.count >= this.#limit) {
      const retryAfterSeconds = Math.max(1, Math.ceil((window.start + this.#windowMs - now) / 1000))
      throw new WardError(
        'ERR_RATE_LIMITED',
        `more than ${this.#limit} requests a minute from this address`,
        { details: { retryAfterSeconds } },
      )
    }
  }

  #forgetExpired(now: number) {
    for (const [address, window] of this.#windows) {
      if (now - window.start >= this.#windowMs) this.#windows.delete(address)
    }
    // Still full of live windows: start over rather than grow without bound.
    if (this.#windows.size >= this.#maxAddresses) this.#windows.clear()
  }
}
