import type { FastifyInstance } from 'fastify'

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
      const name = logName(request.params.log)
      const path = request.params['*']
      const checkpoint = await ward.currentCheckpoint(name)
      const head = await ward.findAuditLog(name)
      const tile = parseTileUrl(path)
      const bytes =
        tile.level === 'entries'
          ? await readEntryBundle(ward.store.db, head, tile, checkpoint.size)
          : await readHashTile(ward.store.db, head, { ...tile, level: tile.level }, checkpoint.size)
      // A full tile never changes; a partial one is replaced by a wider path, never rewritten.
      return reply
        .type('application/octet-stream')
        .header('cache-control', 'private, max-age=31536000, immutable')
        .send(Buffer.from(bytes))
    },
  )

  app.get<{ Params: { log: string }; Querystring: Record<string, string> }>(
    '/audit/:log/proof/inclusion',
    async (request) => {
      const index = integerParameter(request.query, 'index')
      const size = integerParameter(request.query, 'size')
      const head = await ward.findAuditLog(logName(request.params.log))
      const proof = await proveInclusion(ward.store.db, head, index, size)
      return {
        index: proof.index,
        size: proof.size,
        leafHash: toHex(proof.leafHash),
        proof: proof.proof.map(toHex),
      }
    },
  )

  app.get<{ Params: { log: string }; Querystring: Record<string, string> }>(
    '/audit/:log/proof/consistency',
    async (request) => {
      const from = integerParameter(request.query, 'from')
      const to = integerParameter(request.query, 'to')
      const head = await ward.findAuditLog(logName(request.params.log))
      const proof = await proveConsistency(ward.store.db, head, from, to)
      return { from: proof.from, to: proof.to, proof: proof.proof.map(toHex) }
    },
  )
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
