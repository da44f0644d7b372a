import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { isWardError, utf8Decode } from '@ward/core'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  testConfig,
  type TestDatabase,
} from '../../test/support.js'
import type { AuditEvent } from '../audit/index.js'
import { systemContext, type OperationContext } from '../context.js'
import type { Organization } from '../tenancy/index.js'
import { Ward, initializeWard } from '../ward.js'
import {
  insertObservations,
  readObservations,
  type ObservationInput,
  type Patient,
  type SearchBundle,
} from './index.js'

const heartRateCode = 'http://loinc.org|8867-4'
const spo2Code = 'http://loinc.org|59408-5'
const base = Date.UTC(2026, 2, 1, 8, 0, 0)
const at = (minutes: number) => new Date(base + minutes * 60_000).toISOString()

function reading(patient: Patient, minutes: number, code: string, value: number): ObservationInput {
  const [system, bare] = code.split('|') as [string, string]
  const messageId = randomUUID()
  return {
    organizationId: patient.organizationId,
    patientId: patient.id,
    deviceId: 'device-1',
    messageId,
    code,
    effectiveAt: at(minutes),
    resource: {
      resourceType: 'Observation',
      status: 'final',
      code: { coding: [{ system, code: bare }] },
      effectiveDateTime: at(minutes),
      valueQuantity: { value, system: 'http://unitsofmeasure.org', code: '/min' },
      identifier: [{ system: 'urn:ward:device-message-id', value: messageId }],
    },
  }
}

for (const { dialect, skip } of dialects) {
  describe(`a reading row altered in the database, on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let ward: Ward
    let acme: Organization

    const operator = systemContext('test')
    const clinician: () => OperationContext = () => ({
      actor: { type: 'user', id: 'user:clinician-1', role: 'clinician', address: '127.0.0.1' },
      requestId: randomUUID(),
      purposeOfUse: 'TREAT',
      organizationId: acme.id,
      policyRule: 'care-team-member',
    })

    async function auditEvents(): Promise<AuditEvent[]> {
      const rows = await ward.store.db
        .selectFrom('audit_entries')
        .innerJoin('audit_logs', 'audit_logs.id', 'audit_entries.log_id')
        .select(['audit_entries.body'])
        .where('audit_logs.name', '=', 'acme')
        .orderBy('audit_entries.idx')
        .execute()
      return rows.map((row) => JSON.parse(utf8Decode(row.body)) as AuditEvent)
    }

    /** A patient with a heart rate at 0 and 20 minutes and an SpO2 at 10, by id. */
    async function patientWithReadings(): Promise<{ patient: Patient; ids: string[] }> {
      const patient = await ward.fleet.createPatient(operator, 'acme', {
        name: { family: 'Tampertestpatient', given: ['Una'] },
        birthDate: '1962-04-04',
      })
      const rows = [
        reading(patient, 0, heartRateCode, 61.5),
        reading(patient, 10, spo2Code, 97.5),
        reading(patient, 20, heartRateCode, 62.5),
      ]
      const stored = await ward.store.transaction((tx) =>
        insertObservations(tx, ward.store.dialect, ward.keyring, rows),
      )
      return { patient, ids: stored.map((row) => row.id) }
    }

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      const config = testConfig(join(directory.path, 'home'), database.url)
      await initializeWard(config, operator)
      ward = await Ward.open(config)
      acme = await ward.createOrganization(operator, { slug: 'acme', name: 'Acme' })
    })
    after(async () => {
      await ward?.close()
      await database?.drop()
      directory.remove()
    })

    test('an SpO2 row recoded as heart rate and redated to 2099 is withheld from a heart-rate search, with a security alert', async () => {
      const { patient, ids } = await patientWithReadings()
      const [first, spo2, third] = ids as [string, string, string]
      await ward.store.db
        .updateTable('observations')
        .set({ code: heartRateCode, effective_at: '2099-01-01T00:00:00.000Z' })
        .where('id', '=', spo2)
        .execute()

      const before = (await auditEvents()).length
      const page = await ward.readings.readReadings(clinician(), {
        patient: patient.pseudonym,
        from: '2026-01-01T00:00:00Z',
        to: '2026-12-31T00:00:00Z',
        codes: [heartRateCode],
      })
      assert.deepEqual(
        page.readings.map((one) => one.id),
        [first, third],
      )
      assert.equal(
        page.withheld,
        undefined,
        'the altered row is outside the range it was moved from',
      )

      const wide = await ward.fhir.searchObservations(clinician(), {
        patient: patient.pseudonym,
        code: heartRateCode,
      })
      const matches = wide.entry.filter((entry) => entry.search.mode === 'match')
      assert.deepEqual(
        matches.map((entry) => entry.resource.id),
        [first, third],
      )
      const outcome = wide.entry.find((entry) => entry.search.mode === 'outcome')
      assert.ok(outcome !== undefined, 'the searchset says a reading was withheld')
      assert.match(
        JSON.stringify(outcome.resource),
        /1 matching reading was withheld: the stored record was altered/,
      )

      const events = (await auditEvents()).slice(before)
      const alerts = events.filter((event) => event.type.code === '110113')
      assert.equal(alerts.length, 1, 'one security alert, for the search that met the row')
      assert.equal(alerts[0]?.subtype.code, 'fhir.observation.search')
      assert.equal(alerts[0]?.outcome, '8')
      assert.deepEqual(
        alerts[0]?.entity.map((entity) => entity.what),
        [patient.id, spo2],
      )
      assert.doesNotMatch(JSON.stringify(alerts), /97\.5|61\.5|Tampertestpatient|1962/)
    })

    test('a change to any clear column is detected on every read path', async () => {
      const changes: Record<string, string>[] = [
        { code: spo2Code },
        { effective_at: at(1) },
        { device_id: 'device-2' },
        { message_id: 'another-message' },
        { received_at: '2026-03-01T09:00:00.000Z' },
      ]
      for (const change of changes) {
        const { patient, ids } = await patientWithReadings()
        const [first, , third] = ids as [string, string, string]
        await ward.store.db
          .updateTable('observations')
          .set(change)
          .where('id', '=', first)
          .execute()
        const label = Object.keys(change).join()

        const page = await ward.readings.readReadings(clinician(), {
          patient: patient.pseudonym,
          from: '2026-01-01T00:00:00Z',
          to: '2026-12-31T00:00:00Z',
        })
        assert.equal(page.readings.length, 2, label)
        assert.deepEqual(page.withheld, [first], label)
        assert.ok(page.readings.some((one) => one.id === third))

        const bundle: SearchBundle = await ward.fhir.searchObservations(clinician(), {
          patient: patient.pseudonym,
        })
        assert.equal(bundle.entry.filter((entry) => entry.search.mode === 'match').length, 2)

        const before = (await auditEvents()).length
        await assert.rejects(ward.fhir.readObservation(clinician(), first), (error: unknown) =>
          isWardError(error, 'ERR_RECORD_UNREADABLE'),
        )
        const alert = (await auditEvents()).slice(before)
        assert.equal(alert.length, 1, label)
        assert.equal(alert[0]?.type.code, '110113')
        assert.deepEqual(
          alert[0]?.entity.map((entity) => entity.what),
          [first],
        )
        await assert.rejects(
          readObservations(ward.store.db, ward.keyring, {
            organizationId: acme.id,
            patientId: patient.id,
          }),
          (error: unknown) => isWardError(error, 'ERR_RECORD_UNREADABLE'),
        )
        // The good readings still open one by one.
        assert.equal((await ward.fhir.readObservation(clinician(), third)).id, third)
      }
    })
  })
}
