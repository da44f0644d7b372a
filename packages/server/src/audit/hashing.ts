import { createHash } from 'node:crypto'

const leafPrefix = Buffer.of(0x00)
const nodePrefix = Buffer.of(0x01)

/**
 * RFC 9162 hashes on Node's native SHA-256, for the append path. `@ward/core` hashes the same
 * way in portable JavaScript for verifiers; appends are the hot path, and OpenSSL's SHA-256 is
 * about twice as fast there. A test holds the two to identical answers.
 */
export function leafHash(entry: Uint8Array): Uint8Array {
  return createHash('sha256').update(leafPrefix).update(entry).digest()
}

/** RFC 9162 interior node hash, `SHA-256(0x01 ‖ left ‖ right)`, on Node's SHA-256. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return createHash('sha256').update(nodePrefix).update(left).update(right).digest()
}
