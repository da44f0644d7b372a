import assert from 'node:assert/strict'
import { test } from 'node:test'

import { utf8Decode } from '@ward/core'

import { systemContext } from '../context.js'
import { buildAuditEvent, encodeAuditEvent, maxAuditEventBytes, type AuditEvent } from './index.js'

const input = {
  type: { code: '110100', display: 'Application Activity' },
  operation: 'organization.create',
  action: 'C' as const,
  entity: [{ type: 'organization', what: 'b1c0ffee', detail: { slug: 'acme' } }],
}

test('builds an event after FHIR AuditEvent from the operation context', () => {
  const context = {
    ...systemContext('test'),
    actor: { type: 'operator' as const, id: 'cli:alice', address: '127.0.0.1' },
  }
  const event = buildAuditEvent(context, 'ward.test', input, new Date('2026-01-02T03:04:05.678Z'))
  assert.equal(event.recorded, '2026-01-02T03:04:05.678Z')
  assert.deepEqual(event.type, {
    system: 'http://dicom.nema.org/resources/ontology/DCM',
    code: '110100',
    display: 'Application Activity',
  })
  assert.deepEqual(event.subtype, {
    system: 'urn:ward:audit-operation',
    code: 'organization.create',
  })
  assert.equal(event.outcome, '0')
  assert.deepEqual(event.purposeOfUse, ['HSYSADMIN'])
  assert.deepEqual(event.agent, [
    { type: 'operator', who: 'cli:alice', requestor: true, network: { address: '127.0.0.1' } },
  ])
  assert.equal(event.requestId, context.requestId)
  assert.deepEqual(event.policy, { decision: 'permit', rule: 'system-task' })
})

test("records the workforce's network address, never a patient's or a device's", () => {
  const at = (actor: Parameters<typeof buildAuditEvent>[0]['actor']) =>
    buildAuditEvent({ ...systemContext('test'), actor }, 'ward.test', input).agent[0]?.network
  const address = '192.0.2.7'
  assert.deepEqual(at({ type: 'user', id: 'u-clinician', role: 'clinician', address }), {
    address,
  })
  assert.equal(
    at({ type: 'user', id: 'u-patient', role: 'patient', address, patient: true }),
    undefined,
  )
  // A patient acting in a workforce role is still a patient.
  assert.equal(
    at({ type: 'user', id: 'u-both', role: 'clinician', address, patient: true }),
    undefined,
  )
  assert.equal(at({ type: 'device', id: 'd-1', address }), undefined)
})

test('gives every event a fresh random id, so equal events have different leaves', () => {
  const first = buildAuditEvent(systemContext('test'), 'ward.test', input)
  const second = buildAuditEvent(systemContext('test'), 'ward.test', input)
  assert.notEqual(first.id, second.id)
  assert.match(first.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
})

test('encodes the leaf as RFC 8785 canonical JSON', () => {
  const event = buildAuditEvent(systemContext('test'), 'ward.test', input)
  const text = utf8Decode(encodeAuditEvent(event))
  assert.ok(text.startsWith('{"action":"C","agent":['))
  assert.equal(text, JSON.stringify(JSON.parse(text)))
})

test('refuses fields the schema does not know, naming them, so free text cannot carry PHI', () => {
  const event = buildAuditEvent(systemContext('test'), 'ward.test', input)
  const withNote = { ...event, note: 'Jane Doe, born 1970-01-01' } as unknown as AuditEvent
  assert.throws(() => encodeAuditEvent(withNote), { code: 'ERR_AUDIT_EVENT_INVALID' })
  const nested = {
    ...event,
    entity: [{ type: 'Patient', what: 'p1', detail: { name: { given: 'Jane' } } }],
  } as unknown as AuditEvent
  assert.throws(() => encodeAuditEvent(nested), /audit event field \/entity\/0\/detail\/name/)
})

test(`refuses an event larger than ${maxAuditEventBytes} bytes`, () => {
  const event = buildAuditEvent(systemContext('test'), 'ward.test', {
    ...input,
    entity: Array.from({ length: 100 }, (_, i) => ({
      type: 'Observation',
      what: `o${i}`,
      detail: Object.fromEntries(Array.from({ length: 10 }, (_, j) => [`k${j}`, 'x'.repeat(1000)])),
    })),
  })
  assert.throws(() => encodeAuditEvent(event), /at most 65535 allowed/)
})
