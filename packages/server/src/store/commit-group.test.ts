import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  type TestDatabase,
} from '../../test/support.js'
import { insertOrganization } from '../tenancy/index.js'
import { CommitGroup } from './commit-group.js'
import { openStore, type Store } from './store.js'

for (const { dialect, skip } of dialects) {
  describe(`commit groups on ${dialect}`, { skip }, () => {
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

    /** The store, counting the transactions it is asked for. */
    function counted(fail?: Error): { store: Store; transactions: () => number } {
      let transactions = 0
      return {
        store: {
          ...store,
          transaction: (work) => {
            transactions += 1
            return store.transaction(async (tx) => {
              const result = await work(tx)
              if (fail !== undefined) throw fail
              return result
            })
          },
        },
        transactions: () => transactions,
      }
    }

    const slugs = async (prefix: string) =>
      (await store.db.selectFrom('organizations').select('slug').execute())
        .map((row) => row.slug)
        .filter((slug) => slug.startsWith(prefix))
        .sort()

    test('units handed over together commit in one transaction and see each other', async () => {
      const { store: countedStore, transactions } = counted()
      const group = new CommitGroup(countedStore)
      const results = await Promise.all(
        ['ga', 'gb', 'gc'].map((slug) =>
          group.run(async (tx) => {
            const organization = await insertOrganization(tx, { slug, name: slug })
            const visible = await tx.selectFrom('organizations').select('slug').execute()
            return { id: organization.id, visible: visible.length }
          }),
        ),
      )
      assert.equal(transactions(), 1)
      assert.deepEqual(await slugs('g'), ['ga', 'gb', 'gc'])
      assert.deepEqual(
        results.map((result) => result.visible),
        [1, 2, 3],
      )
    })

    test('a unit that fails is rolled back alone and gets its own error', async () => {
      const group = new CommitGroup(store)
      const outcomes = await Promise.allSettled([
        group.run((tx) => insertOrganization(tx, { slug: 'fa', name: 'A' })),
        group.run(async (tx) => {
          await insertOrganization(tx, { slug: 'fb', name: 'B' })
          // The same slug again: this unit fails after writing.
          await insertOrganization(tx, { slug: 'fb', name: 'B again' })
        }),
        group.run((tx) => insertOrganization(tx, { slug: 'fc', name: 'C' })),
      ])
      assert.deepEqual(
        outcomes.map((outcome) => outcome.status),
        ['fulfilled', 'rejected', 'fulfilled'],
      )
      const failure = outcomes[1] as PromiseRejectedResult
      assert.equal((failure.reason as { code?: string }).code, 'ERR_ORGANIZATION_EXISTS')
      assert.deepEqual(await slugs('f'), ['fa', 'fc'])
    })

    test('no unit succeeds when the shared commit fails, and nothing is stored', async () => {
      const { store: failing } = counted(new Error('the disk is full'))
      const group = new CommitGroup(failing)
      const outcomes = await Promise.allSettled(
        ['ca', 'cb'].map((slug) => group.run((tx) => insertOrganization(tx, { slug, name: slug }))),
      )
      for (const outcome of outcomes) {
        assert.equal(outcome.status, 'rejected')
        assert.equal((outcome.reason as Error).message, 'the disk is full')
      }
      assert.deepEqual(await slugs('c'), [])
    })

    test('a group holds at most maxUnits units; later ones follow in the next', async () => {
      const { store: countedStore, transactions } = counted()
      const group = new CommitGroup(countedStore, { maxUnits: 2 })
      await Promise.all(
        ['ma', 'mb', 'mc', 'md', 'me'].map((slug) =>
          group.run((tx) => insertOrganization(tx, { slug, name: slug })),
        ),
      )
      assert.equal(transactions(), 3)
      assert.deepEqual(await slugs('m'), ['ma', 'mb', 'mc', 'md', 'me'])
    })

    test('a unit handed over while a group commits waits for the next group', async () => {
      const { store: countedStore, transactions } = counted()
      const group = new CommitGroup(countedStore)
      let late: Promise<unknown> | undefined
      await group.run(async (tx) => {
        late = group.run((inner) => insertOrganization(inner, { slug: 'lb', name: 'B' }))
        return insertOrganization(tx, { slug: 'la', name: 'A' })
      })
      await late
      assert.equal(transactions(), 2)
      assert.deepEqual(await slugs('l'), ['la', 'lb'])
    })
  })
}
