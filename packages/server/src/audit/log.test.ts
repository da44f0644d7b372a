import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import {
  TILE_WIDTH,
  WardError,
  concatBytes,
  hashChildren,
  hashLeaf,
  verifyConsistency,
  verifyInclusion,
} from '@ward/core'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  type TestDatabase,
} from '../../test/support.js'
import { systemContext } from '../context.js'
import { LocalKeyFileProvider, createSigningKey, loadNoteSigner } from '../keys/index.js'
import { openStore, type Store } from '../store/index.js'
import {
  EntryKeys,
  appendAuditEvents,
  buildAuditEvent,
  createAuditLog,
  encodeAuditEvent,
  findAuditLog,
  headRoot,
  proveConsistency,
  proveInclusion,
  readEntryBundle,
  readHashTile,
  signCheckpoint,
  storedRoot,
  type AuditEvent,
  type CheckpointWitness,
} from './index.js'

const site = 'ward.test'

function event(operation: string): AuditEvent {
  return buildAuditEvent(systemContext('test'), site, {
    type: { code: '110100', display: 'Application Activity' },
    operation,
    action: 'E',
  })
}

class MemoryWitness implements CheckpointWitness {
  notes = new Map<string, string>()
  async latest(name: string) {
    return this.notes.get(name)
  }
  async record(name: string, note: string) {
    this.notes.set(name, note)
  }
}

