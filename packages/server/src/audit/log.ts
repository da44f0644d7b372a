import { randomUUID } from 'node:crypto'

import { WardError, concatBytes, emptyRoot, foldRight, type NodeId } from '@ward/core'

import type { OperationContext } from '../context.js'
import type { Dialect, Transaction } from '../store/index.js'
import {
  buildAuditEvent,
  encodeAuditEvent,
  type AuditEvent,
  type AuditEventInput,
} from './event.js'
import { entryMac, type EntryKeys } from './entry-keys.js'
import { leafHash, nodeHash } from './hashing.js'

const hashSize = 32

/** The head of one audit log: where it stands now. */
export interface AuditLogHead {
  readonly id: string
  readonly name: string
  readonly origin: string
  readonly organizationId: string | null
  readonly signingKeyId: string
  readonly size: number
  /** Hashes of the complete subtrees that make up the tree, left to right. */
  readonly frontier: readonly Uint8Array[]
  /** The entry key, wrapped under the master key (see `EntryKeys`). */
  readonly wrappedEntryKey: Uint8Array
}

/** Where an appended event landed. */
export interface AppendedEvent {
  readonly logName: string
  readonly index: number
  readonly eventId: string
}

/** The name of the operator's own log; organization logs are named by their slug. */
export const platformLogName = 'platform'

/**
 * Creates an empty log named `name` whose checkpoints are signed by `signingKeyId`. The origin
 * line of its checkpoints is `<hostName>/<name>`, fixed at creation so that a later change of
 * host name cannot make old checkpoints unverifiable.
 */
export async function createAuditLog(
  tx: Transaction,
  entryKeys: EntryKeys,
  input: {
    readonly name: string
    readonly hostName: string
    readonly organizationId: string | null
    readonly signingKeyId: string
  },
): Promise<AuditLogHead> {
  const head: AuditLogHead = {
    id: randomUUID(),
    name: input.name,
    origin: `${input.hostName}/${input.name}`,
    organizationId: input.organizationId,
    signingKeyId: input.signingKeyId,
    size: 0,
    frontier: [],
    wrappedEntryKey: new Uint8Array(0),
  }
  await tx
    .insertInto('audit_logs')
    .values({
      id: head.id,
      name: head.name,
      origin: head.origin,
      organization_id: head.organizationId,
      signing_key_id: head.signingKeyId,
      size: 0,
      frontier: new Uint8Array(0),
      wrapped_entry_key: await entryKeys.create(head.id),
      created_at: new Date().toISOString(),
    })
    .execute()
  return findAuditLog(tx, head.name)
}

/** The log named `name`, or `ERR_AUDIT_LOG_NOT_FOUND`. */
export async function findAuditLog(tx: Transaction, name: string): Promise<AuditLogHead> {
  const row = await tx
    .selectFrom('audit_logs')
    .selectAll()
    .where('name', '=', name)
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError('ERR_AUDIT_LOG_NOT_FOUND', `no audit log named ${name}`, {
      details: { log: name },
    })
  }
  return toHead(row)
}

/** True when a log named `name` exists. */
export async function hasAuditLog(tx: Transaction, name: string): Promise<boolean> {
  const row = await tx
    .selectFrom('audit_logs')
    .select('id')
    .where('name', '=', name)
    .executeTakeFirst()
  return row !== undefined
}

/** Every log, platform first. */
export async function listAuditLogs(tx: Transaction): Promise<AuditLogHead[]> {
  const rows = await tx.selectFrom('audit_logs').selectAll().orderBy('created_at').execute()
  return rows
    .map(toHead)
    .sort((a, b) => Number(b.name === platformLogName) - Number(a.name === platformLogName))
}

/**
 * Appends events to the log named `logName` inside the caller's transaction: if the caller's
 * work fails, the events vanish with it, and if appending fails, the caller's work rolls back.
 * Appends to one log serialize on its head row; each costs one row insert plus the head update,
 * however large the log.
 */
export async function appendAuditEvents(
  tx: Transaction,
  dialect: Dialect,
  entryKeys: EntryKeys,
  logName: string,
  events: readonly AuditEvent[],
): Promise<AppendedEvent[]> {
  if (events.length === 0) return []
  const encoded = events.map((event) => encodeAuditEvent(event))
  const head = await lockHead(tx, dialect, logName)
  const key = await entryKeys.key(head.id, head.wrappedEntryKey)

  const frontier = [...head.frontier]
  let size = head.size
  const rows = encoded.map((body, position) => {
    const leaf = leafHash(body)
    const completed: Uint8Array[] = [leaf]
    let node = leaf
    // The new leaf completes one subtree for every trailing one bit of its index.
    for (let index = size; index % 2 === 1; index = Math.floor(index / 2)) {
      const left = frontier.pop()
      if (left === undefined) throw corruptHead(head.name)
      node = nodeHash(left, node)
      completed.push(node)
    }
    frontier.push(node)
    const event = events[position] as AuditEvent
    const row = {
      log_id: head.id,
      idx: size,
      event_id: event.id,
      recorded_at: event.recorded,
      body,
      hashes: concatBytes(...completed),
      mac: entryMac(key, head.id, size, leaf),
    }
    size += 1
    return row
  })

  for (let start = 0; start < rows.length; start += 500) {
    await tx
      .insertInto('audit_entries')
      .values(rows.slice(start, start + 500))
      .execute()
  }
  await tx
    .updateTable('audit_logs')
    .set({ size, frontier: concatBytes(...frontier) })
    .where('id', '=', head.id)
    .execute()

  return rows.map((row) => ({ logName: head.name, index: row.idx, eventId: row.event_id }))
}

