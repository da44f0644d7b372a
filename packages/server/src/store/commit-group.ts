import { sql } from 'kysely'

import type { Store, Transaction } from './store.js'

interface Pending {
  readonly work: (tx: Transaction) => Promise<unknown>
  readonly resolve: (value: unknown) => void
  readonly reject: (error: unknown) => void
}

/**
 * Runs many small units of work in shared transactions, so that units arriving together pay
 * for one durable commit instead of one each. A commit on SQLite waits for the disk with the
 * event loop blocked; under load that wait, not the work, is what caps the rate.
 *
 * Units handed over while the event loop is busy with other input are collected until it is
 * done with that input (`setImmediate`), then run one after another in one transaction, each
 * inside a savepoint of its own. Each unit is as isolated as in a transaction of its own: a unit
 * that fails is rolled back to its savepoint and its caller gets its error at once, while the
 * others go on. A unit's promise resolves only after the shared transaction committed, so what
 * its caller acknowledges is on disk; if the commit fails, every unit of the group fails.
 *
 * Units of one group see each other's writes, as transactions run one after another would.
 * `maxUnits` bounds a group, and with it how long the first unit of a group waits for the last.
 * A unit must not wait for a unit it hands over itself: that one runs only after it.
 */
export class CommitGroup {
  readonly #store: Store
  readonly #maxUnits: number
  #queue: Pending[] = []
  #scheduled = false
  #running = false

  constructor(store: Store, options: { readonly maxUnits?: number } = {}) {
    this.#store = store
    this.#maxUnits = options.maxUnits ?? 32
  }

  /** Runs `work` in the next shared transaction; resolves with its result once committed. */
  run<T>(work: (tx: Transaction) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ work, resolve: resolve as (value: unknown) => void, reject })
      this.#schedule()
    })
  }

  #schedule(): void {
    if (this.#scheduled || this.#running || this.#queue.length === 0) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      void this.#commitNext()
    })
  }

  async #commitNext(): Promise<void> {
    const group = this.#queue.splice(0, this.#maxUnits)
    this.#running = true
    const done: { unit: Pending; value: unknown }[] = []
    try {
      await this.#store.transaction(async (tx) => {
        for (const unit of group) {
          await sql`savepoint ward_commit_group`.execute(tx)
          let value: unknown
          try {
            value = await unit.work(tx)
          } catch (error) {
            // Should undoing fail, the transaction is no longer usable: the group fails.
            await sql`rollback to savepoint ward_commit_group`.execute(tx)
            await sql`release savepoint ward_commit_group`.execute(tx)
            unit.reject(error)
            continue
          }
          await sql`release savepoint ward_commit_group`.execute(tx)
          done.push({ unit, value })
        }
      })
      for (const { unit, value } of done) unit.resolve(value)
    } catch (error) {
      // Nothing of the group is stored. Units already rejected on their own keep their answer
      // (a promise settles once); every other unit shares this failure.
      for (const unit of group) unit.reject(error)
    } finally {
      this.#running = false
      this.#schedule()
    }
  }
}
