import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'

import { maxReadingDepth } from '@ward/core'

import { dialects } from '../../test/support.js'
import { systemContext } from '../context.js'
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
  type TestOrganization,
  type TestWard,
} from './test-support.js'

/** The 422 reason of each entry of a batch-response (undefined for 200 and 201). */
function entryReasons(answer: Answer): (string | undefined)[] {
  const bundle = answer.json() as {
    entry: { response: { outcome?: { issue: { diagnostics: string }[] } } }[]
  }
  return bundle.entry.map((entry) => entry.response.outcome?.issue[0]?.diagnostics)
}

for (const { dialect, skip } of dialects) {
  describe(
    `the device endpoint refuses readings a device may not send, on ${dialect}`,
    { skip },
    () => {
      let testWard: TestWard
      let acme: TestOrganization

      before(async () => {
        testWard = await startTestWard(dialect)
        acme = await createTestOrganization(testWard.ward, 'acme')
      })
      after(() => testWard?.close())

      const newPatient = () =>
        testWard.ward.fleet.createPatient(systemContext('test'), acme.slug, {
          name: { family: 'Testpatient', given: ['Refusal'] },
          birthDate: '1981-03-03',
        })
      const stored = (patient: Patient) =>
        readObservations(testWard.ward.store.db, testWard.ward.keyring, {
          organizationId: acme.id,
          patientId: patient.id,
        })

      test('refuses another patient as performer or focus, and contained resources, storing only the good reading', async () => {
        const own = await newPatient()
        const stranger = await newPatient()
        const device = await enrollTestDevice(testWard, acme, { patient: own })
        const answer = await postAsDevice(
          testWard,
          acme,
          device,
          batchOf([
            {
              ...spo2Reading(randomUUID()),
              performer: [{ reference: `Patient/${stranger.pseudonym}` }],
            },
            {
              ...spo2Reading(randomUUID()),
              focus: [{ reference: `Patient/${stranger.pseudonym}` }],
            },
            {
              ...spo2Reading(randomUUID()),
              contained: [
                { resourceType: 'Patient', name: [{ family: 'Hidden' }], birthDate: '1950-05-05' },
              ],
            },
            {
              ...spo2Reading(randomUUID()),
              performer: [{ reference: `Patient/${own.pseudonym}` }],
            },
          ]),
        )
        assert.equal(answer.status, 200, answer.body)
        assert.deepEqual(entryStatuses(answer), [
          '422 Unprocessable Entity',
          '422 Unprocessable Entity',
          '422 Unprocessable Entity',
          '201 Created',
        ])
        assert.deepEqual(entryReasons(answer).slice(0, 3), [
          "Observation.performer[0] may refer to a Patient, RelatedPerson or Person only as the device's assigned patient, the subject",
          'Observation.focus is not an element a device may send',
          'Observation.contained is not allowed: a reading may hold no other resource',
        ])
        assert.ok(!answer.body.includes(stranger.pseudonym), 'the reason names no patient')
        assert.ok(!answer.body.includes('Hidden') && !answer.body.includes('1950'))
        assert.equal((await stored(own)).length, 1)
        assert.equal((await stored(stranger)).length, 0)
      })

      test('refuses a non-finite number and implausible effective times, naming the rule', async () => {
        const patient = await newPatient()
        const device = await enrollTestDevice(testWard, acme, { patient })
        const infinite = JSON.stringify(batchOf([spo2Reading(randomUUID())])).replace(
          '"value":97',
          '"value":1e400',
        )
        const answer = await postAsDevice(testWard, acme, device, infinite)
        assert.equal(answer.status, 200, answer.body)
        assert.deepEqual(entryReasons(answer), [
          'Observation.valueQuantity.value must be a finite number',
        ])

        const future = await postAsDevice(
          testWard,
          acme,
          device,
          batchOf([
            { ...spo2Reading(randomUUID()), effectiveDateTime: '2099-01-01T00:00:00Z' },
            { ...spo2Reading(randomUUID()), effectiveDateTime: '1900-01-01T00:00:00Z' },
          ]),
        )
        assert.deepEqual(entryReasons(future), [
          "Observation effective time may be at most 5 minutes ahead of Ward's clock",
          'Observation effective time may be at most 10 years in the past',
        ])
        assert.equal((await stored(patient)).length, 0)
      })

      test('answers a reading nested 5,000 levels deep as that reading rejected, not a 500', async () => {
        const patient = await newPatient()
        const device = await enrollTestDevice(testWard, acme, { patient })
        const reading = JSON.stringify(spo2Reading(randomUUID()))
        const deep = `${reading.slice(0, -1)},"note":[{"text":"x","extension":${'['.repeat(5000)}1${']'.repeat(5000)}}]}`
        const body = `{"resourceType":"Bundle","type":"batch","entry":[{"resource":${deep}},{"resource":${JSON.stringify(spo2Reading(randomUUID()))}}]}`
        const answer = await postAsDevice(testWard, acme, device, body)
        assert.equal(answer.status, 200, answer.body)
        assert.deepEqual(entryStatuses(answer), ['422 Unprocessable Entity', '201 Created'])
        assert.match(
          String(entryReasons(answer)[0]),
          new RegExp(`nests deeper than the ${maxReadingDepth} levels a reading may have$`),
        )

        const deepBundle = `{"resourceType":"Bundle","type":"batch","meta":${'{"extension":'.repeat(5000)}1${'}'.repeat(5000)},"entry":[{"resource":${JSON.stringify(spo2Reading(randomUUID()))}}]}`
        const refused = await postAsDevice(testWard, acme, device, deepBundle)
        assert.equal(refused.status, 400, refused.body)
        const problem = refused.json() as { code: string; detail: string }
        assert.equal(problem.code, 'ERR_PAYLOAD_INVALID')
        assert.equal(
          problem.detail,
          `the Bundle nests deeper than the ${maxReadingDepth} levels allowed`,
        )
        assert.equal((await stored(patient)).length, 1)
      })

      test('refuses a batch entry whose request is anything but POST Observation', async () => {
        const patient = await newPatient()
        const device = await enrollTestDevice(testWard, acme, { patient })
        const entries = [
          { resource: spo2Reading(randomUUID()), request: { method: 'PUT', url: 'Patient/abc' } },
          { resource: spo2Reading(randomUUID()), request: { method: 'POST', url: 'Patient' } },
          { resource: spo2Reading(randomUUID()), request: 'POST' },
          { resource: spo2Reading(randomUUID()), request: { method: 'POST', url: 'Observation' } },
          { resource: spo2Reading(randomUUID()) },
        ]
        const answer = await postAsDevice(testWard, acme, device, {
          resourceType: 'Bundle',
          type: 'batch',
          entry: entries,
        })
        assert.equal(answer.status, 200, answer.body)
        assert.deepEqual(entryStatuses(answer), [
          '422 Unprocessable Entity',
          '422 Unprocessable Entity',
          '422 Unprocessable Entity',
          '201 Created',
          '201 Created',
        ])
        assert.deepEqual(
          entryReasons(answer).slice(0, 3),
          [0, 1, 2].map(
            (index) =>
              `Bundle.entry[${index}].request must be absent or POST Observation: a device only adds readings`,
          ),
        )
        assert.equal((await stored(patient)).length, 2)
      })
    },
  )
}
