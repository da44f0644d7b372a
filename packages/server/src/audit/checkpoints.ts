import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import {
  WardError,
  bytesEqual,
  foldRight,
  emptyRoot,
  formatCheckpoint,
  formatVerifierKey,
  parseCheckpoint,
  parseVerifierKey,
  rootNodes,
  signNote,
  toHex,
  verifyNote,
  type NodeId,
} from '@ward/core'

import type { Transaction } from '../store/index.js'
import { findAuditLog, headRoot, nodeKey, readNodes, type AuditLogHead } from './log.js'

/** Signs checkpoints for one log; the keys domain supplies it. */
export interface CheckpointSigner {
  readonly name: string
  readonly keyId: Uint8Array
  readonly publicKey: Uint8Array
  sign(message: Uint8Array): Uint8Array
}

/**
 * Keeps the newest checkpoint Ward signed for each log somewhere the database cannot rewrite.
 * Before signing a new checkpoint Ward proves the log still extends that one, so somebody with
 * write access to the database alone cannot truncate or rewrite history and have Ward sign it.
 */
export interface CheckpointWitness {
  latest(logName: string): Promise<string | undefined>
  record(logName: string, note: string, size: number): Promise<void>
}

/** A checkpoint as signed. */
export interface SignedCheckpoint {
  readonly logName: string
  readonly size: number
  readonly rootHash: Uint8Array
  /** The C2SP signed note: checkpoint body, blank line, signature line. */
  readonly note: string
}

/**
 * A {@link CheckpointWitness} in Ward's home directory (`audit/<log>.checkpoint`), outside the
 * database. It only moves forward: an older checkpoint never replaces a newer one.
 */
export class HomeCheckpointWitness implements CheckpointWitness {
  readonly #directory: string

  constructor(home: string) {
    this.#directory = join(home, 'audit')
  }

  async latest(logName: string): Promise<string | undefined> {
    const path = this.#path(logName)
    return existsSync(path) ? readFileSync(path, 'utf8') : undefined
  }

  async record(logName: string, note: string, size: number): Promise<void> {
    const current = await this.latest(logName)
    if (current !== undefined && checkpointSize(current) > size) return
    mkdirSync(this.#directory, { recursive: true })
    const path = this.#path(logName)
    writeFileSync(`${path}.tmp`, note)
    renameSync(`${path}.tmp`, path)
  }

  #path(logName: string): string {
    return join(this.#directory, `${logName}.checkpoint`)
  }
}

function checkpointSize(note: string): number {
  const body = note.slice(0, note.indexOf('\n\n') + 1)
  return parseCheckpoint(body).size
}

/** The log's verifier key in signed-note form: `<origin>+<key id>+<base64 key>`. */
export function verifierKeyText(head: AuditLogHead, publicKey: Uint8Array): string {
  return formatVerifierKey(head.origin, publicKey)
}

/**
 * Signs a checkpoint of the log as it stands, after checking the store against itself and
 * against the witnessed checkpoint: the head must agree with the stored subtree hashes, and the
 * tree must extend the newest checkpoint signed before. Throws `ERR_LOG_INVALID` naming what
 * disagrees, and signs nothing, when either fails.
 */
export async function signCheckpoint(
  tx: Transaction,
  logName: string,
  signer: CheckpointSigner,
  witness: CheckpointWitness,
): Promise<SignedCheckpoint> {
  const head = await findAuditLog(tx, logName)
  const rootHash = headRoot(head)

  const stored = await storedRoot(tx, head, head.size)
  if (!bytesEqual(stored, rootHash)) {
    throw new WardError(
      'ERR_LOG_INVALID',
      `audit log ${logName}: the head row and the stored entries disagree at size ${head.size}`,
      { details: { log: logName, size: head.size } },
    )
  }

  const previous = await witness.latest(logName)
  if (previous !== undefined) {
    await checkExtends(tx, head, signer, previous)
  }

  const body = formatCheckpoint({ origin: head.origin, size: head.size, rootHash, extensions: [] })
  const note = signNote(body, signer)
  const signedAt = new Date().toISOString()
  await tx
    .insertInto('audit_checkpoints')
    .values({ log_id: head.id, size: head.size, root_hash: rootHash, note, signed_at: signedAt })
    .execute()
  await witness.record(logName, note, head.size)

  return { logName, size: head.size, rootHash, note }
}

/** The newest signed checkpoint of a log, if it has one. */
export async function latestCheckpoint(
  tx: Transaction,
  head: AuditLogHead,
): Promise<SignedCheckpoint | undefined> {
  const row = await tx
    .selectFrom('audit_checkpoints')
    .select(['size', 'root_hash', 'note'])
    .where('log_id', '=', head.id)
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst()
  if (row === undefined) return undefined
  return { logName: head.name, size: row.size, rootHash: row.root_hash, note: row.note }
}

/** The root of the first `size` entries, from the stored subtree hashes alone. */
export async function storedRoot(
  tx: Transaction,
  head: Pick<AuditLogHead, 'id' | 'name'>,
  size: number,
): Promise<Uint8Array> {
  if (size === 0) return emptyRoot()
  const nodes: NodeId[] = rootNodes(size)
  const hashes = await readNodes(tx, head, nodes)
  return foldRight(nodes.map((node) => hashes.get(nodeKey(node)) as Uint8Array))
}

async function checkExtends(
  tx: Transaction,
  head: AuditLogHead,
  signer: CheckpointSigner,
  previousNote: string,
): Promise<void> {
  const verifier = parseVerifierKey(formatVerifierKey(signer.name, signer.publicKey))
  const { text } = verifyNote(previousNote, [verifier])
  const previous = parseCheckpoint(text)

  if (previous.size > head.size) {
    throw new WardError(
      'ERR_LOG_INVALID',
      `audit log ${head.name} holds ${head.size} entries but checkpoint ${previous.size} was ` +
        'signed before: entries were removed',
      { details: { log: head.name, size: head.size, witnessed: previous.size } },
    )
  }
  const root = await storedRoot(tx, head, previous.size)
  if (!bytesEqual(root, previous.rootHash)) {
    throw new WardError(
      'ERR_LOG_INVALID',
      `audit log ${head.name} no longer matches its checkpoint at size ${previous.size} ` +
        `(root ${toHex(previous.rootHash)}): entries were changed`,
      { details: { log: head.name, witnessed: previous.size } },
    )
  }
}
