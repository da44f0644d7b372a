import { randomBytes } from 'node:crypto'

/**
 * Random bytes from Node's CSPRNG, fetched a block at a time. Each call into OpenSSL costs
 * about as much as sealing a small record, whatever the number of bytes asked for, so a
 * stream of small requests (a nonce per sealed reading) is served from one block until it is
 * used up and a new one is fetched.
 *
 * Every byte is handed out once. A block is never refilled: a new one is allocated, so a view
 * handed out earlier keeps its bytes. Nothing here is secret beyond what the caller makes of it
 * (nonces are stored in clear beside the ciphertext); a pool is not shared with other
 * processes, and Node never forks a running process, so no two holders see the same bytes.
 */
export class RandomPool {
  readonly #blockBytes: number
  #block: Buffer = Buffer.alloc(0)
  #offset = 0

  /** `blockBytes`: how many random bytes one call into the CSPRNG fetches; 4 KiB. */
  constructor(blockBytes = 4096) {
    this.#blockBytes = blockBytes
  }

  /** `count` fresh random bytes, never handed out before; a view, not to be written to. */
  take(count: number): Uint8Array {
    if (count > this.#blockBytes) return randomBytes(count)
    if (this.#offset + count > this.#block.length) {
      this.#block = randomBytes(this.#blockBytes)
      this.#offset = 0
    }
    const bytes = this.#block.subarray(this.#offset, this.#offset + count)
    this.#offset += count
    return bytes
  }
}
