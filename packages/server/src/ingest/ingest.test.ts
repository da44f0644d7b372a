import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { checkObservation, isWardError } from '@ward/core'
import { retime, withMessageId, type Observation } from '@ward/device'

import { dialects } from '../../test/support.js'
import { systemContext } from '../context.js'
import { standardDeviceModels } from '../devices/index.js'
import { readObservations, type Patient } from '../records/index.js'
import {
  batchOf,
  createTestOrganization,
  enrollTestDevice,
  entryStatuses,
  postAsDevice,
  spo2Reading,
  startTestWard,
  type Answer,
  type TestDevice,
  type TestOrganization,
  type TestWard,
} from './test-support.js'

const examples = '/work/shared/data/fhir'

/** One reading from the published examples, made ready to send as a device would. */
interface ExampleReading {
  readonly source: string
  readonly observation: Observation
}

/**
 * Every Observation in the HL7 PHD and FHIR R4 examples (a Bundle's Observations one by one),
 * timed now, without a subject and with a message id of its own, as the device agent sends
 * readings it makes from a template.
 */
function exampleReadings(): ExampleReading[] {
  const readings: ExampleReading[] = []
  for (const folder of ['phd-examples', 'r4-examples']) {
    for (const file of readdirSync(join(examples, folder)).sort()) {
      if (!file.endsWith('.json')) continue
      const document = JSON.parse(readFileSync(join(examples, folder, file), 'utf8')) as {
        resourceType: string
        entry?: { resource?: { resourceType?: string } }[]
      }
      const found =
        document.resourceType === 'Observation'
          ? [document]
          : document.resourceType === 'Bundle'
            ? (document.entry ?? []).flatMap((entry) =>
                entry.resource?.resourceType === 'Observation' ? [entry.resource] : [],
              )
            : []
      found.forEach((resource, index) => {
        const observation = retime(resource as Observation, new Date())
        // The device leaves its patient to Ward: the subject goes, and so does the example's
        // patient as performer, which Ward refuses as a patient other than the device's.
        const subject = (observation['subject'] as { reference?: unknown } | undefined)?.reference
        delete observation['subject']
        const performer = observation['performer']
        if (Array.isArray(performer)) {
          const others = performer.filter(
            (reference: { reference?: unknown }) => reference.reference !== subject,
          )
          if (others.length > 0) observation['performer'] = others
          else delete observation['performer']
        }
        readings.push({
          source: `${folder}/${file}#${index}`,
          observation: withMessageId(observation, randomUUID()),
        })
      })
    }
  }
  return readings
}

/** What the model's policy says of a reading: undefined when allowed, else the reason. */
function policyVerdict(modelName: string, reading: Observation): string | undefined {
  const model = standardDeviceModels.find((candidate) => candidate.name === modelName)
  assert.ok(model !== undefined)
  try {
    checkObservation(reading, model.policy, 'Patient/any')
    return undefined
  } catch (error) {
    if (!isWardError(error, 'ERR_READING_REJECTED')) throw error
    return error.message
  }
}

/** The 422 reason of each entry of a batch-response (undefined for 200 and 201). */
function entryReasons(answer: Answer): (string | undefined)[] {
  const bundle = answer.json() as {
    entry: { response: { outcome?: { issue: { diagnostics: string }[] } } }[]
  }
  return bundle.entry.map((entry) => entry.response.outcome?.issue[0]?.diagnostics)
}

