import assert from 'node:assert/strict'
import { copyFileSync, existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { sql } from 'kysely'
import pg from 'pg'

import {
  dialects,
  freshDatabase,
  postgresUrl,
  temporaryDirectory,
  type TestDatabase,
  underMigrationLock,
} from '../../test/support.js'
import {
  Keyring,
  LocalKeyFileProvider,
  LocalKeyShareStore,
  createKeyEncryptionKey,
  destroyDataKey,
} from '../keys/index.js'
import { openStore, type Store } from '../store/index.js'
import { insertOrganization } from '../tenancy/index.js'
import {
  createPatient,
  insertObservations,
  readObservations,
  readPatientIdentity,
  type Patient,
} from './index.js'

/** A copy of the whole database as it stands now, as a backup or a dump would take it. */
interface DatabaseCopy {
  readonly url: string
  drop(): Promise<void>
}

async function copyDatabase(
  store: Store,
  database: TestDatabase,
  directory: string,
): Promise<DatabaseCopy> {
  if (database.dialect === 'sqlite') {
    // Everything committed moves from the write-ahead log into the file, which is then copied.
    await sql`pragma wal_checkpoint(TRUNCATE)`.execute(store.db)
    const source = join(directory, 'ward.db')
    assert.equal(statSync(`${source}-wal`, { throwIfNoEntry: false })?.size ?? 0, 0)
    const copy = join(directory, 'backup.db')
    copyFileSync(source, copy)
    return { url: `sqlite:${copy}`, drop: async () => undefined }
  }

  const url = new URL(database.url)
  const schema = url.searchParams.get('options')?.split('=')[1] as string
  const copy = `${schema}_copy`
  const client = new pg.Client({ connectionString: postgresUrl })
  await client.connect()
  try {
    await underMigrationLock(client, () => copySchema(client, schema, copy))
  } finally {
    await client.end()
  }
  url.searchParams.set('options', `-c search_path=${copy}`)
  return {
    url: url.toString(),
    drop: async () => {
      const cleanup = new pg.Client({ connectionString: postgresUrl })
      await cleanup.connect()
      await underMigrationLock(cleanup, () => cleanup.query(`drop schema ${copy} cascade`))
      await cleanup.end()
    },
  }
}

async function copySchema(client: pg.Client, schema: string, copy: string): Promise<void> {
  await client.query(`create schema ${copy}`)
  const tables = await client.query<{ table_name: string }>(
    `select table_name from information_schema.tables
       where table_schema = $1 and table_type = 'BASE TABLE'`,
    [schema],
  )
  for (const { table_name: table } of tables.rows) {
    await client.query(`create table ${copy}.${table} (like ${schema}.${table} including all)`)
    await client.query(`insert into ${copy}.${table} select * from ${schema}.${table}`)
  }
}

for (const { dialect, skip } of dialects) {
  describe(`crypto-shredding on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let store: Store
    let keyring: Keyring
    let organizationId: string

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      store = await openStore({ url: database.url })
      const provider = LocalKeyFileProvider.create(join(directory.path, 'master.key'))
      keyring = new Keyring({
        provider,
        keyShares: LocalKeyShareStore.create(join(directory.path, 'key-shares')),
      })
      organizationId = await store.transaction(async (tx) => {
        const organization = await insertOrganization(tx, { slug: 'acme', name: 'Acme' })
        await createKeyEncryptionKey(tx, provider, organization.id)
        return organization.id
      })
    })
    after(async () => {
      // Also when `before` failed half-way, so that no test schema is left behind.
      await store?.close()
      await database?.drop()
      directory.remove()
    })

    async function patientWithReadings(family: string): Promise<Patient> {
      return store.transaction(async (tx) => {
        const patient = await createPatient(tx, keyring, {
          organizationId,
          identity: { name: { family, given: ['Ada'] }, birthDate: '1961-07-14' },
        })
        await insertObservations(
          tx,
          store.dialect,
          keyring,
          Array.from({ length: 50 }, (_, index) => ({
            organizationId,
            patientId: patient.id,
            deviceId: `oximeter-${family}`,
            messageId: `m-${index}`,
            code: '59408-5',
            effectiveAt: new Date(Date.UTC(2026, 1, 1, 0, index)).toISOString(),
            resource: {
              resourceType: 'Observation' as const,
              status: 'final',
              valueQuantity: { value: 90 + (index % 10), unit: '%' },
            },
          })),
        )
        return patient
      })
    }

    test('destroying a data key makes every copy of the patient’s readings unreadable, even one taken before', async () => {
      const doomed = await patientWithReadings('Doomed')
      const kept = await patientWithReadings('Kept')
      const before = await store.transaction((tx) =>
        readObservations(tx, keyring, { organizationId, patientId: doomed.id }),
      )
      assert.equal(before.length, 50)
      const backup = await copyDatabase(store, database, directory.path)

      await store.transaction((tx) =>
        destroyDataKey(tx, keyring, {
          organizationId,
          dataKeyId: doomed.dataKeyId,
          reason: 'patient-request',
        }),
      )

      // The live database: the patient's readings and identity are gone, the others' are not.
      await assert.rejects(
        store.transaction((tx) =>
          readObservations(tx, keyring, { organizationId, patientId: doomed.id }),
        ),
        { code: 'ERR_DATA_KEY_DESTROYED' },
      )
      await assert.rejects(
        store.transaction((tx) => readPatientIdentity(tx, keyring, organizationId, doomed.id)),
        { code: 'ERR_DATA_KEY_DESTROYED' },
      )
      const live = await store.transaction((tx) =>
        readObservations(tx, keyring, { organizationId, patientId: kept.id }),
      )
      assert.equal(live.length, 50)

      // The copy, opened with everything Ward holds now: the master key file, the key share
      // store and a keyring that has never seen either patient.
      const restored = await openStore({ url: backup.url })
      try {
        const everythingWardHolds = new Keyring({
          provider: LocalKeyFileProvider.open(join(directory.path, 'master.key')),
          keyShares: LocalKeyShareStore.open(join(directory.path, 'key-shares')),
        })

        // It is a true copy from before: the data key is live there, its wrapped half intact,
        // and the sealed readings are byte for byte those of the live database.
        const copiedKey = await restored.db
          .selectFrom('data_keys')
          .selectAll()
          .where('id', '=', doomed.dataKeyId)
          .executeTakeFirstOrThrow()
        assert.equal(copiedKey.destroyed_at, null)
        assert.ok(copiedKey.wrapped_key.some((byte) => byte !== 0))
        const copiedKeyEncryptionKey = await restored.db
          .selectFrom('key_encryption_keys')
          .select(['state', 'wrapped_key'])
          .where('organization_id', '=', organizationId)
          .executeTakeFirstOrThrow()
        assert.equal(copiedKeyEncryptionKey.state, 'active')
        assert.ok(copiedKeyEncryptionKey.wrapped_key !== null)
        const sealedThere = await restored.db
          .selectFrom('observations')
          .select(['id', 'sealed_resource'])
          .where('patient_id', '=', doomed.id)
          .orderBy('id')
          .execute()
        const sealedHere = await store.db
          .selectFrom('observations')
          .select(['id', 'sealed_resource'])
          .where('patient_id', '=', doomed.id)
          .orderBy('id')
          .execute()
        assert.equal(sealedThere.length, 50)
        assert.deepEqual(
          sealedThere.map((row) => Buffer.from(row.sealed_resource).toString('hex')),
          sealedHere.map((row) => Buffer.from(row.sealed_resource).toString('hex')),
        )

        // And yet nothing of the destroyed patient opens from it.
        await assert.rejects(
          restored.transaction((tx) =>
            readObservations(tx, everythingWardHolds, { organizationId, patientId: doomed.id }),
          ),
          { code: 'ERR_DATA_KEY_DESTROYED' },
        )
        await assert.rejects(
          restored.transaction((tx) =>
            readPatientIdentity(tx, everythingWardHolds, organizationId, doomed.id),
          ),
          { code: 'ERR_DATA_KEY_DESTROYED' },
        )
        assert.equal(
          existsSync(
            join(directory.path, 'key-shares', doomed.dataKeyId.slice(0, 2), doomed.dataKeyId),
          ),
          false,
        )

        // The copy is still a working backup for everyone else.
        const fromBackup = await restored.transaction((tx) =>
          readObservations(tx, everythingWardHolds, { organizationId, patientId: kept.id }),
        )
        assert.deepEqual(fromBackup, live)
        assert.deepEqual(
          await restored.transaction((tx) =>
            readPatientIdentity(tx, everythingWardHolds, organizationId, kept.id),
          ),
          { name: { family: 'Kept', given: ['Ada'] }, birthDate: '1961-07-14' },
        )
      } finally {
        await restored.close()
        await backup.drop()
      }
    })
  })
}
