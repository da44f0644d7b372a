// The ingest benchmark's baseline, in its own process as Ward's server is: the same TLS and
// client certificates, then the batch parsed and its readings inserted as they are, with no
// checks, encryption or audit. Batches arriving together share one commit, as Ward's do, so
// that the comparison measures what Ward adds rather than how often each side waits for the
// disk. Prints its URL as a JSON line and serves until SIGTERM.
import { readFileSync } from 'node:fs'

import SqliteDatabase from 'better-sqlite3'
import Fastify from 'fastify'

const env = (name: string) => {
  const value = process.env[name]
  if (value === undefined) throw new Error(`${name} is not set`)
  return value
}

const plain = new SqliteDatabase(env('BARE_DATABASE'))
plain.pragma('journal_mode = WAL')
plain.pragma('synchronous = FULL')
plain.exec('create table if not exists readings (message_id text primary key, body text not null)')
const insert = plain.prepare('insert or ignore into readings (message_id, body) values (?, ?)')
type Entry = { resource: Record<string, unknown> }
const insertAll = plain.transaction((batches: Entry[][]) => {
  for (const entries of batches) {
    for (const entry of entries) {
      const identifier = (entry.resource['identifier'] as { value: string }[])[0]?.value ?? ''
      insert.run(identifier, JSON.stringify(entry.resource))
    }
  }
})

// Batches handed over while the event loop reads input are committed together once it is
// done, at most 32 a commit, as Ward's commit group does.
const pending: { entries: Entry[]; done: (error?: unknown) => void }[] = []
let scheduled = false
function commitPending(): void {
  scheduled = false
  const group = pending.splice(0, 32)
  try {
    insertAll(group.map((batch) => batch.entries))
    for (const batch of group) batch.done()
  } catch (error) {
    for (const batch of group) batch.done(error)
  }
  schedule()
}
function schedule(): void {
  if (scheduled || pending.length === 0) return
  scheduled = true
  setImmediate(commitPending)
}
function store(entries: Entry[]): Promise<void> {
  return new Promise((resolve, reject) => {
    pending.push({ entries, done: (error) => (error === undefined ? resolve() : reject(error)) })
    schedule()
  })
}

const app = Fastify({
  https: {
    key: readFileSync(env('BARE_KEY_FILE')),
    cert: readFileSync(env('BARE_CERT_FILE')),
    ca: readFileSync(env('BARE_CA_FILE')),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
  },
  bodyLimit: 4 * 1024 * 1024,
})
app.addContentTypeParser('application/fhir+json', { parseAs: 'string' }, (_request, body, done) => {
  try {
    done(null, JSON.parse(body as string))
  } catch (error) {
    done(error as Error)
  }
})
app.post('/v1/observations', async (request, reply) => {
  const body = request.body as { entry: Entry[] }
  await store(body.entry)
  const entry = body.entry.map(() => ({ response: { status: '201 Created' } }))
  return reply
    .type('application/fhir+json')
    .send({ resourceType: 'Bundle', type: 'batch-response', entry })
})
await app.listen({ host: '127.0.0.1', port: 0 })
const { port } = app.server.address() as { port: number }
process.stdout.write(`${JSON.stringify({ msg: 'listening', url: `https://127.0.0.1:${port}` })}\n`)
process.once('SIGTERM', () => {
  void app.close().then(() => process.exit(0))
})
