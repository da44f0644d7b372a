import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { request } from 'node:https'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  testConfig,
  type TestDatabase,
} from '../../test/support.js'
import { systemContext } from '../context.js'
import { createLogger } from '../logging/index.js'
import { initializeWard } from '../ward.js'
import { serveWard, type RunningWard } from './index.js'

for (const { dialect, skip } of dialects) {
  describe(`JSON request bodies on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let running: RunningWard
    let ca: Buffer

    // Posts `body` exactly as given, under `contentType`.
    const post = (path: string, contentType: string, body: string) =>
      new Promise<{ status: number; json: Record<string, unknown> }>((resolve, reject) => {
        const outgoing = request(
          new URL(path, running.url),
          { method: 'POST', ca, servername: 'localhost', headers: { 'content-type': contentType } },
          (incoming) => {
            const chunks: Buffer[] = []
            incoming.on('data', (chunk: Buffer) => chunks.push(chunk))
            incoming.on('end', () =>
              resolve({
                status: incoming.statusCode ?? 0,
                json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>,
              }),
            )
          },
        )
        outgoing.on('error', reject)
        outgoing.end(body)
      })

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      const config = testConfig(join(directory.path, 'home'), database.url, {
        WARD_HTTP_HOST: '127.0.0.1',
      })
      await initializeWard(config, systemContext('test'))
      running = await serveWard(config, createLogger('silent'))
      ca = readFileSync(config.http.certFile)
    })

    after(async () => {
      await running?.close()
      await database?.drop()
      directory?.remove()
    })

    test('reads an empty body sent as JSON as no body, so a route that needs one names what is missing', async () => {
      for (const type of ['application/json', 'application/fhir+json']) {
        // A bodiless request is judged on what it is: signing out everywhere without a session
        // is refused as unauthenticated, not as bad JSON.
        const signOut = await post('/auth/sign-out-everywhere', type, '')
        assert.equal(signOut.status, 401, type)
        assert.equal(signOut.json['code'], 'ERR_UNAUTHENTICATED', type)
        // A route that needs a body names what is missing from it, not its syntax.
        const signIn = await post('/auth/sign-in', type, '')
        assert.equal(signIn.status, 400, type)
        assert.equal(signIn.json['code'], 'ERR_INPUT_INVALID', type)
        assert.match(String(signIn.json['detail']), /^(login|password) must be/, type)
      }
    })

    test('still refuses a body that is not JSON, or that pollutes prototypes, saying which', async () => {
      const refusals: [string, string][] = [
        ['{', 'request body is not valid JSON'],
        [' ', 'request body is not valid JSON'],
        [
          '{"__proto__": {"admin": true}}',
          'request body must not hold __proto__ or constructor.prototype keys',
        ],
        [
          '{"constructor": {"prototype": {"admin": true}}}',
          'request body must not hold __proto__ or constructor.prototype keys',
        ],
      ]
      for (const [body, detail] of refusals) {
        const answer = await post('/auth/sign-in', 'application/json', body)
        assert.equal(answer.status, 400, body)
        assert.equal(answer.json['code'], 'ERR_PAYLOAD_INVALID', body)
        assert.equal(answer.json['detail'], detail, body)
      }
    })
  })
}
