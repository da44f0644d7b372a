import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'

import { messageIdOf } from './fhir.js'
import type { Observation } from './fhir.js'
import { retime, simulate } from './simulate.js'
import { TestDeviceEndpoint, makePki } from '../test/device-endpoint.js'
import { enrolledDevice, spo2, temporaryDirectory } from '../test/support.js'

test('runs several devices at once, each with its own identity, and delivers every reading', async (t) => {
  const pki = await makePki()
  const endpoint = await TestDeviceEndpoint.start({ pki })
  t.after(() => endpoint.close())
  const lines: string[] = []
  const heartRate: Observation = {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    effectivePeriod: { start: '2020-01-01T00:00:00.000Z', end: '2020-01-01T00:01:00.000Z' },
    valueQuantity: { value: 72, unit: 'beats/minute' },
  }
  const started = Date.now()

  const summary = await simulate({
    devices: 3,
    rate: 20,
    duration: 1.5,
    templates: [spo2(), heartRate],
    directory: temporaryDirectory(t),
    connect: ({ directory }) => enrolledDevice(endpoint, pki, directory),
    retry: { baseDelayMs: 20 },
    progress: (line) => lines.push(line),
  })

  assert.equal(summary.devices, 3)
  assert.equal(summary.generated, 90, '3 devices × 20 readings a second × 1.5 s')
  assert.equal(summary.accepted, 90)
  assert.equal(summary.queued, 0)
  assert.equal(endpoint.stored.size, 90)
  assert.equal(new Set(endpoint.requests.map((request) => request.deviceId)).size, 3)
  assert.ok(lines.length >= 2, 'a progress line a second, and a final one')
  // The first line comes about a second in; a loaded machine may hold the timer back long
  // enough for it to round to a later second.
  assert.match(
    lines[0]!,
    /^[1-9]\d*s devices=3 rate=\d+\/s accepted=\d+ duplicate=0 rejected=0 queued=\d+/,
  )
  assert.match(lines.at(-1)!, /^done devices=3 .*accepted=90 .*queued=0/)

  for (const observation of endpoint.stored.values()) {
    assert.ok(messageIdOf(observation) !== undefined)
    const time = Date.parse(observation.effectiveDateTime ?? observation.effectivePeriod!.end!)
    assert.ok(time >= started - 1000 && time <= Date.now(), 'timed now, not at the template time')
  }
})

test('retimes a template to now, keeping the length of an effective period', () => {
  const now = new Date('2025-06-01T08:00:00.000Z')
  const period = retime(
    {
      resourceType: 'Observation',
      effectivePeriod: { start: '2020-01-01T00:00:00Z', end: '2020-01-01T00:05:00Z' },
      issued: '2020-01-01T00:06:00Z',
    },
    now,
  )
  assert.deepEqual(period.effectivePeriod, {
    start: '2025-06-01T07:55:00.000Z',
    end: '2025-06-01T08:00:00.000Z',
  })
  assert.equal(period['issued'], '2025-06-01T08:00:00.000Z')

  const template: Observation = { resourceType: 'Observation', effectiveDateTime: '2020-01-01' }
  assert.equal(retime(template, now).effectiveDateTime, '2025-06-01T08:00:00.000Z')
  assert.equal(template.effectiveDateTime, '2020-01-01', 'the template itself is untouched')
})

test('keeps each device in the directory directoryOf names, queue and identity together', async (t) => {
  const pki = await makePki()
  const endpoint = await TestDeviceEndpoint.start({ pki })
  t.after(() => endpoint.close())
  const root = temporaryDirectory(t)
  const serials = ['PO-A', 'PO-B']
  const seen: string[] = []
  const summary = await simulate({
    devices: 2,
    rate: 5,
    duration: 0.5,
    templates: [spo2()],
    directory: root,
    directoryOf: (index) => join(root, serials[index]!),
    connect: ({ directory }) => {
      seen.push(directory)
      return enrolledDevice(endpoint, pki, directory)
    },
    retry: { baseDelayMs: 20 },
    progress: () => undefined,
  })
  assert.equal(summary.accepted, summary.generated)
  assert.deepEqual(seen, [join(root, 'PO-A'), join(root, 'PO-B')])
  for (const serial of serials) assert.ok(existsSync(join(root, serial, 'queue')))
  assert.ok(!existsSync(join(root, 'device-0')))
})
