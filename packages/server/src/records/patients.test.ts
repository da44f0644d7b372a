import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { sql } from 'kysely'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  type TestDatabase,
} from '../../test/support.js'
import {
  Keyring,
  LocalKeyFileProvider,
  LocalKeyShareStore,
  createKeyEncryptionKey,
} from '../keys/index.js'
import { openStore, type Store } from '../store/index.js'
import { insertOrganization } from '../tenancy/index.js'
import {
  createPatient,
  findPatient,
  findPatientByPseudonym,
  insertObservations,
  listPatients,
  readObservations,
  readPatientIdentity,
  type PatientIdentity,
} from './index.js'

const identity: PatientIdentity = {
  name: { family: 'Quillfeather', given: ['Marguerite', 'Anne'] },
  birthDate: '1957-04-23',
  medicalRecordNumber: 'MRN-77123-ZX',
  address: { line: ['12 Larkspur Lane'], city: 'Thornbury', postalCode: 'TB4 7QP', country: 'GB' },
  phone: '+44 20 7946 0958',
  email: 'm.quillfeather@example.org',
}

for (const { dialect, skip } of dialects) {
  describe(`patients on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let store: Store
    let keyring: Keyring
    let acme: string
    let globex: string

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      store = await openStore({ url: database.url })
      const provider = LocalKeyFileProvider.create(join(directory.path, 'master.key'))
      keyring = new Keyring({
        provider,
        keyShares: LocalKeyShareStore.create(join(directory.path, 'key-shares')),
      })
      const organization = (slug: string) =>
        store.transaction(async (tx) => {
          const created = await insertOrganization(tx, { slug, name: slug })
          await createKeyEncryptionKey(tx, provider, created.id)
          return created.id
        })
      acme = await organization('acme')
      globex = await organization('globex')
    })
    after(async () => {
      // Also when `before` failed half-way, so that no test schema is left behind.
      await store?.close()
      await database?.drop()
      directory.remove()
    })

    test('creates a patient known by a random pseudonym, whose identity opens again', async () => {
      const patient = await store.transaction((tx) =>
        createPatient(tx, keyring, { organizationId: acme, identity }),
      )
      assert.match(patient.pseudonym, /^pt-[a-z2-7]{20}$/)
      assert.equal(patient.organizationId, acme)

      const cold = new Keyring({ provider: keyring.provider, keyShares: keyring.keyShares })
      assert.deepEqual(
        await store.transaction((tx) => readPatientIdentity(tx, cold, acme, patient.id)),
        identity,
      )
      assert.deepEqual(await findPatientByPseudonym(store.db, acme, patient.pseudonym), patient)
      assert.deepEqual(await findPatient(store.db, acme, patient.id), patient)
      const listed = await listPatients(store.db, acme)
      assert.ok(listed.some((entry) => entry.pseudonym === patient.pseudonym))
      assert.ok(listed.every((entry) => Object.keys(entry).every((field) => field !== 'name')))
    })

    test('a patient of another organization is indistinguishable from one that does not exist', async () => {
      const patient = await store.transaction((tx) =>
        createPatient(tx, keyring, { organizationId: acme, identity }),
      )
      const missing = {
        code: 'ERR_PATIENT_NOT_FOUND',
        message: 'no such patient in this organization',
      }
      const attempts = (organizationId: string, patientId: string, pseudonym: string) => [
        () => findPatient(store.db, organizationId, patientId),
        () => findPatientByPseudonym(store.db, organizationId, pseudonym),
        () =>
          store.transaction((tx) => readPatientIdentity(tx, keyring, organizationId, patientId)),
        () =>
          store.transaction((tx) => readObservations(tx, keyring, { organizationId, patientId })),
      ]
      for (const attempt of [
        ...attempts(globex, patient.id, patient.pseudonym),
        ...attempts(acme, '00000000-0000-4000-8000-000000000000', 'pt-aaaaaaaaaaaaaaaaaaaa'),
        ...attempts(acme, 'not an id', 'Quillfeather'),
      ]) {
        await assert.rejects(attempt(), missing)
      }
      assert.ok(!(await listPatients(store.db, globex)).some((entry) => entry.id === patient.id))

      await assert.rejects(
        store.transaction((tx) =>
          insertObservations(tx, store.dialect, keyring, [
            {
              organizationId: globex,
              patientId: patient.id,
              deviceId: 'device-1',
              messageId: 'm-1',
              code: '8867-4',
              effectiveAt: '2026-03-01T08:00:00Z',
              resource: { resourceType: 'Observation' },
            },
          ]),
        ),
        { code: 'ERR_PATIENT_NOT_FOUND', message: /^observation 0: / },
      )
    })

    test('never stores an identifier in clear, in any table or file', async () => {
      const patient = await store.transaction((tx) =>
        createPatient(tx, keyring, { organizationId: acme, identity }),
      )
      const needles = ['Quillfeather', 'Marguerite', 'MRN-77123-ZX', 'Larkspur', '1957-04-23']
      const everywhere = [...needles, ...needles.map((needle) => needle.toLowerCase())]

      // On PostgreSQL, introspection sees every test's schema; only this test's is scanned.
      const schema = new URL(database.url).searchParams.get('options')?.split('=')[1]
      const tables = (await store.db.introspection.getTables()).filter(
        (table) => dialect === 'sqlite' || table.schema === schema,
      )
      assert.ok(tables.some((table) => table.name === 'patient_identities'))
      let seen = Buffer.alloc(0)
      for (const table of tables) {
        const rows = await sql<
          Record<string, unknown>
        >`select * from ${sql.table(table.name)}`.execute(store.db)
        const bytes = Buffer.concat(
          rows.rows.flatMap((row) =>
            Object.values(row).map((value) =>
              value instanceof Uint8Array ? Buffer.from(value) : Buffer.from(String(value)),
            ),
          ),
        )
        for (const needle of everywhere) {
          assert.equal(bytes.includes(needle), false, `${needle} in table ${table.name}`)
        }
        seen = Buffer.concat([seen, bytes])
      }
      // The scan does see what is stored in clear: the pseudonym.
      assert.ok(seen.includes(patient.pseudonym))

      if (dialect === 'sqlite') {
        await sql`pragma wal_checkpoint(TRUNCATE)`.execute(store.db)
        for (const file of readdirSync(directory.path).filter((name) =>
          name.startsWith('ward.db'),
        )) {
          const raw = readFileSync(join(directory.path, file))
          for (const needle of everywhere) {
            assert.equal(raw.includes(needle), false, `${needle} in ${file}`)
          }
          if (file === 'ward.db') assert.ok(raw.includes(patient.pseudonym))
        }
      }
    })

    test('refuses a malformed identity, naming the field and what it allows, not the value', async () => {
      const malformed: [Record<string, unknown>, string][] = [
        [{ ...identity, birthDate: '23/04/1957' }, '/birthDate must be a date written YYYY-MM-DD'],
        [{ ...identity, birthDate: '1957-02-30' }, '/birthDate must be a date written YYYY-MM-DD'],
        [{ ...identity, birthDate: '2999-01-01' }, '/birthDate must be a date written YYYY-MM-DD'],
        [{ ...identity, email: 'Quillfeather at example' }, '/email must be an email address'],
        [
          { ...identity, socialSecurityNumber: '078-05-1120' },
          '/socialSecurityNumber is not a field; the fields are name, birthDate,',
        ],
        [{ ...identity, name: { family: '', given: [] } }, '/name/family'],
        [
          { ...identity, name: { family: 'Quill\u0000feather', given: [] } },
          '/name/family must be printable text, not blank, without control characters',
        ],
        [
          { ...identity, name: { family: '   ' } },
          '/name/family must be printable text, not blank',
        ],
        [{ ...identity, address: { line: [] } }, '/address/line expected array length'],
        [{ name: { family: 'Quillfeather' } }, '/birthDate is required'],
        // A field that is not one is named before the one that then seems missing.
        [{ name: { family: 'Quillfeather' }, dob: '1957-04-23' }, '/dob is not a field'],
        [
          { ...identity, name: { family: 'Quillfeather', suffix: 'Jr' } },
          '/name/suffix is not a field here',
        ],
      ]
      for (const [input, message] of malformed) {
        await assert.rejects(
          store.transaction((tx) =>
            createPatient(tx, keyring, {
              organizationId: acme,
              identity: input as PatientIdentity,
            }),
          ),
          (error: Error & { code?: string }) => {
            assert.equal(error.code, 'ERR_INPUT_INVALID')
            assert.ok(error.message.startsWith(`patient identity field ${message}`), error.message)
            for (const value of ['23/04/1957', 'Quillfeather', '078-05-1120']) {
              assert.ok(!error.message.includes(value), error.message)
            }
            return true
          },
        )
      }
    })

    test('takes a person known by one name', async () => {
      const patient = await store.transaction((tx) =>
        createPatient(tx, keyring, {
          organizationId: acme,
          identity: { name: { family: 'Quillfeather' }, birthDate: '1957-04-23' },
        }),
      )
      assert.ok(patient.pseudonym)
    })

    test('an identity record moved onto another patient does not open', async () => {
      const [first, second] = await store.transaction(async (tx) => [
        await createPatient(tx, keyring, { organizationId: acme, identity }),
        await createPatient(tx, keyring, {
          organizationId: acme,
          identity: { name: { family: 'Other', given: [] }, birthDate: '1990-01-01' },
        }),
      ])
      const stolen = await store.db
        .selectFrom('patient_identities')
        .select('sealed_identity')
        .where('patient_id', '=', first?.id as string)
        .executeTakeFirstOrThrow()
      await store.transaction((tx) =>
        tx
          .updateTable('patient_identities')
          .set({ sealed_identity: stolen.sealed_identity })
          .where('patient_id', '=', second?.id as string)
          .execute(),
      )
      await assert.rejects(
        store.transaction((tx) => readPatientIdentity(tx, keyring, acme, second?.id as string)),
        { code: 'ERR_RECORD_UNREADABLE' },
      )
    })
  })
}
