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

import type { Store, Transaction } from '../store/index.js'
import type { EntryKeys } from './entry-keys.js'
import { headRoot, nodeKey, readNodes, type AuditLogHead } from './log.js'
import { checkEntries } from './store-check.js'

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
    mkdirSync(this.#directory, { recursive: true, mode: 0o700 })
    const path = this.#path(logName)
    const temporary = `${path}.${process.pid}.tmp`
    writeFileSync(temporary, note, { mode: 0o600, flag: 'wx' })
    renameSync(temporary, path)
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
 * Signs a checkpoint of the log — as it stands, or at `at` — after proving the store is
 * sound: the head agrees with the stored subtree hashes; the tree extends the newest
 * checkpoint signed before (kept by the witness, outside the database); and every entry
 * appended since that checkpoint is authentic (its entry authentication code verifies) and
 * hashes into the tree as stored. Throws `ERR_LOG_INVALID` naming what disagrees, and signs
 * nothing, when any of these fails.
 *
 * `at.entriesChecked` says the caller has just run that entry check itself (an export does,
 * as it reads every entry), so it is not run twice.
 *
 * Reads run outside any transaction (entries below the size never change); only recording the
 * checkpoint takes one, so signing never holds up appends.
 */
export async function signCheckpoint(
  store: Store,
  entryKeys: EntryKeys,
  head: AuditLogHead,
  signer: CheckpointSigner,
  witness: CheckpointWitness,
  at?: { readonly size: number; readonly rootHash: Uint8Array; readonly entriesChecked?: boolean },
): Promise<SignedCheckpoint> {
  const db = store.db
  const size = at?.size ?? head.size
  const rootHash = at?.rootHash ?? headRoot(head)
  if (at === undefined && !bytesEqual(await storedRoot(db, head, size), rootHash)) {
    throw new WardError(
      'ERR_LOG_INVALID',
      `audit log ${head.name}: the head row and the stored entries disagree at size ${size}`,
      { details: { log: head.name, size } },
    )
  }

  const previous = await witness.latest(head.name)
  const from = previous === undefined ? 0 : await checkExtends(db, head, signer, previous, size)
  const key = await entryKeys.key(head.id, head.wrappedEntryKey)
  const computed =
    at?.entriesChecked === true
      ? rootHash
      : foldOrEmpty(await checkEntries(db, head, key, { from, to: size }))
  if (!bytesEqual(computed, rootHash)) {
    throw new WardError(
      'ERR_LOG_INVALID',
      `audit log ${head.name}: the head row does not match the entries at size ${size}`,
      { details: { log: head.name, size } },
    )
  }

  const body = formatCheckpoint({ origin: head.origin, size, rootHash, extensions: [] })
  const note = signNote(body, signer)
  await store.transaction(async (tx) => {
    await tx
      .insertInto('audit_checkpoints')
      .values({
        log_id: head.id,
        size,
        root_hash: rootHash,
        note,
        signed_at: new Date().toISOString(),
      })
      .execute()
  })
  await witness.record(head.name, note, size)
  return { logName: head.name, size, rootHash, note }
}

/**
 * The newest checkpoint Ward signed for a log, as its witness keeps it. The database's copy
 * is history only: a checkpoint served or trusted always comes from the witness, which the
 * database cannot roll back.
 */
export async function latestCheckpoint(
  witness: CheckpointWitness,
  head: AuditLogHead,
): Promise<SignedCheckpoint | undefined> {
  const note = await witness.latest(head.name)
  if (note === undefined) return undefined
  const checkpoint = parseCheckpoint(note.slice(0, note.indexOf('\n\n') + 1))
  return { logName: head.name, size: checkpoint.size, rootHash: checkpoint.rootHash, note }
}

function foldOrEmpty(frontier: Uint8Array[]): Uint8Array {
  return frontier.length === 0 ? emptyRoot() : foldRight(frontier)
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
  db: Transaction,
  head: AuditLogHead,
  signer: CheckpointSigner,
  previousNote: string,
  size: number,
): Promise<number> {
  const verifier = parseVerifierKey(formatVerifierKey(signer.name, signer.publicKey))
  let text: string
  try {
    text = verifyNote(previousNote, [verifier]).text
  } catch (cause) {
    throw new WardError(
      'ERR_LOG_INVALID',
      `audit log ${head.name}: the checkpoint this home witnessed was not signed by the log's ` +
        "key in this database; Ward's home and its database do not belong together",
      { cause, details: { log: head.name } },
    )
  }
  const previous = parseCheckpoint(text)

  if (previous.size > size) {
    throw new WardError(
      'ERR_LOG_INVALID',
      `audit log ${head.name} holds ${size} entries but checkpoint ${previous.size} was ` +
        'signed before: entries were removed',
      { details: { log: head.name, size, witnessed: previous.size } },
    )
  }
  const root = await storedRoot(db, head, previous.size)
  if (!bytesEqual(root, previous.rootHash)) {
    throw new WardError(
      'ERR_LOG_INVALID',
      `audit log ${head.name} no longer matches its checkpoint at size ${previous.size} ` +
        `(root ${toHex(previous.rootHash)}): entries were changed`,
      { details: { log: head.name, witnessed: previous.size } },
    )
  }
  return previous.size
}
