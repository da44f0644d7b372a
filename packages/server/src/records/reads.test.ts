import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
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
import { standardDeviceModels } from '../devices/index.js'
import { destroyDataKey } from '../keys/index.js'
import type { Organization } from '../tenancy/index.js'
import { Ward, initializeWard } from '../ward.js'
import {
  insertObservations,
  toOperationOutcome,
  type FhirObservation,
  type FhirResource,
  type ObservationInput,
  type Patient,
  type PatientIdentity,
  type SearchBundle,
} from './index.js'

const examples = '/work/shared/data/fhir'
const hour = 3_600_000
const base = Date.UTC(2026, 2, 1, 8, 0, 0)
const at = (minutes: number) => new Date(base + minutes * 60_000).toISOString()

const identity: PatientIdentity = {
  name: { family: 'Readtestpatient', given: ['Quinta'] },
  birthDate: '1958-11-23',
  medicalRecordNumber: 'MRN-77123',
  phone: '+1 555 0142',
  email: 'quinta@example.org',
  address: { line: ['12 Example Lane'], city: 'Exampleton', postalCode: '99999' },
}

/** Values in the ingested readings that must never reach an audit event. */
const heartRates = [61.25, 62.25, 63.25, 64.25, 65.25, 66.25, 67.25, 68.25, 69.25, 70.25]

