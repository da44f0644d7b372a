import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { request } from 'node:https'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { connect } from 'node:tls'
import { after, before, describe, test } from 'node:test'

import {
  entryBundlePath,
  fromHex,
  parseCheckpoint,
  parseVerifierKey,
  tilePath,
  tilesForSize,
  entryBundlesForSize,
  verifyConsistency,
  verifyInclusion,
  verifyNote,
  verifyTileLog,
} from '@ward/core'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  testConfig,
  type TestDatabase,
} from '../../test/support.js'
import { appendAuditEvents, buildAuditEvent, storedRoot } from '../audit/index.js'
import { systemContext } from '../context.js'
import { createLogger } from '../logging/index.js'
import { initializeWard } from '../ward.js'
import { serveWard, type RunningWard } from './index.js'

interface Response {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

for (const { dialect, skip } of dialects) {
  describe(`HTTPS API on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let running: RunningWard
    let ca: Buffer
    let token: string
    const logLines: string[] = []

    const get = (path: string, headers: Record<string, string> = {}): Promise<Response> =>
      new Promise((resolve, reject) => {
        const url = new URL(path, running.url)
        const outgoing = request(url, { ca, headers, servername: 'localhost' }, (incoming) => {
          const chunks: Buffer[] = []
          incoming.on('data', (chunk: Buffer) => chunks.push(chunk))
          incoming.on('end', () =>
            resolve({
              status: incoming.statusCode ?? 0,
              headers: incoming.headers,
              body: Buffer.concat(chunks),
            }),
          )
        })
        outgoing.on('error', reject)
        outgoing.end()
      })
    const authorized = (path: string) => get(path, { authorization: `Bearer ${token}` })

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      const home = join(directory.path, 'home')
      const config = testConfig(home, database.url, { WARD_HTTP_HOST: '127.0.0.1' })
      await initializeWard(config, systemContext('test'))
      const sink = new Writable({
        write(chunk: Buffer, _encoding, done) {
          logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
          done()
        },
      })
      running = await serveWard(config, createLogger('info', sink))
      ca = readFileSync(config.http.certFile)
      token = readFileSync(join(home, 'operator-token'), 'utf8').trim()

      const ward = running.ward
      const events = Array.from({ length: 600 }, (_, i) =>
        buildAuditEvent(systemContext('test'), 'ward.test', {
          type: { code: '110100', display: 'Application Activity' },
          operation: `test.event-${i}`,
          action: 'E',
        }),
      )
      await ward.store.transaction((tx) =>
        appendAuditEvents(tx, ward.store.dialect, ward.entryKeys, 'platform', events),
      )
      await ward.signCheckpoint('platform')
    })

    after(async () => {
      await running.close()
      await database.drop()
      directory.remove()
    })

    test('answers health checks over TLS 1.3 with a request id', async () => {
      const response = await get('/health')
      assert.equal(response.status, 200)
      assert.deepEqual(JSON.parse(response.body.toString()), { status: 'ok' })
      assert.match(String(response.headers['x-request-id']), /^[0-9a-f-]{36}$/)
      assert.match(String(response.headers['strict-transport-security']), /max-age=/)
    })

    test('refuses a TLS 1.2 client when the floor is TLS 1.3', async () => {
      await assert.rejects(
        new Promise<void>((resolve, reject) => {
          const socket = connect({
            host: '127.0.0.1',
            port: running.port,
            ca,
            servername: 'localhost',
            maxVersion: 'TLSv1.2',
          })
          socket.on('secureConnect', () => {
            socket.destroy()
            resolve()
          })
          socket.on('error', reject)
        }),
      )
    })

    test('refuses audit reads without the operator token, as problem details', async () => {
      const attempts: Record<string, string>[] = [
        {},
        { authorization: 'Bearer wrong-token' },
        { authorization: `Basic ${token}` },
      ]
      for (const headers of attempts) {
        const response = await get('/audit/platform/checkpoint', headers)
        assert.equal(response.status, 401)
        assert.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8')
        assert.match(String(response.headers['www-authenticate']), /^Bearer/)
        const problem = JSON.parse(response.body.toString())
        assert.equal(problem.code, 'ERR_UNAUTHENTICATED')
        assert.equal(problem.status, 401)
        assert.equal(problem.requestId, response.headers['x-request-id'])
      }
      assert.equal((await get('/audit/platform/tile/0/000')).status, 401)
      assert.equal((await get('/audit/platform/proof/inclusion?index=0&size=1')).status, 401)
    })

    test('serves a signed checkpoint and a tile layout that verifies offline', async () => {
      const vkey = parseVerifierKey(await running.ward.verifierKey('platform'))
      const response = await authorized('/audit/platform/checkpoint')
      assert.equal(response.status, 200)
      const note = response.body.toString('utf8')
      const checkpoint = parseCheckpoint(verifyNote(note, [vkey]).text)
      assert.equal(checkpoint.origin, 'ward.test/platform')
      assert.ok(checkpoint.size > 600)

      const files = new Map<string, Uint8Array>([['checkpoint', response.body]])
      const paths = [
        ...tilesForSize(checkpoint.size).map((tile) => tilePath(tile)),
        ...entryBundlesForSize(checkpoint.size).map((tile) =>
          entryBundlePath(tile.index, tile.width),
        ),
      ]
      for (const path of paths) {
        const tile = await authorized(`/audit/platform/${path}`)
        assert.equal(tile.status, 200, path)
        files.set(path, tile.body)
      }
      const verified = verifyTileLog({ read: (path) => files.get(path), verifierKey: vkey })
      assert.equal(verified.size, checkpoint.size)
      assert.deepEqual(verified.rootHash, checkpoint.rootHash)
    })

    test('serves inclusion and consistency proofs that verify against the checkpoint', async () => {
      const vkey = parseVerifierKey(await running.ward.verifierKey('platform'))
      const note = (await authorized('/audit/platform/checkpoint')).body.toString('utf8')
      const { size, rootHash } = parseCheckpoint(verifyNote(note, [vkey]).text)

      const inclusion = JSON.parse(
        (
          await authorized(`/audit/platform/proof/inclusion?index=300&size=${size}`)
        ).body.toString(),
      )
      assert.equal(inclusion.index, 300)
      verifyInclusion({
        leafHash: fromHex(inclusion.leafHash),
        index: 300,
        size,
        proof: inclusion.proof.map(fromHex),
        root: rootHash,
      })

      const earlier = await authorized('/audit/platform/proof/consistency?from=7&to=' + size)
      const consistency = JSON.parse(earlier.body.toString())
      const head = await running.ward.findAuditLog('platform')
      const root1 = await storedRoot(running.ward.store.db, head, 7)
      verifyConsistency({
        size1: 7,
        size2: size,
        proof: consistency.proof.map(fromHex),
        root1,
        root2: rootHash,
      })
      assert.throws(() =>
        verifyConsistency({
          size1: 7,
          size2: size,
          proof: consistency.proof.map(fromHex),
          root1: rootHash,
          root2: rootHash,
        }),
      )
    })

    test('names the parameter at fault in a bad proof request', async () => {
      const bad = await authorized('/audit/platform/proof/inclusion?index=abc&size=3')
      assert.equal(bad.status, 400)
      const problem = JSON.parse(bad.body.toString())
      assert.equal(problem.code, 'ERR_INPUT_INVALID')
      assert.match(problem.detail, /index/)

      const beyond = await authorized('/audit/platform/proof/inclusion?index=0&size=99999999')
      assert.equal(beyond.status, 400)
      assert.equal(JSON.parse(beyond.body.toString()).code, 'ERR_PROOF_RANGE')

      assert.equal((await authorized('/audit/nobody/checkpoint')).status, 404)
      assert.equal((await authorized('/audit/platform/tile/0/x000/000')).status, 404)
      assert.equal((await authorized('/audit/platform/tile/0/999')).status, 404)
    })

    test('accepts the bearer scheme in any letter case', async () => {
      const response = await get('/audit/platform/checkpoint', { authorization: `bearer ${token}` })
      assert.equal(response.status, 200)
    })

    test('answers oversized headers with problem details', async () => {
      const response = await get('/health', { 'x-padding': 'a'.repeat(20_000) })
      assert.equal(response.status, 431)
      assert.equal(JSON.parse(response.body.toString()).code, 'ERR_INPUT_INVALID')
    })

    test('answers a path segment too long to be an id, and a URL that does not decode, as problem details', async () => {
      const marker = 'pt-toolongsegmentmarker'
      const long = await get(
        `/v1/organizations/acme/patients/${marker}${'a'.repeat(200)}/observations`,
      )
      assert.equal(long.status, 404)
      assert.equal(long.headers['content-type'], 'application/problem+json; charset=utf-8')
      assert.match(String(long.headers['x-request-id']), /^[0-9a-f-]{36}$/)
      assert.equal(long.headers['x-content-type-options'], 'nosniff')
      const problem = JSON.parse(long.body.toString()) as { code: string; detail: string }
      assert.equal(problem.code, 'ERR_NOT_FOUND')
      assert.ok(!long.body.toString().includes(marker), 'the answer repeats no part of the path')

      const malformed = await get('/v1/organizations/%E0%A4%A')
      assert.equal(malformed.status, 400)
      assert.equal(
        (JSON.parse(malformed.body.toString()) as { code: string }).code,
        'ERR_INPUT_INVALID',
      )
      assert.ok(
        logLines.every((line) => !line.includes(marker)),
        'the log holds no part of the path',
      )
      assert.ok(
        logLines.some((line) => line.includes('(unmatched)')),
        'they are logged',
      )
    })

    test('never writes the token or the authorization header into the service log', () => {
      assert.ok(logLines.length > 5)
      for (const line of logLines) {
        assert.ok(!line.includes(token), 'token in the log')
        assert.ok(!/authorization/i.test(line) || line.includes('[redacted]'), line)
        assert.doesNotThrow(() => JSON.parse(line))
      }
      assert.ok(logLines.some((line) => JSON.parse(line).msg === 'listening'))
    })
  })
}
