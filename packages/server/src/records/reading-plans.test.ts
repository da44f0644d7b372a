import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { CompiledQuery, type Compilable } from 'kysely'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  type TestDatabase,
} from '../../test/support.js'
import { openStore, type Store, type Transaction } from '../store/index.js'
import { pageSelect, type PageQuery } from './readings.js'

const patient = { id: '9d3c6f0e-3f1a-4c55-9a43-3f4a2b1c0d9e', organizationId: 'org-1' }
const after_ = {
  id: '0190f5a2-0000-7000-8000-000000000000',
  effectiveAt: '2026-03-01T08:00:00.000Z',
}

/** Every page query a read can make: both orders, with and without a cursor and codes. */
function pageQueries(): { label: string; query: PageQuery; cursor: boolean }[] {
  const queries: { label: string; query: PageQuery; cursor: boolean }[] = []
  for (const order of ['oldest-first', 'newest-first'] as const) {
    for (const cursor of [false, true]) {
      for (const codes of [[], ['http://loinc.org|8867-4']]) {
        queries.push({
          label: `${order}${cursor ? ', after a cursor' : ''}${codes.length > 0 ? ', by code' : ''}`,
          query: {
            range: { from: '2026-03-01T00:00:00.000Z', to: '2026-03-02T00:00:00.000Z' },
            codes,
            order,
            limit: 100,
          },
          cursor,
        })
      }
    }
  }
  return queries
}

async function plan(store: Store, tx: Transaction, query: Compilable): Promise<string> {
  const compiled = query.compile()
  if (store.dialect === 'sqlite') {
    const result = await tx.executeQuery<{ detail: string }>(
      CompiledQuery.raw(`explain query plan ${compiled.sql}`, [...compiled.parameters]),
    )
    return result.rows.map((row) => row.detail).join('\n')
  }
  const result = await tx.executeQuery<{ 'QUERY PLAN': string }>(
    CompiledQuery.raw(`explain ${compiled.sql}`, [...compiled.parameters]),
  )
  return result.rows.map((row) => row['QUERY PLAN']).join('\n')
}

for (const { dialect, skip } of dialects) {
  describe(`reading page plans on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let store: Store

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      store = await openStore({ url: database.url })
    })
    after(async () => {
      await store?.close()
      await database?.drop()
      directory.remove()
    })

    test('every page is one range of the patient-and-time index, in index order, unsorted', async () => {
      for (const { label, query, cursor } of pageQueries()) {
        const text = await store.transaction(async (tx) => {
          // An empty test table would make a sequential scan look cheapest to PostgreSQL;
          // the plan for a real table is what is checked.
          if (dialect === 'postgres')
            await tx.executeQuery(CompiledQuery.raw('set local enable_seqscan = off'))
          return plan(store, tx, pageSelect(tx, patient, query, cursor ? after_ : undefined))
        })
        assert.match(text, /observations_patient_effective_id/, `${label}:\n${text}`)
        assert.doesNotMatch(text, /TEMP B-TREE|Sort|Bitmap/, `${label}:\n${text}`)
      }
    })
  })
}
