import { WardError, bytesEqual, rootNodes } from '@ward/core'

import type { Transaction } from '../store/index.js'
import { entryMacMatches } from './entry-keys.js'
import { leafHash, nodeHash } from './hashing.js'
import { nodeKey, readNodes, type AuditLogHead } from './log.js'

const hashSize = 32
const rowsPerQuery = 4096

/** One stored entry, checked. */
export interface CheckedEntry {
  readonly index: number
  readonly body: Uint8Array
  readonly hashes: Uint8Array
}

/**
 * Reads entries `from` … `to − 1` of a log in index order and checks each against everything
 * Ward wrote with it: the body hashes to the stored leaf hash, the entry's authentication code
 * verifies under the log's entry key, and every subtree hash the entry completes equals the
 * hash recomputed from the entries below it. Hands entries to `each` in chunks; throws `ERR_LOG_INVALID`
 * naming the first entry at fault. The subtrees left of `from` are taken from the store, so a
 * caller checking from a signed size should first prove those against that checkpoint.
 *
 * Returns the frontier of the tree of `to` entries, from which the root follows.
 */
export async function checkEntries(
  db: Transaction,
  head: AuditLogHead,
  entryKey: Uint8Array,
  range: { readonly from: number; readonly to: number },
  each: (entries: CheckedEntry[]) => void = () => undefined,
): Promise<Uint8Array[]> {
  const { from, to } = range
  const frontier: Uint8Array[] = []
  if (from > 0) {
    const nodes = rootNodes(from)
    const hashes = await readNodes(db, head, nodes)
    for (const node of nodes) frontier.push(hashes.get(nodeKey(node)) as Uint8Array)
  }

  for (let start = from; start < to; start += rowsPerQuery) {
    const end = Math.min(start + rowsPerQuery, to)
    const rows = await db
      .selectFrom('audit_entries')
      .select(['idx', 'body', 'hashes', 'mac'])
      .where('log_id', '=', head.id)
      .where('idx', '>=', start)
      .where('idx', '<', end)
      .orderBy('idx')
      .execute()

    const checked: CheckedEntry[] = []
    for (let index = start; index < end; index += 1) {
      const row = rows[index - start]
      if (row === undefined || row.idx !== index) throw fault(head, index, 'is missing')
      const leaf = leafHash(row.body)
      if (row.hashes.length < hashSize || !bytesEqual(leaf, row.hashes.subarray(0, hashSize))) {
        throw fault(head, index, 'has a body that does not match its leaf hash')
      }
      if (!entryMacMatches(entryKey, head.id, index, leaf, row.mac)) {
        throw fault(
          head,
          index,
          'has an authentication code that does not verify: Ward did not write it',
        )
      }

      let node = leaf
      let level = 0
      for (let rest = index; rest % 2 === 1; rest = Math.floor(rest / 2)) {
        const left = frontier.pop()
        if (left === undefined) throw fault(head, index, 'cannot be placed in the tree')
        node = nodeHash(left, node)
        level += 1
        const stored = row.hashes.subarray(level * hashSize, (level + 1) * hashSize)
        if (!bytesEqual(stored, node)) {
          throw fault(
            head,
            index,
            `holds a level-${level} subtree hash that does not match the entries below it`,
          )
        }
      }
      if (row.hashes.length !== (level + 1) * hashSize) {
        throw fault(head, index, 'holds more subtree hashes than its index completes')
      }
      frontier.push(node)
      checked.push({ index, body: row.body, hashes: row.hashes })
    }
    each(checked)
  }
  return frontier
}

function fault(head: AuditLogHead, index: number, what: string): WardError {
  return new WardError('ERR_LOG_INVALID', `audit log ${head.name}: entry ${index} ${what}`, {
    details: { log: head.name, entry: index },
  })
}