/**
 * Records one operation's audit event in `logName`, built from its context. The usual way for
 * a domain to audit what it just did, in the same transaction.
 */
export async function recordAuditEvent(
  tx: Transaction,
  dialect: Dialect,
  entryKeys: EntryKeys,
  logName: string,
  context: OperationContext,
  site: string,
  input: AuditEventInput,
): Promise<AppendedEvent> {
  const [appended] = await appendAuditEvents(tx, dialect, entryKeys, logName, [
    buildAuditEvent(context, site, input),
  ])
  return appended as AppendedEvent
}

/** The tree's root hash computed from the head's frontier. */
export function headRoot(head: AuditLogHead): Uint8Array {
  return head.frontier.length === 0 ? emptyRoot() : foldRight([...head.frontier])
}

/**
 * Fetches complete-subtree hashes by node, in one query. A node at level L and index k was
 * completed by leaf (k+1)·2^L − 1 and sits in that entry's `hashes` at offset 32·L. Throws
 * `ERR_LOG_INVALID` when the store lacks a node it should hold.
 */
export async function readNodes(
  tx: Transaction,
  head: Pick<AuditLogHead, 'id' | 'name'>,
  nodes: readonly NodeId[],
): Promise<Map<string, Uint8Array>> {
  const found = new Map<string, Uint8Array>()
  if (nodes.length === 0) return found
  const entryOf = (node: NodeId) => (node.index + 1) * 2 ** node.level - 1
  const indexes = [...new Set(nodes.map(entryOf))]

  const rows = await tx
    .selectFrom('audit_entries')
    .select(['idx', 'hashes'])
    .where('log_id', '=', head.id)
    .where('idx', 'in', indexes)
    .execute()
  const byIndex = new Map(rows.map((row) => [row.idx, row.hashes]))

  for (const node of nodes) {
    const hashes = byIndex.get(entryOf(node))
    const offset = node.level * hashSize
    if (hashes === undefined || hashes.length < offset + hashSize) {
      throw new WardError(
        'ERR_LOG_INVALID',
        `audit log ${head.name} is missing the hash of entry ${entryOf(node)} at level ${node.level}`,
        { details: { log: head.name, entry: entryOf(node), level: node.level } },
      )
    }
    found.set(nodeKey(node), new Uint8Array(hashes.subarray(offset, offset + hashSize)))
  }
  return found
}

/** Map key for a node. */
export function nodeKey(node: NodeId): string {
  return `${node.level}/${node.index}`
}

async function lockHead(tx: Transaction, dialect: Dialect, name: string): Promise<AuditLogHead> {
  const query = tx.selectFrom('audit_logs').selectAll().where('name', '=', name)
  // SQLite's transaction already holds the database write lock (BEGIN IMMEDIATE).
  const row = await (dialect === 'postgres' ? query.forUpdate() : query).executeTakeFirst()
  if (row === undefined) {
    throw new WardError('ERR_AUDIT_LOG_NOT_FOUND', `no audit log named ${name}`, {
      details: { log: name },
    })
  }
  return toHead(row)
}

function toHead(row: {
  id: string
  name: string
  origin: string
  organization_id: string | null
  signing_key_id: string
  size: number
  frontier: Uint8Array
  wrapped_entry_key: Uint8Array
}): AuditLogHead {
  // A tree of n leaves is made of one complete subtree per one bit of n.
  const size = Number(row.size)
  if (row.frontier.length !== onesIn(size) * hashSize) throw corruptHead(row.name)
  const frontier: Uint8Array[] = []
  for (let offset = 0; offset < row.frontier.length; offset += hashSize) {
    frontier.push(new Uint8Array(row.frontier.subarray(offset, offset + hashSize)))
  }
  return {
    id: row.id,
    name: row.name,
    origin: row.origin,
    organizationId: row.organization_id,
    signingKeyId: row.signing_key_id,
    size,
    frontier,
    wrappedEntryKey: row.wrapped_entry_key,
  }
}

function onesIn(value: number): number {
  let ones = 0
  for (let rest = value; rest > 0; rest = Math.floor(rest / 2)) ones += rest % 2
  return ones
}

function corruptHead(name: string): WardError {
  return new WardError('ERR_LOG_INVALID', `audit log ${name} has a damaged head row`, {
    details: { log: name },
  })
}
