/**
 * A map that holds at most `capacity` entries, serves each for at most `ttlMs` milliseconds
 * after it was stored, and forgets the least recently used one first. Unwrapped keys live in
 * it, so these bounds are what limits how many keys sit in memory and for how long they are
 * used without being loaded again.
 */
export class ExpiringCache<K, V> {
  readonly #entries = new Map<K, { value: V; expiresAt: number }>()
  readonly #capacity: number
  readonly #ttlMs: number
  readonly #now: () => number

  constructor(capacity: number, ttlMs: number, now: () => number) {
    this.#capacity = capacity
    this.#ttlMs = ttlMs
    this.#now = now
  }

  /** The live entry for `key`, which becomes the most recently used; undefined when none. */
  get(key: K): V | undefined {
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    this.#entries.delete(key)
    if (entry.expiresAt <= this.#now()) return undefined
    this.#entries.set(key, entry)
    return entry.value
  }

  /**
   * Stores `value` for a full lifetime, evicting the least recently used entry when full and
   * dropping expired entries from the least recently used end as it goes.
   */
  set(key: K, value: V): void {
    this.#entries.delete(key)
    const now = this.#now()
    for (const [oldest, entry] of this.#entries) {
      if (entry.expiresAt > now) break
      this.#entries.delete(oldest)
    }
    if (this.#entries.size >= this.#capacity) {
      const oldest = this.#entries.keys().next()
      if (oldest.done !== true) this.#entries.delete(oldest.value)
    }
    this.#entries.set(key, { value, expiresAt: now + this.#ttlMs })
  }

  /** Removes `key`'s entry and returns its value, if it had one (expired or not). */
  take(key: K): V | undefined {
    const entry = this.#entries.get(key)
    this.#entries.delete(key)
    return entry?.value
  }

  /** Forgets every entry. */
  clear(): void {
    this.#entries.clear()
  }
}