for (const { dialect, skip } of dialects) {
  describe(`audit log on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let store: Store
    let provider: LocalKeyFileProvider
    let entryKeys: EntryKeys
    const bodies: Uint8Array[] = []

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      store = await openStore({ url: database.url })
      provider = LocalKeyFileProvider.create(`${directory.path}/master.key`)
      entryKeys = new EntryKeys(provider)
      await store.transaction(async (tx) => {
        const key = await createSigningKey(tx, provider, 'audit-log')
        await createAuditLog(tx, entryKeys, {
          name: 'platform',
          hostName: site,
          organizationId: null,
          signingKeyId: key.id,
        })
      })
    })

    after(async () => {
      await store.close()
      await database.drop()
      directory.remove()
    })

    test('appends events whose stored tree matches an independent RFC 9162 computation', async () => {
      for (let batch = 0; batch < 12; batch += 1) {
        const events = Array.from({ length: 1 + batch * 7 }, (_, i) => event(`test.${batch}.${i}`))
        await store.transaction((tx) =>
          appendAuditEvents(tx, store.dialect, entryKeys, 'platform', events),
        )
        bodies.push(...events.map((item) => encodeAuditEvent(item)))
      }
      const head = await findAuditLog(store.db, 'platform')
      assert.equal(head.size, bodies.length)

      const leaves = bodies.map((body) => hashLeaf(body))
      const expected = referenceRoot(leaves, 0, leaves.length)
      assert.deepEqual(headRoot(head), expected)
      assert.deepEqual(await storedRoot(store.db, head, head.size), expected)
      assert.deepEqual(await storedRoot(store.db, head, 100), referenceRoot(leaves, 0, 100))
    })

    test('serves inclusion and consistency proofs that verify against the roots', async () => {
      const head = await findAuditLog(store.db, 'platform')
      const leaves = bodies.map((body) => hashLeaf(body))
      for (const size of [1, 2, 7, 64, 255, 256, head.size]) {
        if (size > head.size) continue
        const root = referenceRoot(leaves, 0, size)
        for (const index of [0, Math.floor(size / 2), size - 1]) {
          const proof = await proveInclusion(store.db, head, index, size)
          assert.deepEqual(proof.leafHash, leaves[index])
          verifyInclusion({ leafHash: proof.leafHash, index, size, proof: proof.proof, root })
        }
        for (const from of [1, Math.ceil(size / 3), size]) {
          const proof = await proveConsistency(store.db, head, from, size)
          verifyConsistency({
            size1: from,
            size2: size,
            proof: proof.proof,
            root1: referenceRoot(leaves, 0, from),
            root2: root,
          })
        }
      }
    })

    test('refuses proofs beyond the size of the log', async () => {
      const head = await findAuditLog(store.db, 'platform')
      await assert.rejects(proveInclusion(store.db, head, 0, head.size + 1), {
        code: 'ERR_PROOF_RANGE',
      })
      await assert.rejects(proveConsistency(store.db, head, 1, head.size + 1), {
        code: 'ERR_PROOF_RANGE',
      })
    })

    test('serves level-0 tiles and entry bundles that match the entries', async () => {
      const head = await findAuditLog(store.db, 'platform')
      const tile = await readHashTile(
        store.db,
        head,
        { level: 0, index: 0, width: TILE_WIDTH },
        head.size,
      )
      assert.equal(tile.length, TILE_WIDTH * 32)
      assert.deepEqual(tile.subarray(32 * 5, 32 * 6), hashLeaf(bodies[5] as Uint8Array))
      const bundle = await readEntryBundle(
        store.db,
        head,
        { index: 0, width: TILE_WIDTH },
        head.size,
      )
      assert.ok(bundle.length > TILE_WIDTH * 2)
      await assert.rejects(
        readHashTile(store.db, head, { level: 0, index: 0, width: 3 }, head.size),
        { code: 'ERR_NOT_FOUND' },
      )
    })

    test("rolls back the events with the caller's work when the caller fails", async () => {
      const before = (await findAuditLog(store.db, 'platform')).size
      await assert.rejects(
        store.transaction(async (tx) => {
          await appendAuditEvents(tx, store.dialect, entryKeys, 'platform', [
            event('test.rolled-back'),
          ])
          throw new Error('caller failed after appending')
        }),
      )
      assert.equal((await findAuditLog(store.db, 'platform')).size, before)
    })

    test("rolls back the caller's work when the append fails", async () => {
      const before = await store.db.selectFrom('organizations').select('id').execute()
      const invalid = { ...event('test.invalid'), action: 'X' } as unknown as AuditEvent
      await assert.rejects(
        store.transaction(async (tx) => {
          await tx
            .insertInto('organizations')
            .values({
              id: 'org-rollback',
              slug: 'rollback',
              name: 'Rollback',
              created_at: new Date().toISOString(),
            })
            .execute()
          await appendAuditEvents(tx, store.dialect, entryKeys, 'platform', [invalid])
        }),
        (error: unknown) => error instanceof WardError && error.code === 'ERR_AUDIT_EVENT_INVALID',
      )
      assert.deepEqual(await store.db.selectFrom('organizations').select('id').execute(), before)
    })

    test('signs a checkpoint only while the log extends the witnessed one', async () => {
      const witness = new MemoryWitness()
      const head = await findAuditLog(store.db, 'platform')
      const signer = await loadNoteSigner(store.db, provider, head.signingKeyId, head.origin)
      const first = await signCheckpoint(store, entryKeys, head, signer, witness)
      assert.equal(first.size, head.size)
      assert.match(
        first.note,
        /^ward\.test\/platform\n\d+\n[A-Za-z0-9+/]{43}=\n\n\u2014 ward\.test\/platform /,
      )

      await store.db
        .deleteFrom('audit_entries')
        .where('log_id', '=', head.id)
        .where('idx', '=', head.size - 1)
        .execute()
      await store.db
        .updateTable('audit_logs')
        .set({ size: head.size - 1, frontier: new Uint8Array(0) })
        .where('id', '=', head.id)
        .execute()
      await assert.rejects(
        async () =>
          signCheckpoint(
            store,
            entryKeys,
            await findAuditLog(store.db, 'platform'),
            signer,
            witness,
          ),
        { code: 'ERR_LOG_INVALID' },
      )
    })

    test('refuses to sign an entry that Ward did not write, even with every hash recomputed', async () => {
      await store.transaction(async (tx) => {
        const key = await createSigningKey(tx, provider, 'audit-log')
        await createAuditLog(tx, entryKeys, {
          name: 'forged',
          hostName: site,
          organizationId: null,
          signingKeyId: key.id,
        })
      })
      await store.transaction((tx) =>
        appendAuditEvents(tx, store.dialect, entryKeys, 'forged', [
          event('test.a'),
          event('test.b'),
          event('test.c'),
        ]),
      )
      const head = await findAuditLog(store.db, 'forged')
      const signer = await loadNoteSigner(store.db, provider, head.signingKeyId, head.origin)
      const witness = new MemoryWitness()
      await signCheckpoint(store, entryKeys, head, signer, witness)

      // Somebody with database access appends a fourth entry exactly as Ward would, but
      // without the entry key: a made-up authentication code.
      const body = encodeAuditEvent(event('test.forged'))
      const leaf = hashLeaf(body)
      const third = await store.db
        .selectFrom('audit_entries')
        .select('hashes')
        .where('log_id', '=', head.id)
        .where('idx', '=', 2)
        .executeTakeFirstOrThrow()
      const level1 = hashChildren(third.hashes.subarray(0, 32), leaf)
      const first2 = head.frontier[0] as Uint8Array
      const level2 = hashChildren(first2, level1)
      await store.db
        .insertInto('audit_entries')
        .values({
          log_id: head.id,
          idx: 3,
          event_id: 'forged',
          recorded_at: new Date().toISOString(),
          body,
          hashes: concatBytes(leaf, level1, level2),
          mac: new Uint8Array(32),
        })
        .execute()
      await store.db
        .updateTable('audit_logs')
        .set({ size: 4, frontier: level2 })
        .where('id', '=', head.id)
        .execute()

      await assert.rejects(
        async () =>
          signCheckpoint(store, entryKeys, await findAuditLog(store.db, 'forged'), signer, witness),
        /entry 3 has an authentication code that does not verify/,
      )
    })
  })
}

/** RFC 9162 MTH computed directly from the leaf hashes, independent of the stored tree. */
function referenceRoot(leaves: Uint8Array[], begin: number, end: number): Uint8Array {
  if (end - begin === 1) return leaves[begin] as Uint8Array
  let split = 1
  while (split * 2 < end - begin) split *= 2
  return hashChildren(
    referenceRoot(leaves, begin, begin + split),
    referenceRoot(leaves, begin + split, end),
  )
}