for (const { dialect, skip } of dialects) {
  describe(`ingest through the device endpoint on ${dialect}`, { skip }, () => {
    let testWard: TestWard
    let acme: TestOrganization

    before(async () => {
      testWard = await startTestWard(dialect)
      acme = await createTestOrganization(testWard.ward, 'acme')
    })
    after(() => testWard?.close())

    const newPatient = () =>
      testWard.ward.fleet.createPatient(systemContext('test'), acme.slug, {
        name: { family: 'Testpatient', given: ['Another'] },
        birthDate: '1980-02-02',
      })

    /** The organization's audit events for stored readings. */
    async function readingEvents(): Promise<Record<string, unknown>[]> {
      const rows = await testWard.ward.store.db
        .selectFrom('audit_entries')
        .innerJoin('audit_logs', 'audit_logs.id', 'audit_entries.log_id')
        .select('audit_entries.body')
        .where('audit_logs.name', '=', acme.slug)
        .orderBy('audit_entries.idx')
        .execute()
      return rows
        .map((row) => JSON.parse(Buffer.from(row.body).toString('utf8')) as Record<string, unknown>)
        .filter((event) => (event['subtype'] as { code: string }).code === 'observation.create')
    }

    const stored = (patient: Patient) =>
      readObservations(testWard.ward.store.db, testWard.ward.keyring, {
        organizationId: acme.id,
        patientId: patient.id,
      })

    test('accepts every example reading its device model allows and rejects the rest with a reason', async () => {
      const readings = exampleReadings()
      assert.ok(readings.length > 60, `only ${readings.length} example readings found`)
      const patient = await newPatient()
      const eventsBefore = (await readingEvents()).length
      let batchesStored = 0
      let created = 0
      const acceptedBy = new Map<string, Set<string>>()

      for (const model of standardDeviceModels) {
        const perDevice = model.policy.maxReadingsPerMinute
        for (let start = 0; start < readings.length; start += perDevice) {
          const chunk = readings.slice(start, start + perDevice)
          const device = await enrollTestDevice(testWard, acme, { model: model.name, patient })
          const answer = await postAsDevice(
            testWard,
            acme,
            device,
            batchOf(chunk.map((reading) => reading.observation)),
          )
          assert.equal(answer.status, 200, answer.body)
          const statuses = entryStatuses(answer)
          const reasons = entryReasons(answer)
          chunk.forEach((reading, index) => {
            const expected = policyVerdict(model.name, reading.observation)
            if (expected === undefined) {
              assert.equal(statuses[index], '201 Created', `${model.name}: ${reading.source}`)
              acceptedBy.set(
                model.name,
                (acceptedBy.get(model.name) ?? new Set()).add(reading.source),
              )
              created += 1
            } else {
              assert.equal(statuses[index], '422 Unprocessable Entity', reading.source)
              assert.equal(reasons[index], expected, `${model.name}: ${reading.source}`)
            }
          })
          if (statuses.some((status) => status !== '422 Unprocessable Entity')) batchesStored += 1
        }
      }

      // The policy engine is tested on its own; these pin what the examples must show here.
      const accepted = (model: string, source: string) =>
        acceptedBy.get(model)?.has(source) === true
      assert.ok(accepted('Pulse oximeter', 'r4-examples/observation-example-satO2.json#0'))
      assert.ok(
        accepted('Blood pressure cuff', 'r4-examples/observation-example-bloodpressure.json#0'),
      )
      assert.ok(
        accepted('Blood pressure cuff', 'phd-examples/compound-numeric-blood-pressure.json#0'),
      )
      assert.ok(accepted('Glucose meter', 'r4-examples/observation-example-f001-glucose.json#0'))
      assert.ok(accepted('Weight scale', 'r4-examples/observation-example.json#0'))
      assert.ok(accepted('Weight scale', 'r4-examples/observation-example-bmi.json#0'))
      for (const model of standardDeviceModels) {
        assert.ok(!accepted(model.name, 'r4-examples/observation-example-body-height.json#0'))
        assert.ok(!accepted(model.name, 'phd-examples/temperature-observation.json#0'))
      }

      const events = await readingEvents()
      assert.equal(events.length - eventsBefore, batchesStored, 'one audit event per batch stored')
      const observations = await stored(patient)
      assert.equal(observations.length, created)
      for (const observation of observations) {
        assert.deepEqual(observation.resource['subject'], {
          reference: `Patient/${patient.pseudonym}`,
        })
      }
    })

    test("rejects a reading naming another patient, and accepts one naming the device's own", async () => {
      const own = await newPatient()
      const stranger = await newPatient()
      const device = await enrollTestDevice(testWard, acme, { patient: own })
      const answer = await postAsDevice(
        testWard,
        acme,
        device,
        batchOf([
          { ...spo2Reading(randomUUID()), subject: { reference: `Patient/${stranger.pseudonym}` } },
          { ...spo2Reading(randomUUID()), subject: { reference: `Patient/${own.pseudonym}` } },
        ]),
      )
      assert.deepEqual(entryStatuses(answer), ['422 Unprocessable Entity', '201 Created'])
      assert.match(String(entryReasons(answer)[0]), /subject/)
      assert.equal((await stored(stranger)).length, 0)
      assert.equal((await stored(own)).length, 1)
    })

    test('rejects a reading too large to store on its own, and keeps the rest of its batch', async () => {
      const patient = await newPatient()
      const device = await enrollTestDevice(testWard, acme, { patient })
      const bulky = { ...spo2Reading(randomUUID()), note: [{ text: 'x'.repeat(70_000) }] }
      const answer = await postAsDevice(
        testWard,
        acme,
        device,
        batchOf([spo2Reading(randomUUID()), bulky]),
      )
      assert.equal(answer.status, 200)
      assert.deepEqual(entryStatuses(answer), ['201 Created', '422 Unprocessable Entity'])
      assert.equal(entryReasons(answer)[1], 'a reading may be at most 65536 bytes as JSON')
      assert.equal((await stored(patient)).length, 1)
    })

    test('refuses a batch holding more readings than allowed, naming the limit', async () => {
      const device = await enrollTestDevice(testWard, acme)
      const limit = testWard.config.device.maxBatchReadings
      const answer = await postAsDevice(
        testWard,
        acme,
        device,
        batchOf(Array.from({ length: limit + 1 }, () => spo2Reading(randomUUID()))),
      )
      assert.equal(answer.status, 413)
      const problem = answer.json() as { code: string; detail: string }
      assert.equal(problem.code, 'ERR_PAYLOAD_TOO_LARGE')
      assert.equal(
        problem.detail,
        `a batch may hold at most ${limit} readings; this one holds ${limit + 1}`,
      )
    })

    test('rejects every reading of a device assigned to no patient, and records nothing', async () => {
      const device: TestDevice = await enrollTestDevice(testWard, acme, { patient: null })
      const eventsBefore = (await readingEvents()).length
      const answer = await postAsDevice(
        testWard,
        acme,
        device,
        batchOf([spo2Reading(randomUUID()), spo2Reading(randomUUID())]),
      )
      assert.equal(answer.status, 200)
      assert.deepEqual(entryStatuses(answer), [
        '422 Unprocessable Entity',
        '422 Unprocessable Entity',
      ])
      assert.deepEqual(entryReasons(answer), [
        'the device is not assigned to a patient',
        'the device is not assigned to a patient',
      ])
      assert.equal((await readingEvents()).length, eventsBefore)
    })

    test('stores readings sealed, readable only through the records domain, with one audit event', async () => {
      const patient = await newPatient()
      const device = await enrollTestDevice(testWard, acme, { patient })
      const probe = `plaintext-probe-${randomUUID()}`
      const messageId = randomUUID()
      const eventsBefore = (await readingEvents()).length
      const answer = await postAsDevice(testWard, acme, device, {
        ...spo2Reading(messageId, 93),
        note: [{ text: probe }],
      })
      assert.deepEqual(entryStatuses(answer), ['201 Created'])

      const rows = await testWard.ward.store.db.selectFrom('observations').selectAll().execute()
      assert.ok(rows.length > 0)
      for (const row of rows) {
        for (const value of Object.values(row)) {
          const text =
            value instanceof Uint8Array ? Buffer.from(value).toString('latin1') : String(value)
          assert.ok(!text.includes(probe), 'a stored column holds the resource in clear')
          assert.ok(!text.includes('"resourceType"'), 'a stored column holds FHIR JSON in clear')
        }
      }
      if (testWard.database.dialect === 'sqlite') {
        const file = testWard.config.database.url.slice('sqlite:'.length)
        for (const path of [file, `${file}-wal`]) {
          if (existsSync(path)) assert.ok(!readFileSync(path).includes(probe), `${path} holds it`)
        }
      }

      const [observation] = await stored(patient)
      assert.ok(observation !== undefined)
      assert.equal(observation.messageId, messageId)
      assert.equal(observation.deviceId, device.deviceId)
      assert.deepEqual(observation.resource['note'], [{ text: probe }])
      assert.equal((observation.resource['valueQuantity'] as { value: number }).value, 93)

      const events = await readingEvents()
      assert.equal(events.length, eventsBefore + 1)
      const event = events.at(-1) as {
        agent: { type: string; who: string; network?: unknown }[]
        purposeOfUse: string[]
        policy: { rule: string }
        entity: { patient: string; detail: Record<string, number> }[]
      }
      assert.equal(event.agent[0]?.type, 'device')
      assert.equal(event.agent[0]?.who, device.deviceId)
      assert.equal(
        event.agent[0]?.network,
        undefined,
        "a device's address would locate its patient",
      )
      assert.deepEqual(event.purposeOfUse, ['TREAT'])
      assert.equal(event.policy.rule, 'device-own-patient')
      assert.equal(event.entity[0]?.patient, patient.pseudonym)
      assert.equal(event.entity[0]?.detail['created'], 1)
      assert.ok(!JSON.stringify(event).includes(probe), 'the audit event holds no reading value')
    })

    test('a message id resent with a different reading is a 409 conflict; the first is kept', async () => {
      const patient = await newPatient()
      const device = await enrollTestDevice(testWard, acme, { patient })
      const messageId = randomUUID()
      const reading = spo2Reading(messageId, 95)
      assert.deepEqual(entryStatuses(await postAsDevice(testWard, acme, device, reading)), [
        '201 Created',
      ])
      const eventsBefore = (await readingEvents()).length

      const answer = await postAsDevice(
        testWard,
        acme,
        device,
        batchOf([
          reading,
          { ...reading, valueQuantity: { ...(reading['valueQuantity'] as object), value: 88 } },
        ]),
      )
      assert.deepEqual(entryStatuses(answer), ['200 OK', '409 Conflict'])
      const conflict = (
        JSON.parse(answer.body) as {
          entry: { response: { outcome?: { issue: { code: string; diagnostics: string }[] } } }[]
        }
      ).entry[1]?.response.outcome?.issue[0]
      assert.equal(conflict?.code, 'conflict')
      assert.match(conflict?.diagnostics ?? '', /already names a different reading/)
      assert.ok(!(conflict?.diagnostics ?? '').includes('88'), 'the answer repeats no value')

      const [kept] = await stored(patient)
      assert.equal((kept?.resource['valueQuantity'] as { value: number }).value, 95)
      const event = (await readingEvents()).slice(eventsBefore)[0] as {
        entity: { detail: Record<string, number> }[]
      }
      assert.equal(event.entity[0]?.detail['conflicts'], 1)
      assert.equal(event.entity[0]?.detail['duplicates'], 1)
      assert.equal(event.entity[0]?.detail['created'], 0)
    })

    test('batches sent together each keep their own outcome and audit event', async () => {
      const patients = [await newPatient(), await newPatient()] as [Patient, Patient]
      const first = await enrollTestDevice(testWard, acme, { patient: patients[0] })
      const second = await enrollTestDevice(testWard, acme, { patient: patients[1] })
      const requests = [randomUUID(), randomUUID(), randomUUID()] as const
      const context = (device: TestDevice, requestId: string) => ({
        actor: { type: 'device' as const, id: device.deviceId },
        organizationId: acme.id,
        purposeOfUse: 'TREAT',
        policyRule: 'device-own-patient',
        requestId,
      })
      const repeated = spo2Reading(randomUUID(), 95)
      const eventsBefore = (await readingEvents()).length

      // Handed over in one turn of the event loop: on SQLite they share one commit group, on
      // PostgreSQL they run side by side, so which repeat of a message comes first is open.
      const outcomes = await Promise.all([
        testWard.ward.fleet.ingest(context(first, requests[0]), acme.id, first.deviceId, [
          repeated,
          spo2Reading(randomUUID(), 96),
        ]),
        testWard.ward.fleet.ingest(context(second, requests[1]), acme.id, second.deviceId, [
          spo2Reading(randomUUID(), 97),
        ]),
        testWard.ward.fleet.ingest(context(first, requests[2]), acme.id, first.deviceId, [
          repeated,
          spo2Reading(randomUUID(), 150),
        ]),
      ])
      const statuses = outcomes.map((batch) => batch.map((outcome) => outcome.status))
      assert.deepEqual(statuses[1], ['created'])
      assert.equal(statuses[0]?.[1], 'created')
      assert.equal(statuses[2]?.[1], 'rejected')
      assert.deepEqual([statuses[0]?.[0], statuses[2]?.[0]].sort(), ['created', 'duplicate'])
      assert.equal((await stored(patients[0])).length, 2)
      assert.equal((await stored(patients[1])).length, 1)

      const firstCreated = statuses[0]?.[0] === 'created' ? 1 : 0
      const events = (await readingEvents()).slice(eventsBefore) as {
        requestId: string
        agent: { who: string }[]
        entity: { patient: string; detail: Record<string, number> }[]
      }[]
      const byRequest = new Map(
        events.map((event) => [
          event.requestId,
          [event.agent[0]?.who, event.entity[0]?.patient, event.entity[0]?.detail],
        ]),
      )
      assert.equal(events.length, 3)
      assert.deepEqual(byRequest.get(requests[0]), [
        first.deviceId,
        patients[0].pseudonym,
        {
          created: 1 + firstCreated,
          device: first.deviceId,
          duplicates: 1 - firstCreated,
          conflicts: 0,
          rejected: 0,
        },
      ])
      assert.deepEqual(byRequest.get(requests[1]), [
        second.deviceId,
        patients[1].pseudonym,
        { created: 1, device: second.deviceId, duplicates: 0, conflicts: 0, rejected: 0 },
      ])
      assert.deepEqual(byRequest.get(requests[2]), [
        first.deviceId,
        patients[0].pseudonym,
        {
          created: 1 - firstCreated,
          device: first.deviceId,
          duplicates: firstCreated,
          conflicts: 0,
          rejected: 1,
        },
      ])
    })
  })
}