function heartRate(patient: Patient, minutes: number, value: number): ObservationInput {
  const effectiveAt = at(minutes)
  const messageId = randomUUID()
  return {
    organizationId: patient.organizationId,
    patientId: patient.id,
    deviceId: 'device-1',
    messageId,
    code: 'http://loinc.org|8867-4',
    effectiveAt,
    resource: {
      resourceType: 'Observation',
      status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
      subject: { reference: `Patient/${patient.pseudonym}` },
      effectiveDateTime: effectiveAt,
      valueQuantity: { value, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
      identifier: [{ system: 'urn:ward:device-message-id', value: messageId }],
    },
  }
}

function spo2(patient: Patient, minutes: number): ObservationInput {
  const reading = heartRate(patient, minutes, 97)
  return {
    ...reading,
    code: 'urn:iso:std:iso:11073:10101|150456',
    resource: {
      ...reading.resource,
      code: { coding: [{ system: 'urn:iso:std:iso:11073:10101', code: '150456' }] },
      valueQuantity: { value: 97, unit: '%', system: 'http://unitsofmeasure.org', code: '%' },
    },
  }
}

/** Every path (arrays collapsed to `[]`) with its JSON type, of `value`. */
function shape(value: unknown, path = '', into = new Set<string>()): Set<string> {
  if (Array.isArray(value)) {
    for (const item of value) shape(item, `${path}[]`, into)
  } else if (typeof value === 'object' && value !== null) {
    into.add(`${path}:object`)
    for (const [key, member] of Object.entries(value)) shape(member, `${path}.${key}`, into)
  } else {
    into.add(`${path}:${typeof value}`)
  }
  return into
}

/** Shapes of every resource of `resourceType` in the HL7 and Synthea examples. */
function exampleShapes(resourceType: string): Set<string> {
  const shapes = new Set<string>()
  const visit = (resource: { resourceType?: string; entry?: { resource?: unknown }[] }) => {
    if (resource.resourceType === resourceType) shape(resource, '', shapes)
    for (const entry of resource.entry ?? []) {
      if (entry.resource !== undefined) visit(entry.resource as { resourceType?: string })
    }
  }
  for (const folder of ['phd-examples', 'r4-examples', 'synthea']) {
    for (const file of readdirSync(join(examples, folder))) {
      if (file.endsWith('.json'))
        visit(JSON.parse(readFileSync(join(examples, folder, file), 'utf8')))
    }
  }
  return shapes
}

function assertShapeIn(resource: unknown, allowed: Set<string>, label: string) {
  // Resource.meta.lastUpdated is FHIR's own element for every resource; the examples omit it.
  const unknown = [...shape(resource)].filter(
    (path) => !allowed.has(path) && path !== '.meta.lastUpdated:string',
  )
  assert.deepEqual(unknown, [], `${label} has paths the HL7 examples do not`)
}

for (const { dialect, skip } of dialects) {
  describe(`PHI reads on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let ward: Ward
    let acme: Organization
    let other: Organization
    let patient: Patient
    let second: Patient
    let foreign: Patient
    let shredded: Patient
    const ingested = new Map<string, ObservationInput>()

    const operator = systemContext('test')
    const clinician = (organization: Organization): OperationContext => ({
      actor: { type: 'user', id: 'user:clinician-1', role: 'clinician', address: '127.0.0.1' },
      requestId: randomUUID(),
      purposeOfUse: 'TREAT',
      organizationId: organization.id,
      policyRule: 'care-team-member',
    })

    async function auditEvents(slug: string): Promise<AuditEvent[]> {
      const rows = await ward.store.db
        .selectFrom('audit_entries')
        .innerJoin('audit_logs', 'audit_logs.id', 'audit_entries.log_id')
        .select(['audit_entries.body'])
        .where('audit_logs.name', '=', slug)
        .orderBy('audit_entries.idx')
        .execute()
      return rows.map((row) => JSON.parse(utf8Decode(row.body)) as AuditEvent)
    }

    async function newEvents<T>(slug: string, read: () => Promise<T>): Promise<[T, AuditEvent[]]> {
      const before = (await auditEvents(slug)).length
      const result = await read()
      return [result, (await auditEvents(slug)).slice(before)]
    }

    async function rejection(read: () => Promise<unknown>): Promise<unknown> {
      try {
        await read()
      } catch (error) {
        return error
      }
      assert.fail('expected the read to be refused')
    }

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      const config = testConfig(join(directory.path, 'home'), database.url)
      await initializeWard(config, operator)
      ward = await Ward.open(config)
      acme = await ward.createOrganization(operator, { slug: 'acme', name: 'Acme' })
      other = await ward.createOrganization(operator, { slug: 'other', name: 'Other' })
      patient = await ward.fleet.createPatient(operator, 'acme', identity)
      second = await ward.fleet.createPatient(operator, 'acme', identity)
      shredded = await ward.fleet.createPatient(operator, 'acme', identity)
      foreign = await ward.fleet.createPatient(operator, 'other', identity)

      const rows = [
        ...heartRates.map((value, index) => heartRate(patient, index * 10, value)),
        // Two readings at the same instant: pages must order them by id and lose neither.
        spo2(patient, 30),
        spo2(patient, 30),
        heartRate(second, 5, 80),
        heartRate(shredded, 5, 81),
        heartRate(foreign, 5, 82),
      ]
      await ward.store.transaction(async (tx) => {
        const stored = await insertObservations(tx, ward.store.dialect, ward.keyring, rows)
        stored.forEach((result, index) => ingested.set(result.id, rows[index] as ObservationInput))
      })
      await ward.store.transaction(async (tx) => {
        await destroyDataKey(tx, ward.keyring, {
          organizationId: acme.id,
          dataKeyId: shredded.dataKeyId,
          reason: 'patient-request',
        })
      })
    })
    after(async () => {
      await ward?.close()
      await database?.drop()
      directory.remove()
    })

    test('reads the readings of [from, to): from included, to excluded', async () => {
      const page = await ward.readings.readReadings(clinician(acme), {
        patient: patient.pseudonym,
        from: at(20),
        to: at(50),
      })
      assert.deepEqual(
        page.readings.map((reading) => reading.effectiveAt),
        [at(20), at(30), at(30), at(30), at(40)],
      )
      assert.equal(page.next, undefined)
      assert.equal(page.patient, patient.pseudonym)
    })

    test('opens each reading to exactly what was ingested', async () => {
      const page = await ward.readings.readReadings(clinician(acme), {
        patient: patient.pseudonym,
        from: at(0),
        to: at(100),
        limit: 1000,
      })
      assert.equal(page.readings.length, 12)
      for (const reading of page.readings) {
        const input = ingested.get(reading.id)
        assert.ok(input !== undefined)
        assert.deepEqual(reading.resource, input.resource)
        assert.equal(reading.code, input.code)
        assert.equal(reading.patientId, patient.id)
      }
    })

    test('pages forwards and backwards by cursor without losing or repeating a reading', async () => {
      for (const order of ['oldest-first', 'newest-first'] as const) {
        const seen: string[] = []
        let cursor: string | undefined
        let pages = 0
        do {
          const page = await ward.readings.readReadings(clinician(acme), {
            patient: patient.pseudonym,
            from: at(0),
            to: at(100),
            order,
            limit: 5,
            ...(cursor === undefined ? {} : { cursor }),
          })
          assert.ok(page.readings.length <= 5)
          seen.push(...page.readings.map((reading) => `${reading.effectiveAt} ${reading.id}`))
          cursor = page.next
          pages += 1
        } while (cursor !== undefined)
        assert.equal(pages, 3)
        assert.equal(new Set(seen).size, 12)
        const sorted = [...seen].sort()
        assert.deepEqual(seen, order === 'oldest-first' ? sorted : sorted.reverse())
      }
    })

    test('a cursor from another range returns nothing outside the range asked', async () => {
      const first = await ward.readings.readReadings(clinician(acme), {
        patient: patient.pseudonym,
        from: at(0),
        to: at(100),
        limit: 2,
      })
      const last = await ward.readings.readReadings(clinician(acme), {
        patient: patient.pseudonym,
        from: at(0),
        to: at(100),
        order: 'newest-first',
        limit: 2,
      })
      for (const [order, cursor] of [
        ['oldest-first', first.next],
        ['newest-first', last.next],
      ] as const) {
        assert.ok(cursor !== undefined)
        const page = await ward.readings.readReadings(clinician(acme), {
          patient: patient.pseudonym,
          from: at(40),
          to: at(60),
          order,
          cursor,
        })
        const times = page.readings.map((reading) => reading.effectiveAt)
        assert.deepEqual(times, order === 'oldest-first' ? [at(40), at(50)] : [at(50), at(40)])
      }
    })

    test('returns nothing when the read cannot be audited', async () => {
      const unauditable = { ...clinician(acme), requestId: '' }
      const [error, events] = await newEvents('acme', () =>
        rejection(() =>
          ward.readings.readReadings(unauditable, {
            patient: patient.pseudonym,
            from: at(0),
            to: at(100),
          }),
        ),
      )
      assert.ok(isWardError(error, 'ERR_AUDIT_EVENT_INVALID'))
      assert.equal(events.length, 0)
    })

    test('filters by code', async () => {
      const page = await ward.readings.readReadings(clinician(acme), {
        patient: patient.pseudonym,
        from: at(0),
        to: at(100),
        codes: ['urn:iso:std:iso:11073:10101|150456'],
      })
      assert.equal(page.readings.length, 2)
      assert.ok(page.readings.every((reading) => reading.code.endsWith('|150456')))
    })

    test('records one audit event per read, with the query and count and no values', async () => {
      const [page, events] = await newEvents('acme', () =>
        ward.readings.readReadings(clinician(acme), {
          patient: patient.pseudonym,
          from: at(0),
          to: at(100),
          codes: ['http://loinc.org|8867-4'],
          limit: 4,
        }),
      )
      assert.equal(events.length, 1)
      const [event] = events as [AuditEvent]
      assert.equal(event.action, 'R')
      assert.equal(event.subtype.code, 'observation.read')
      assert.deepEqual(event.purposeOfUse, ['TREAT'])
      assert.equal(event.policy.rule, 'care-team-member')
      assert.equal(event.agent[0]?.who, 'user:clinician-1')
      assert.deepEqual(event.entity, [
        {
          detail: {
            codes: 'http://loinc.org|8867-4',
            count: 4,
            from: at(0),
            limit: 4,
            order: 'oldest-first',
            to: at(100),
          },
          patient: patient.pseudonym,
          type: 'Patient',
          what: patient.id,
        },
      ])
      assert.equal(page.readings.length, 4)
      const text = JSON.stringify(event)
      for (const value of heartRates) assert.ok(!text.includes(String(value)))
      for (const secret of ['Readtestpatient', '1958-11-23', 'MRN-77123', 'valueQuantity']) {
        assert.ok(!text.includes(secret))
      }
    })

    test("a patient's own read is recorded with purpose of use PATRQT", async () => {
      const own: OperationContext = {
        ...clinician(acme),
        actor: { type: 'user', id: 'user:patient-1', role: 'patient' },
        policyRule: 'own-records',
      }
      const [page, events] = await newEvents('acme', () =>
        ward.readings.readOwnReadings(own, {
          patient: patient.pseudonym,
          from: at(0),
          to: at(15),
        }),
      )
      assert.equal(page.readings.length, 2)
      assert.equal(events.length, 1)
      assert.deepEqual(events[0]?.purposeOfUse, ['PATRQT'])
      assert.equal(events[0]?.subtype.code, 'observation.read-own')
    })

    test('refuses a malformed, empty or too wide range and a bad limit or cursor', async () => {
      const read = (query: Partial<Parameters<Ward['readings']['readReadings']>[1]>) =>
        rejection(() =>
          ward.readings.readReadings(clinician(acme), {
            patient: patient.pseudonym,
            from: at(0),
            to: at(100),
            ...query,
          }),
        )
      for (const [query, field] of [
        [{ from: '2026-03-01' }, 'from'],
        [{ to: at(0) }, 'to'],
        [{ from: '2025-01-01T00:00:00Z', to: '2026-03-01T00:00:00Z' }, 'to'],
        [{ limit: 0 }, 'limit'],
        [{ limit: 1001 }, 'limit'],
        [{ cursor: 'not-a-cursor' }, 'cursor'],
        [{ cursor: randomUUID() }, 'cursor'],
      ] as const) {
        const error = await read(query)
        assert.ok(isWardError(error, 'ERR_INPUT_INVALID'), `${JSON.stringify(query)}`)
        assert.equal(error.details['field'], field)
      }
    })

    test('concurrent reads commit together, and one that fails rolls back alone', async () => {
      const query = { from: at(0), to: at(100) }
      const [settled, events] = await newEvents('acme', () =>
        Promise.allSettled([
          ward.readings.readReadings(clinician(acme), { ...query, patient: patient.pseudonym }),
          ward.readings.readReadings(clinician(acme), { ...query, patient: second.pseudonym }),
          ward.readings.readReadings(clinician(acme), {
            ...query,
            patient: 'pt-bbbbbbbbbbbbbbbbbbbb',
          }),
          ward.readings.readReadings(
            { ...clinician(acme), requestId: '' },
            { ...query, patient: patient.pseudonym },
          ),
          ward.readings.readReadings(clinician(acme), { ...query, patient: shredded.pseudonym }),
          ward.fhir.searchObservations(clinician(acme), { patient: second.pseudonym }),
          ward.readings.readReadings(clinician(acme), { ...query, patient: patient.pseudonym }),
        ]),
      )
      const [first, ofSecond, missing, unauditable, gone, bundle, again] = settled
      assert.equal(first?.status === 'fulfilled' && first.value.readings.length, 12)
      assert.equal(ofSecond?.status === 'fulfilled' && ofSecond.value.readings.length, 1)
      assert.equal(again?.status === 'fulfilled' && again.value.readings.length, 12)
      assert.equal(bundle?.status === 'fulfilled' && bundle.value.entry.length, 1)
      assert.ok(
        missing?.status === 'rejected' && isWardError(missing.reason, 'ERR_PATIENT_NOT_FOUND'),
      )
      assert.ok(
        unauditable?.status === 'rejected' &&
          isWardError(unauditable.reason, 'ERR_AUDIT_EVENT_INVALID'),
      )
      assert.ok(gone?.status === 'rejected' && isWardError(gone.reason, 'ERR_DATA_KEY_DESTROYED'))

      const summary = events.map((event) => [
        event.subtype.code,
        event.outcome,
        event.outcomeDescription ?? '',
        event.entity[0]?.patient ?? '',
      ])
      assert.deepEqual(
        summary.sort(),
        [
          ['fhir.observation.search', '0', '', second.pseudonym],
          ['observation.read', '0', '', patient.pseudonym],
          ['observation.read', '0', '', patient.pseudonym],
          ['observation.read', '0', '', second.pseudonym],
          ['observation.read', '4', 'ERR_DATA_KEY_DESTROYED', ''],
          ['observation.read', '4', 'ERR_PATIENT_NOT_FOUND', ''],
        ].sort(),
      )
    })

    test("reads another organization's patient exactly as one that does not exist", async () => {
      const missing = 'pt-aaaaaaaaaaaaaaaaaaaa'
      const outcomes: unknown[] = []
      for (const pseudonym of [foreign.pseudonym, missing]) {
        const [error, events] = await newEvents('acme', () =>
          rejection(() =>
            ward.readings.readReadings(clinician(acme), {
              patient: pseudonym,
              from: at(0),
              to: at(100),
            }),
          ),
        )
        assert.ok(isWardError(error, 'ERR_PATIENT_NOT_FOUND'))
        // Recorded as a failed read that names nothing.
        assert.equal(events.length, 1)
        // Random per event; everything else must be the same for both.
        const event = { ...(events[0] as AuditEvent), id: '', recorded: '', requestId: '' }
        assert.equal(event.outcome, '4')
        assert.deepEqual(event.entity, [])
        const fhir = await rejection(() =>
          ward.fhir.searchObservations(clinician(acme), { patient: pseudonym }),
        )
        const patientRead = await rejection(() =>
          ward.fhir.readPatient(clinician(acme), pseudonym, { includeIdentity: true }),
        )
        const search = await ward.fhir.searchPatients(
          clinician(acme),
          { _id: pseudonym },
          { includeIdentity: false },
        )
        outcomes.push({
          event,
          readings: [error.code, error.message, error.details],
          fhir: toOperationOutcome(fhir),
          patient: toOperationOutcome(patientRead),
          search: search.entry.length,
        })
      }
      assert.deepEqual(outcomes[0], outcomes[1])

      const foreignReading = [...ingested].find(([, row]) => row.patientId === foreign.id)
      assert.ok(foreignReading !== undefined)
      const readings: unknown[] = []
      for (const id of [foreignReading[0], randomUUID()]) {
        const [error, events] = await newEvents('acme', () =>
          rejection(() => ward.fhir.readObservation(clinician(acme), id)),
        )
        assert.ok(isWardError(error, 'ERR_NOT_FOUND'))
        readings.push([error.message, events.map((event) => [event.outcome, event.entity])])
      }
      assert.deepEqual(readings[0], readings[1])
      // The other organization's own clinicians do read their patient.
      const page = await ward.readings.readReadings(clinician(other), {
        patient: foreign.pseudonym,
        from: at(0),
        to: at(100),
      })
      assert.equal(page.readings.length, 1)
    })

    test('reads a crypto-shredded patient as gone, with a clear error', async () => {
      const reads: (() => Promise<unknown>)[] = [
        () =>
          ward.readings.readReadings(clinician(acme), {
            patient: shredded.pseudonym,
            from: at(0),
            to: at(100),
          }),
        () => ward.fhir.searchObservations(clinician(acme), { patient: shredded.pseudonym }),
        () =>
          ward.fhir.readPatient(clinician(acme), shredded.pseudonym, { includeIdentity: false }),
        () => ward.fhir.searchDevices(clinician(acme), { patient: shredded.pseudonym }),
      ]
      for (const read of reads) {
        const [error, events] = await newEvents('acme', () => rejection(read))
        assert.equal(events.length, 1)
        assert.equal(events[0]?.outcome, '4')
        assert.equal(events[0]?.outcomeDescription, 'ERR_DATA_KEY_DESTROYED')
        assert.ok(isWardError(error, 'ERR_DATA_KEY_DESTROYED'))
        assert.match(error.message, /crypto-shredded/)
        assert.ok(!error.message.includes(shredded.dataKeyId))
        assert.equal(toOperationOutcome(error).issue[0]?.code, 'deleted')
      }
    })

    test('FHIR Observation search: date prefixes, code, _sort, _count and next links', async () => {
      const search = (parameters: Record<string, string | string[]>) =>
        ward.fhir.searchObservations(clinician(acme), parameters)
      const times = (bundle: SearchBundle) =>
        bundle.entry.map((entry) => (entry.resource as FhirObservation)['effectiveDateTime'])

      const inclusive = await search({
        patient: `Patient/${patient.pseudonym}`,
        date: [`ge${at(20)}`, `le${at(40)}`],
        code: 'http://loinc.org|8867-4',
      })
      assert.deepEqual(times(inclusive), [at(20), at(30), at(40)])
      const exclusive = await search({
        patient: patient.pseudonym,
        date: [`gt${at(20)}`, `lt${at(40)}`],
        code: 'http://loinc.org|8867-4',
      })
      assert.deepEqual(times(exclusive), [at(30)])
      const day = await search({ patient: patient.pseudonym, date: '2026-03-01', _count: '1000' })
      assert.equal(day.entry.length, 12)
      const nextDay = await search({ patient: patient.pseudonym, date: 'ge2026-03-02' })
      assert.equal(nextDay.entry.length, 0)

      const newest = await search({ patient: patient.pseudonym, _sort: '-date', _count: '5' })
      assert.equal(times(newest)[0], at(90))
      const next = newest.link.find((link) => link.relation === 'next')
      assert.ok(next !== undefined)
      const parameters = new URLSearchParams(next.url.slice('Observation?'.length))
      const following = await ward.fhir.searchObservations(clinician(acme), parameters)
      assert.equal(times(following)[0], at(40))

      const resource = inclusive.entry[0]?.resource as FhirObservation
      assert.equal(inclusive.entry[0]?.fullUrl, `Observation/${resource.id as string}`)
      assert.deepEqual(resource['subject'], { reference: `Patient/${patient.pseudonym}` })
      assert.deepEqual(resource['device'], { reference: 'Device/device-1' })
      assert.deepEqual(inclusive.entry[0]?.search, { mode: 'match' })
      assertShapeIn(resource, exampleShapes('Observation'), 'Observation')

      const read = await ward.fhir.readObservation(clinician(acme), resource.id as string)
      assert.deepEqual(read, resource)
    })

    test('FHIR search parameters are parsed strictly, naming the parameter, never the value', async () => {
      const cases: [Record<string, string | string[]>, string][] = [
        [{ patient: patient.pseudonym, subject: 'x' }, 'subject'],
        [{ patient: patient.pseudonym, 'code:text': 'x' }, 'code:text'],
        [{ patient: patient.pseudonym, date: 'ne2026-03-01' }, 'date'],
        [{ patient: patient.pseudonym, date: '2026-02-30' }, 'date'],
        [{ patient: patient.pseudonym, date: '2026-03-01T10:00' }, 'date'],
        [{ patient: patient.pseudonym, date: '1850-01-01' }, 'date'],
        [{ patient: patient.pseudonym, date: ['ge2026-01-01', 'le2026-02-01', 'lt2026'] }, 'date'],
        [{ patient: patient.pseudonym, date: ['ge2026-03-02', 'le2026-03-01'] }, 'date'],
        [{ patient: patient.pseudonym, _count: '0' }, '_count'],
        [{ patient: patient.pseudonym, _count: '1001' }, '_count'],
        [{ patient: patient.pseudonym, _count: ['5', '6'] }, '_count'],
        [{ patient: patient.pseudonym, code: '8867-4' }, 'code'],
        [{ patient: patient.pseudonym, code: '' }, 'code'],
        [{ patient: patient.pseudonym, _sort: 'value' }, '_sort'],
        [{ patient: patient.pseudonym, _cursor: 'MRN-77123' }, '_cursor'],
        [{ patient: 'MRN-77123' }, 'patient'],
        [{ date: 'ge2026-03-01' }, 'patient'],
      ]
      for (const [parameters, parameter] of cases) {
        const error = await rejection(() =>
          ward.fhir.searchObservations(clinician(acme), parameters),
        )
        assert.ok(isWardError(error, 'ERR_INPUT_INVALID'), JSON.stringify(parameters))
        assert.ok(error.message.includes(parameter), `${error.message} names ${parameter}`)
        assert.ok(!error.message.includes('MRN-77123'))
        const outcome = toOperationOutcome(error)
        assert.equal(outcome.issue[0]?.code, 'invalid')
      }
      const unknown = await rejection(() =>
        ward.fhir.searchObservations(clinician(acme), { patient: patient.pseudonym, foo: '1' }),
      )
      assert.ok(isWardError(unknown))
      assert.match(unknown.message, /allowed: patient, date, code, _count, _sort, _cursor/)
      assert.deepEqual(toOperationOutcome(unknown).issue[0]?.expression, ['foo'])
    })

    test('FHIR Patient read and search: identity only when the caller allows it', async () => {
      const [bare, events] = await newEvents('acme', () =>
        ward.fhir.readPatient(clinician(acme), patient.pseudonym, { includeIdentity: false }),
      )
      assert.deepEqual(bare.identifier, [
        { system: 'urn:ward:pseudonym', value: patient.pseudonym },
      ])
      assert.equal(bare['name'], undefined)
      assert.equal(events.length, 1)
      assert.deepEqual(events[0]?.entity[0]?.detail, { identity: false })

      const full = await ward.fhir.readPatient(clinician(acme), patient.pseudonym, {
        includeIdentity: true,
      })
      assert.equal(full.id, patient.pseudonym)
      assert.deepEqual(full['name'], [{ family: 'Readtestpatient', given: ['Quinta'] }])
      assert.equal(full['birthDate'], '1958-11-23')
      assertShapeIn(full, exampleShapes('Patient'), 'Patient')

      const byIdentifier = await ward.fhir.searchPatients(
        clinician(acme),
        new URLSearchParams({ identifier: `urn:ward:pseudonym|${patient.pseudonym}` }),
        { includeIdentity: false },
      )
      assert.equal(byIdentifier.type, 'searchset')
      assert.equal(byIdentifier.entry[0]?.resource.id, patient.pseudonym)
      const none = await rejection(() =>
        ward.fhir.searchPatients(
          clinician(acme),
          { name: 'Readtestpatient' },
          {
            includeIdentity: false,
          },
        ),
      )
      assert.ok(isWardError(none, 'ERR_INPUT_INVALID'))
      assert.ok(!(none as Error).message.includes('Readtestpatient'))
    })

    test('FHIR Device read and search by patient', async () => {
      const model = standardDeviceModels[0] as (typeof standardDeviceModels)[number]
      await ward.fleet.createDeviceModel(operator, 'acme', model)
      const device = await ward.fleet.createDevice(operator, 'acme', {
        serial: 'READ-0001',
        model: model.name,
      })
      await ward.fleet.assignDevice(operator, 'acme', 'READ-0001', patient.pseudonym)

      const [found, events] = await newEvents('acme', () =>
        ward.fhir.searchDevices(clinician(acme), { patient: patient.pseudonym }),
      )
      assert.equal(found.entry.length, 1)
      const resource = found.entry[0]?.resource as FhirResource
      assert.equal(resource.id, device.id)
      assert.deepEqual(resource['patient'], { reference: `Patient/${patient.pseudonym}` })
      assert.equal(events.length, 1)
      assert.equal(events[0]?.entity[0]?.patient, patient.pseudonym)
      const fields = ['resourceType', 'id', 'identifier', 'definition', 'status', 'patient']
      assert.deepEqual(Object.keys(resource), fields)

      assert.deepEqual(await ward.fhir.readDevice(clinician(acme), device.id), resource)
      const bySerial = await rejection(() => ward.fhir.readDevice(clinician(acme), 'READ-0001'))
      assert.ok(isWardError(bySerial, 'ERR_DEVICE_NOT_FOUND'))
      const elsewhere = await rejection(() => ward.fhir.readDevice(clinician(other), device.id))
      assert.ok(isWardError(elsewhere, 'ERR_DEVICE_NOT_FOUND'))
      const none = await ward.fhir.searchDevices(clinician(acme), { patient: second.pseudonym })
      assert.equal(none.entry.length, 0)
    })

    test('FHIR AuditEvent search by patient, entity and date, paged', async () => {
      const auditor: OperationContext = {
        ...clinician(acme),
        actor: { type: 'user', id: 'user:auditor-1', role: 'auditor' },
        purposeOfUse: 'HOPERAT',
        policyRule: 'auditor',
      }
      await ward.readings.readReadings(clinician(acme), {
        patient: second.pseudonym,
        from: at(0),
        to: at(100),
      })
      const [forSecond, events] = await newEvents('acme', () =>
        ward.fhir.searchAuditEvents(auditor, { patient: second.pseudonym }),
      )
      const subtypes = forSecond.entry.map(
        (entry) => (entry.resource['subtype'] as { code: string }[])[0]?.code,
      )
      assert.ok(subtypes.includes('patient.create'))
      assert.ok(subtypes.includes('observation.read'))
      for (const entry of forSecond.entry) {
        const entity = entry.resource['entity'] as { what: { reference?: string } }[]
        assert.ok(entity.some((e) => e.what.reference === `Patient/${second.pseudonym}`))
      }
      assert.equal(events.length, 1)
      assert.equal(events[0]?.subtype.code, 'fhir.audit-event.search')
      assert.equal(events[0]?.entity[0]?.patient, second.pseudonym)

      const byEntity = await ward.fhir.searchAuditEvents(auditor, {
        entity: `Patient/${second.id}`,
      })
      assert.ok(byEntity.entry.length >= 2)

      const all: string[] = []
      let parameters: URLSearchParams | undefined = new URLSearchParams({
        date: `ge${new Date(Date.now() - hour).toISOString()}`,
        _count: '7',
      })
      while (parameters !== undefined) {
        const page: SearchBundle = await ward.fhir.searchAuditEvents(auditor, parameters)
        assert.ok(page.entry.length <= 7)
        all.push(...page.entry.map((entry) => entry.resource.id as string))
        const next = page.link.find((link) => link.relation === 'next')
        parameters =
          next === undefined ? undefined : new URLSearchParams(next.url.slice('AuditEvent?'.length))
      }
      assert.equal(new Set(all).size, all.length)
      assert.ok(all.length >= (await auditEvents('acme')).length - 10)

      const future = await ward.fhir.searchAuditEvents(auditor, { date: 'ge2999-01-01' })
      assert.equal(future.entry.length, 0)
    })
  })
}
