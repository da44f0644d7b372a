/**
 * Audit log benchmark on the embedded SQLite store, against a plain-insert baseline measured
 * in the same run on the same machine:
 *
 * - appends per second (event validated, canonicalized, hashed into the tree, head updated)
 *   beside plain inserts of the same encoded rows into a table without the log, in
 *   transactions of 100 events and of one event;
 * - inclusion and consistency proof times at 1 thousand and 1 million entries;
 * - export of the whole log as tlog tiles, and offline verification of that export.
 *
 * `WARD_BENCH_EVENTS` sets the size of the big log (default 1,000,000).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'

import { sql } from 'kysely'

import {
  formatVerifierKey,
  parseVerifierKey,
  toHex,
  verifyConsistency,
  verifyInclusion,
} from '@ward/core'

import { verifyExport } from '../../cli/src/verify.js'
import {
  appendAuditEvents,
  buildAuditEvent,
  createAuditLog,
  exportTiles,
  findAuditLog,
  headRoot,
  proveConsistency,
  proveInclusion,
  storedRoot,
  EntryKeys,
  HomeCheckpointWitness,
  type AuditEvent,
} from '../src/audit/index.js'
import { systemContext } from '../src/context.js'
import { LocalKeyFileProvider, createSigningKey, loadNoteSigner } from '../src/keys/index.js'
import { openStore, type Store } from '../src/store/index.js'

const total = Number(process.env['WARD_BENCH_EVENTS'] ?? 1_000_000)
const batch = 100
const singles = 20_000
const directory = mkdtempSync(join(tmpdir(), 'ward-bench-'))

function makeEvents(count: number, label: string): AuditEvent[] {
  const context = {
    ...systemContext('bench'),
    actor: { type: 'device' as const, id: 'device:bench-0001' },
  }
  return Array.from({ length: count }, (_, i) =>
    buildAuditEvent(context, 'ward.bench', {
      type: { code: '110110', display: 'Patient Record' },
      operation: 'observation.create',
      action: 'C',
      entity: [
        {
          type: 'Observation',
          what: `obs-${label}-${i}`,
          patient: 'pseudonym-7f3a9c',
          detail: { count: 1 },
        },
      ],
    }),
  )
}

async function createLog(
  store: Store,
  entryKeys: EntryKeys,
  provider: LocalKeyFileProvider,
  name: string,
) {
  await store.transaction(async (tx) => {
    const key = await createSigningKey(tx, provider, 'audit-log')
    await createAuditLog(tx, entryKeys, {
      name,
      hostName: 'ward.bench',
      organizationId: null,
      signingKeyId: key.id,
    })
  })
}

async function appendAll(
  entryKeys: EntryKeys,
  store: Store,
  log: string,
  all: AuditEvent[],
  size: number,
): Promise<number> {
  const start = performance.now()
  for (let offset = 0; offset < all.length; offset += size) {
    await store.transaction((tx) =>
      appendAuditEvents(tx, store.dialect, entryKeys, log, all.slice(offset, offset + size)),
    )
  }
  return all.length / ((performance.now() - start) / 1000)
}

async function insertPlain(
  store: Store,
  plain: AuditEvent[],
  size: number,
  base: number,
): Promise<number> {
  const start = performance.now()
  for (let offset = 0; offset < plain.length; offset += size) {
    await store.transaction(async (tx) => {
      const rows = plain.slice(offset, offset + size).map((event, i) => ({
        log_id: 'plain',
        idx: base + offset + i,
        event_id: event.id,
        recorded_at: event.recorded,
        body: Buffer.from(JSON.stringify(event)),
      }))
      await tx
        .insertInto('bench_plain' as never)
        .values(rows as never)
        .execute()
    })
  }
  return plain.length / ((performance.now() - start) / 1000)
}

function timeEach(count: number, work: (i: number) => Promise<void>) {
  return async () => {
    const times: number[] = []
    for (let i = 0; i < count; i += 1) {
      const start = performance.now()
      await work(i)
      times.push(performance.now() - start)
    }
    times.sort((a, b) => a - b)
    return {
      mean: times.reduce((a, b) => a + b, 0) / times.length,
      p99: times[Math.floor(times.length * 0.99)] as number,
    }
  }
}

const format = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

async function main() {
  console.log(
    `Ward audit benchmark: ${format(total)} events, SQLite (WAL, synchronous=FULL), ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`,
  )
  const store = await openStore({ url: `sqlite:${join(directory, 'bench.db')}` })
  const provider = LocalKeyFileProvider.create(join(directory, 'master.key'))
  const entryKeys = new EntryKeys(provider)
  await sql`create table bench_plain (log_id text not null, idx integer not null, event_id text not null, recorded_at text not null, body blob not null, primary key (log_id, idx))`.execute(
    store.db,
  )
  await createLog(store, entryKeys, provider, 'big')
  await createLog(store, entryKeys, provider, 'small')

  const big = makeEvents(total, 'big')
  // The baseline is an ordinary audit table: each event serialized with JSON.stringify and
  // inserted, with no validation, canonical form, hashing or head row.

  // Interleave log and plain in slices so that neither runs on a warmer cache or a larger file.
  let appendRate = 0
  let plainRate = 0
  const slices = 10
  const slice = Math.ceil(total / slices)
  for (let s = 0; s < slices; s += 1) {
    const from = s * slice
    const to = Math.min(total, from + slice)
    appendRate += (await appendAll(entryKeys, store, 'big', big.slice(from, to), batch)) / slices
    plainRate += (await insertPlain(store, big.slice(from, to), batch, from)) / slices
  }
  console.log(
    `append, ${batch} events a transaction:  ${format(appendRate)} events/s; plain insert ${format(plainRate)} rows/s; cost ratio ${format(plainRate / appendRate, 2)}× a plain insert`,
  )

  const single = makeEvents(singles, 'single')
  const singleAppendRate = await appendAll(entryKeys, store, 'small', single, 1)
  const singlePlain = await insertPlain(store, single, 1, total)
  console.log(
    `append, 1 event a transaction:      ${format(singleAppendRate)} events/s; plain insert ${format(singlePlain)} rows/s; cost ratio ${format(singlePlain / singleAppendRate, 2)}× (each commit waits for fsync)`,
  )

  // A log of exactly a thousand entries for the small-log proof times.
  const thousand = 'thousand'
  await createLog(store, entryKeys, provider, thousand)
  await appendAll(entryKeys, store, thousand, makeEvents(1000, 'k'), batch)

  for (const [name, label] of [
    [thousand, '1 thousand'],
    ['big', format(total)],
  ] as const) {
    const head = await findAuditLog(store.db, name)
    const root = headRoot(head)
    const size = head.size
    const inclusion = await timeEach(2000, async (i) => {
      const index = (i * 7919) % size
      const proof = await proveInclusion(store.db, head, index, size)
      if (i < 50)
        verifyInclusion({ leafHash: proof.leafHash, index, size, proof: proof.proof, root })
    })()
    const consistency = await timeEach(2000, async (i) => {
      const from = 1 + ((i * 104729) % (size - 1))
      const proof = await proveConsistency(store.db, head, from, size)
      if (i < 20)
        verifyConsistency({
          size1: from,
          size2: size,
          proof: proof.proof,
          root1: await storedRoot(store.db, head, from),
          root2: root,
        })
    })()
    console.log(
      `proofs at ${label} entries (size ${format(size)}): inclusion mean ${format(inclusion.mean, 3)} ms, p99 ${format(inclusion.p99, 3)} ms; consistency mean ${format(consistency.mean, 3)} ms, p99 ${format(consistency.p99, 3)} ms`,
    )
  }

  const head = await findAuditLog(store.db, 'big')
  const witness = new HomeCheckpointWitness(directory)
  const signer = await loadNoteSigner(store.db, provider, head.signingKeyId, head.origin)
  let start = performance.now()
  const out = join(directory, 'export')
  const exported = await exportTiles({ store, entryKeys, signer, witness }, head, out)
  const exportSeconds = (performance.now() - start) / 1000
  console.log(
    `export of ${format(exported.size)} entries, every entry checked, checkpoint signed: ` +
      `${format(exportSeconds, 1)} s (${format(exported.size / exportSeconds)} entries/s), ` +
      `${format(exported.tiles)} hash tiles, ${format(exported.entryBundles)} entry bundles`,
  )

  start = performance.now()
  const result = verifyExport(
    out,
    parseVerifierKey(formatVerifierKey(head.origin, signer.publicKey)),
  )
  const verifySeconds = (performance.now() - start) / 1000
  console.log(
    `verify of ${format(result.size)} entries: ${format(verifySeconds, 1)} s (${format(result.size / verifySeconds)} entries/s), root ${toHex(result.rootHash)}`,
  )

  await store.close()
  rmSync(directory, { recursive: true, force: true })
}

main().catch((error: unknown) => {
  console.error(error)
  rmSync(directory, { recursive: true, force: true })
  process.exit(1)
})
