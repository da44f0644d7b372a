import type { FastifyInstance, FastifyReply } from 'fastify'

import { WardError, parseEntryBundlePath, parseTilePath, toHex, type TileId } from '@ward/core'

import {
  proveConsistency,
  proveInclusion,
  readEntryBundle,
  readHashTile,
} from '../../audit/index.js'
import type { Ward } from '../../ward.js'

const maxTreeSize = Number.MAX_SAFE_INTEGER

/**
 * The audit log over HTTPS, in the C2SP tlog-tiles layout `ward audit export` writes, plus
 * inclusion and consistency proofs as JSON of lowercase hex hashes. Tiles and bundles are
 * served for the tree of the newest signed checkpoint, so what a reader fetches always matches
 * the checkpoint it fetched first.
 */
export function auditRoutes(app: FastifyInstance, ward: Ward): void {
  app.get<{ Params: { log: string } }>('/audit/:log/checkpoint', async (request, reply) => {
    const checkpoint = await ward.currentCheckpoint(logName(request.params.log))
    return reply
      .type('text/plain; charset=utf-8')
      .header('cache-control', 'no-store')
      .send(checkpoint.note)
  })

  app.get<{ Params: { log: string; '*': string } }>(
    '/audit/:log/tile/*',
    async (request, reply) => {
      const bytes = await auditTile(ward, logName(request.params.log), request.params['*'])
      return sendTile(reply, bytes)
    },
  )

  app.get<{ Params: { log: string }; Querystring: Record<string, string> }>(
    '/audit/:log/proof/inclusion',
    async (request) => auditInclusionProof(ward, logName(request.params.log), request.query),
  )

  app.get<{ Params: { log: string }; Querystring: Record<string, string> }>(
    '/audit/:log/proof/consistency',
    async (request) => auditConsistencyProof(ward, logName(request.params.log), request.query),
  )
}

/**
 * The tile or entry bundle at `path` (what follows `tile/` in a tlog-tiles URL) of the tree of
 * log `name`'s newest signed checkpoint. `ERR_NOT_FOUND` for a path that is not a tile's
 * canonical spelling or lies beyond that tree.
 */
export async function auditTile(ward: Ward, name: string, path: string): Promise<Uint8Array> {
  const checkpoint = await ward.currentCheckpoint(name)
  const head = await ward.findAuditLog(name)
  const tile = parseTileUrl(path)
  return tile.level === 'entries'
    ? readEntryBundle(ward.store.db, head, tile, checkpoint.size)
    : readHashTile(ward.store.db, head, { ...tile, level: tile.level }, checkpoint.size)
}

/** Answers with a tile's bytes; a full tile never changes, a partial one is never rewritten. */
export function sendTile(reply: FastifyReply, bytes: Uint8Array): FastifyReply {
  return reply
    .type('application/octet-stream')
    .header('cache-control', 'private, max-age=31536000, immutable')
    .send(Buffer.from(bytes))
}

/**
 * The inclusion proof of entry `index` in the tree of `size` entries, hashes in hex. Like the
 * tiles, proofs reach only as far as the newest signed checkpoint: a tree Ward has not signed
 * proves nothing to its reader, and its size is not told.
 */
export async function auditInclusionProof(
  ward: Ward,
  name: string,
  query: Record<string, string>,
): Promise<InclusionProofAnswer> {
  const index = integerParameter(query, 'index')
  const size = integerParameter(query, 'size')
  await withinCheckpoint(ward, name, 'size', size)
  const head = await ward.findAuditLog(name)
  const proof = await proveInclusion(ward.store.db, head, index, size)
  return {
    index: proof.index,
    size: proof.size,
    leafHash: toHex(proof.leafHash),
    proof: proof.proof.map(toHex),
  }
}

/** The consistency proof between the trees of `from` and `to` entries, hashes in hex. */
export async function auditConsistencyProof(
  ward: Ward,
  name: string,
  query: Record<string, string>,
): Promise<ConsistencyProofAnswer> {
  const from = integerParameter(query, 'from')
  const to = integerParameter(query, 'to')
  await withinCheckpoint(ward, name, 'to', to)
  const head = await ward.findAuditLog(name)
  const proof = await proveConsistency(ward.store.db, head, from, to)
  return { from: proof.from, to: proof.to, proof: proof.proof.map(toHex) }
}

async function withinCheckpoint(ward: Ward, name: string, parameter: string, size: number) {
  const checkpoint = await ward.currentCheckpoint(name)
  if (size > checkpoint.size) {
    throw new WardError(
      'ERR_PROOF_RANGE',
      `query parameter ${parameter} is larger than the newest signed checkpoint (${checkpoint.size})`,
      { details: { parameter, checkpointSize: checkpoint.size } },
    )
  }
}

export interface InclusionProofAnswer {
  readonly index: number
  readonly size: number
  readonly leafHash: string
  readonly proof: string[]
}

export interface ConsistencyProofAnswer {
  readonly from: number
  readonly to: number
  readonly proof: string[]
}

function logName(text: string): string {
  if (!/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(text)) {
    throw new WardError('ERR_AUDIT_LOG_NOT_FOUND', 'no audit log by that name')
  }
  return text
}

function integerParameter(query: Record<string, string>, name: string): number {
  const text = query[name]
  if (text === undefined || !/^(0|[1-9]\d{0,15})$/.test(text) || Number(text) > maxTreeSize) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `query parameter ${name} must be a whole number from 0 to ${maxTreeSize}`,
      { details: { parameter: name } },
    )
  }
  return Number(text)
}

/**
 * Reads the part of a tile URL after `tile/` in its one canonical spelling. Any other path is
 * simply not there: 404, not 400, as for a static file tree.
 */
function parseTileUrl(rest: string): Omit<TileId, 'level'> & { level: number | 'entries' } {
  try {
    return rest.startsWith('entries/')
      ? { level: 'entries', ...parseEntryBundlePath(`tile/${rest}`) }
      : parseTilePath(`tile/${rest}`)
  } catch {
    throw new WardError('ERR_NOT_FOUND', 'no such tile path')
  }
}
