// The ingest benchmark's baselines, in their own process as Ward's server is: the same TLS and
// client certificates, then the batch parsed and its readings inserted as they are, with no
// checks, encryption or audit. Batches arriving together share one commit, as Ward's do, so
// that the comparison measures what Ward adds rather than how often each side waits for the
// disk. Prints its URL as a JSON line and serves until SIGTERM.
//
// BARE_SCHEMA picks the table. `minimal` (the default): the message id and the resource, one
// index. `ward`: Ward's own `observations` table with its primary key, unique message index,
// patient/time index and patient foreign key, the resource stored in clear where Ward stores
// it sealed, the patient and device taken from the client certificate; what is left between
// it and Ward is the checks, the sealing and the audit.
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { TLSSocket } from 'node:tls'

import SqliteDatabase from 'better-sqlite3'
import Fastify from 'fastify'

const env = (name: string) => {
  const value = process.env[name]
  if (value === undefined) throw new Error(`${name} is not set`)
  return value
}

const schema = process.env['BARE_SCHEMA'] ?? 'minimal'
if (schema !== 'minimal' && schema !== 'ward') throw new Error('BARE_SCHEMA is minimal or ward')

const plain = new SqliteDatabase(env('BARE_DATABASE'))
plain.pragma('journal_mode = WAL')
plain.pragma('synchronous = FULL')
plain.pragma('foreign_keys = ON')
plain.exec(`
  create table if not exists readings (message_id text primary key, body text not null);
  create table if not exists patients (
    organization_id text not null, id text not null, primary key (organization_id, id));
  create table if not exists observations (
    id text primary key, organization_id text not null, patient_id text not null,
    device_id text not null, message_id text not null, code text not null,
    effective_at text not null, received_at text not null, sealed_resource blob not null,
    foreign key (organization_id, patient_id) references patients (organization_id, id),
    unique (organization_id, device_id, message_id));
  create index if not exists observations_patient_effective_id
    on observations (organization_id, patient_id, effective_at, id);
`)
const insertMinimal = plain.prepare(
  'insert or ignore into readings (message_id, body) values (?, ?)',
)
const insertPatient = plain.prepare(
  "insert or ignore into patients (organization_id, id) values ('bench', ?)",
)
const insertObservation = plain.prepare(
  'insert into observations (id, organization_id, patient_id, device_id, message_id, code, ' +
    "effective_at, received_at, sealed_resource) values (?, 'bench', ?, ?, ?, ?, ?, ?, ?) " +
    'on conflict (organization_id, device_id, message_id) do nothing',
)

type Entry = { resource: Record<string, unknown> }
type Batch = { entries: Entry[]; device: string }
const insertAll = plain.transaction((batches: Batch[]) => {
  const receivedAt = new Date().toISOString()
  for (const { entries, device } of batches) {
    for (const entry of entries) {
      const resource = entry.resource
      const messageId = (resource['identifier'] as { value: string }[])[0]?.value ?? ''
      if (schema === 'minimal') {
        insertMinimal.run(messageId, JSON.stringify(resource))
        continue
      }
      const coding = (resource['code'] as { coding: { code: string }[] }).coding[0]
      insertObservation.run(
        timeOrderedId(),
        device,
        device,
        messageId,
        coding?.code ?? '',
        new Date(resource['effectiveDateTime'] as string).toISOString(),
        receivedAt,
        Buffer.from(JSON.stringify(resource)),
      )
    }
  }
})

// Ward's ids sort by time, so its primary key grows at its end; so do these.
function timeOrderedId(): string {
  const time = Date.now().toString(16).padStart(12, '0')
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${randomUUID().slice(15)}`
}

// Each client certificate stands for one device assigned to one patient.
const devices = new WeakMap<TLSSocket, string>()
function deviceOf(socket: TLSSocket): string {
  let device = devices.get(socket)
  if (device === undefined) {
    device = socket.getPeerCertificate().fingerprint256
    insertPatient.run(device)
    devices.set(socket, device)
  }
  return device
}

// Batches handed over while the event loop reads input are committed together once it is
// done, at most 32 a commit, as Ward's commit group does.
const pending: { batch: Batch; done: (error?: unknown) => void }[] = []
let scheduled = false
function commitPending(): void {
  scheduled = false
  const group = pending.splice(0, 32)
  try {
    insertAll(group.map((waiting) => waiting.batch))
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
function store(batch: Batch): Promise<void> {
  return new Promise((resolve, reject) => {
    pending.push({ batch, done: (error) => (error === undefined ? resolve() : reject(error)) })
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
  await store({ entries: body.entry, device: deviceOf(request.raw.socket as TLSSocket) })
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
