import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

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
  insertObservations,
  readObservations,
  type ObservationInput,
  type Patient,
} from './index.js'

function heartRate(
  patient: Patient,
  messageId: string,
  effectiveAt: string,
  beatsPerMinute: number,
  deviceId = 'device-1',
): ObservationInput {
  return {
    organizationId: patient.organizationId,
    patientId: patient.id,
    deviceId,
    messageId,
    code: '8867-4',
    effectiveAt,
    resource: {
      resourceType: 'Observation',
      status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
      subject: { reference: `Patient/${patient.pseudonym}` },
      effectiveDateTime: effectiveAt,
      valueQuantity: { value: beatsPerMinute, unit: '/min', system: 'http://unitsofmeasure.org' },
      identifier: [{ system: 'urn:ward:device-message-id', value: messageId }],
    },
  }
}

for (const { dialect, skip } of dialects) {
  describe(`observations on ${dialect}`, { skip }, () => {
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

    const newPatient = (family: string) =>
      store.transaction((tx) =>
        createPatient(tx, keyring, {
          organizationId,
          identity: { name: { family, given: [] }, birthDate: '1970-01-01' },
        }),
      )

    test('stores readings sealed and reads them back in time order, within a window', async () => {
      const patient = await newPatient('Reader')
      const stored = await store.transaction((tx) =>
        insertObservations(tx, store.dialect, keyring, [
          heartRate(patient, 'a', '2026-03-01T10:00:00+01:00', 71),
          heartRate(patient, 'b', '2026-03-01T08:30:00Z', 72),
          heartRate(patient, 'c', '2026-03-02T08:30:00Z', 73),
        ]),
      )
      assert.deepEqual(
        stored.map((row) => row.created),
        [true, true, true],
      )

      const rows = await store.db
        .selectFrom('observations')
        .selectAll()
        .where('patient_id', '=', patient.id)
        .execute()
      for (const row of rows) {
        assert.equal(Buffer.from(row.sealed_resource).includes('valueQuantity'), false)
        assert.equal(Buffer.from(row.sealed_resource).includes(patient.pseudonym), false)
      }

      const cold = new Keyring({ provider: keyring.provider, keyShares: keyring.keyShares })
      const all = await store.transaction((tx) =>
        readObservations(tx, cold, { organizationId, patientId: patient.id }),
      )
      assert.deepEqual(
        all.map((row) => [row.messageId, row.effectiveAt, row.resource['valueQuantity']]),
        [
          [
            'b',
            '2026-03-01T08:30:00.000Z',
            { value: 72, unit: '/min', system: 'http://unitsofmeasure.org' },
          ],
          [
            'a',
            '2026-03-01T09:00:00.000Z',
            { value: 71, unit: '/min', system: 'http://unitsofmeasure.org' },
          ],
          [
            'c',
            '2026-03-02T08:30:00.000Z',
            { value: 73, unit: '/min', system: 'http://unitsofmeasure.org' },
          ],
        ],
      )
      assert.equal(all[1]?.resource['effectiveDateTime'], '2026-03-01T10:00:00+01:00')
      assert.deepEqual(all[0]?.id, stored[1]?.id)

      const window = await store.transaction((tx) =>
        readObservations(tx, cold, {
          organizationId,
          patientId: patient.id,
          from: '2026-03-01T09:00:00Z',
          to: '2026-03-02T08:30:00Z',
        }),
      )
      assert.deepEqual(
        window.map((row) => row.messageId),
        ['a'],
      )
    })

    test('gives each reading a distinct UUID version 7 carrying the time it was stored', async () => {
      const patient = await newPatient('Ids')
      const before = Date.now()
      const stored = await store.transaction((tx) =>
        insertObservations(
          tx,
          store.dialect,
          keyring,
          Array.from({ length: 300 }, (_, index) =>
            heartRate(patient, `id-${index}`, '2026-03-01T08:00:00Z', 60),
          ),
        ),
      )
      const after = Date.now()
      const ids = stored.map((row) => row.id)
      assert.equal(new Set(ids).size, ids.length)
      for (const id of ids) {
        assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
        const time = parseInt(id.replace('-', '').slice(0, 12), 16)
        assert.ok(time >= before && time <= after, 'the first 48 bits are the time in milliseconds')
      }
      // The 74 random bits differ from id to id, not just a counter's low bits.
      const randomParts = ids.map((id) => id.replaceAll('-', '').slice(13))
      assert.equal(new Set(randomParts.map((part) => part.slice(0, 12))).size, ids.length)
    })

    test('stores a device message once, never overwrites it, and tells a resend from a conflict', async () => {
      const patient = await newPatient('Retry')
      const other = await newPatient('Elsewhere')
      const first = await store.transaction((tx) =>
        insertObservations(tx, store.dialect, keyring, [
          heartRate(patient, 'm-1', '2026-03-01T08:00:00Z', 60),
        ]),
      )
      // The same reading with its keys in another order is a resend, not a conflict.
      const resent = heartRate(patient, 'm-1', '2026-03-01T08:00:00Z', 60)
      const reordered = {
        ...resent,
        resource: Object.fromEntries(
          Object.entries(resent.resource).reverse(),
        ) as typeof resent.resource,
      }
      const again = await store.transaction((tx) =>
        insertObservations(tx, store.dialect, keyring, [
          heartRate(patient, 'm-1', '2026-03-01T08:00:00Z', 99),
          heartRate(patient, 'm-2', '2026-03-01T08:01:00Z', 61),
          heartRate(patient, 'm-2', '2026-03-01T08:01:00Z', 62),
          heartRate(patient, 'm-1', '2026-03-01T08:00:00Z', 60, 'device-2'),
          reordered,
          { ...heartRate(other, 'm-1', '2026-03-01T08:00:00Z', 60), patientId: other.id },
          heartRate(patient, 'm-2', '2026-03-01T08:01:00Z', 61),
        ]),
      )
      assert.deepEqual(
        again.map((row) => [row.created, row.conflicting]),
        [
          [false, true],
          [true, false],
          [false, true],
          [true, false],
          [false, false],
          [false, true],
          [false, false],
        ],
      )
      assert.equal(again[0]?.id, first[0]?.id)
      assert.equal(again[2]?.id, again[1]?.id)

      const read = await store.transaction((tx) =>
        readObservations(tx, keyring, { organizationId, patientId: patient.id }),
      )
      assert.deepEqual(
        read
          .map((row) => {
            const value = (row.resource['valueQuantity'] as { value: number }).value
            return `${row.messageId} ${row.deviceId} ${value}`
          })
          .sort(),
        ['m-1 device-1 60', 'm-1 device-2 60', 'm-2 device-1 61'],
      )
    })

    test('refuses a malformed row, naming it, and writes nothing from the batch', async () => {
      const patient = await newPatient('Malformed')
      const good = heartRate(patient, 'ok', '2026-03-01T08:00:00Z', 60)
      const cases: [ObservationInput, RegExp][] = [
        [{ ...good, code: 'heart rate' }, /^observation 1: code must be a LOINC code/],
        [{ ...good, effectiveAt: '2026-03-01 08:00' }, /^observation 1: effectiveAt must be/],
        [{ ...good, effectiveAt: '2026-03-01T08:00:00' }, /^observation 1: effectiveAt must be/],
        [
          {
            ...good,
            resource: { resourceType: 'Patient' } as unknown as ObservationInput['resource'],
          },
          /^observation 1: resource must be a FHIR Observation/,
        ],
        [{ ...good, messageId: '' }, /^observation 1: messageId must be/],
      ]
      for (const [bad, message] of cases) {
        await assert.rejects(
          store.transaction((tx) => insertObservations(tx, store.dialect, keyring, [good, bad])),
          { code: 'ERR_INPUT_INVALID', message },
        )
      }
      const stored = await store.db
        .selectFrom('observations')
        .select('id')
        .where('patient_id', '=', patient.id)
        .execute()
      assert.equal(stored.length, 0)
    })

    test('a reading moved onto another patient does not open', async () => {
      const [owner, other] = [await newPatient('Owner'), await newPatient('Other')]
      const [stored] = await store.transaction((tx) =>
        insertObservations(tx, store.dialect, keyring, [
          heartRate(owner, 'moved', '2026-03-01T08:00:00Z', 60),
        ]),
      )
      await store.transaction((tx) =>
        tx
          .updateTable('observations')
          .set({ patient_id: other.id })
          .where('id', '=', stored?.id as string)
          .execute(),
      )
      await assert.rejects(
        store.transaction((tx) =>
          readObservations(tx, keyring, { organizationId, patientId: other.id }),
        ),
        { code: 'ERR_RECORD_UNREADABLE' },
      )
    })

    test('inserts readings in bulk (throughput, reported, not asserted)', async () => {
      const patients = await Promise.all(
        Array.from({ length: 20 }, (_, index) => newPatient(`Bulk${index}`)),
      )
      const batches = 20
      const perBatch = 1000
      const start = performance.now()
      for (let batch = 0; batch < batches; batch += 1) {
        const rows = Array.from({ length: perBatch }, (_, index) =>
          heartRate(
            patients[index % patients.length] as Patient,
            `bulk-${batch}-${index}`,
            new Date(Date.UTC(2026, 0, 1) + (batch * perBatch + index) * 1000).toISOString(),
            60 + (index % 40),
            `device-${index % patients.length}`,
          ),
        )
        const stored = await store.transaction((tx) =>
          insertObservations(tx, store.dialect, keyring, rows),
        )
        assert.ok(stored.every((row) => row.created))
      }
      const seconds = (performance.now() - start) / 1000
      const total = batches * perBatch
      console.log(
        `${dialect}: ${total} observations in ${seconds.toFixed(2)} s, ${Math.round(total / seconds)} a second`,
      )

      const read = await store.transaction((tx) =>
        readObservations(tx, keyring, { organizationId, patientId: (patients[0] as Patient).id }),
      )
      assert.equal(read.length, total / patients.length)
    })
  })
}
