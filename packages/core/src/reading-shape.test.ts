import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { checkObservation, type DeviceModelPolicy } from './device-policy.js'
import { isWardError } from './errors.js'
import { maxReadingDepth } from './reading-shape.js'

const policy: DeviceModelPolicy = {
  maxReadingsPerMinute: 60,
  measurements: [
    {
      codes: [{ system: 'http://loinc.org', code: '59408-5' }],
      display: 'SpO2',
      value: { kind: 'quantity', units: [{ unit: '%', min: 50, max: 100 }] },
    },
  ],
}
const subject = 'Patient/own-pseudonym'
const now = Date.parse('2026-06-01T12:00:00Z')

function reading(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    resourceType: 'Observation',
    status: 'final',
    identifier: [{ system: 'urn:ward:device-message-id', value: 'm-1' }],
    code: { coding: [{ system: 'http://loinc.org', code: '59408-5' }] },
    effectiveDateTime: '2026-06-01T11:59:00Z',
    valueQuantity: { value: 97, unit: '%', system: 'http://unitsofmeasure.org', code: '%' },
    ...extra,
  }
}

/** The rejection reason for `resource`, or undefined when it is accepted. */
function reason(resource: unknown): string | undefined {
  try {
    checkObservation(resource, policy, subject, now)
    return undefined
  } catch (error) {
    if (!isWardError(error, 'ERR_READING_REJECTED')) throw error
    return error.message
  }
}

describe('checkObservation refuses what a device reading may not hold', () => {
  test('accepts a plain reading, and one naming its own patient as subject and performer', () => {
    assert.equal(reason(reading()), undefined)
    assert.equal(
      reason(reading({ subject: { reference: subject }, performer: [{ reference: subject }] })),
      undefined,
    )
  })

  test('refuses any reference to another patient or person, naming the element, not the value', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ performer: [{ reference: 'Patient/someone-else' }] }, 'Observation.performer[0]'],
      [
        { performer: [{ reference: 'https://x.example/fhir/RelatedPerson/r1' }] },
        'Observation.performer[0]',
      ],
      [
        { performer: [{ type: 'Patient', identifier: { value: 'MRN-1' } }] },
        'Observation.performer[0]',
      ],
      [{ derivedFrom: [{ reference: 'Person/p1/_history/2' }] }, 'Observation.derivedFrom[0]'],
      [
        { performer: [{ reference: 'Patient?identifier=urn:mrn|MRN-1' }] },
        'Observation.performer[0]',
      ],
      [
        {
          performer: [
            { type: 'http://hl7.org/fhir/StructureDefinition/RelatedPerson', display: 'other' },
          ],
        },
        'Observation.performer[0]',
      ],
      [{ device: { reference: 'Device/d1', type: 'Device' } }, ''],
      [
        { extension: [{ url: 'urn:x', valueReference: { reference: 'Patient/other' } }] },
        'Observation.extension[0].valueReference',
      ],
    ]
    for (const [extra, element] of cases) {
      const why = reason(reading(extra))
      if (element === '') {
        assert.equal(why, undefined, 'a Device reference is no person')
        continue
      }
      assert.ok(why?.startsWith(`${element} may refer to a Patient`), `${element}: ${why}`)
      assert.doesNotMatch(String(why), /someone-else|r1|MRN-1|p1|other/)
    }
  })

  test('refuses contained resources and top-level elements outside the allowlist, by name', () => {
    const contained = reason(
      reading({
        contained: [
          { resourceType: 'Patient', name: [{ family: 'Doe' }], birthDate: '1970-01-01' },
        ],
      }),
    )
    assert.equal(
      contained,
      'Observation.contained is not allowed: a reading may hold no other resource',
    )
    assert.doesNotMatch(contained, /Doe|1970/)
    assert.equal(
      reason(reading({ focus: [{ reference: 'Patient/someone-else' }] })),
      'Observation.focus is not an element a device may send',
    )
    assert.equal(
      reason(reading({ modifierExtension: [] })),
      'Observation.modifierExtension is not an element a device may send',
    )
    assert.equal(
      reason(reading({ 'x"<script>': 1 })),
      'Observation.(an invalid element name) is not an element a device may send',
    )
    assert.match(
      String(reason(reading({ component: [{ contained: [] }] }))),
      /^Observation\.component\[0\]\.contained is not allowed/,
    )
  })

  test('refuses non-finite numbers anywhere, naming the element', () => {
    const parsed = JSON.parse(
      '{"resourceType":"Observation","valueQuantity":{"value":1e400}}',
    ) as Record<string, unknown>
    assert.equal((parsed['valueQuantity'] as { value: number }).value, Infinity)
    assert.equal(
      reason(reading({ valueQuantity: parsed['valueQuantity'] })),
      'Observation.valueQuantity.value must be a finite number',
    )
    assert.equal(
      reason(reading({ referenceRange: [{ low: { value: -Infinity } }] })),
      'Observation.referenceRange[0].low.value must be a finite number',
    )
  })

  test('refuses effective times in the future beyond the clock skew, or older than ten years', () => {
    assert.equal(reason(reading({ effectiveDateTime: '2026-06-01T12:04:00Z' })), undefined)
    assert.equal(
      reason(reading({ effectiveDateTime: '2099-01-01T00:00:00Z' })),
      "Observation effective time may be at most 5 minutes ahead of Ward's clock",
    )
    assert.equal(
      reason(reading({ effectiveDateTime: '2026-06-01T12:06:00Z' })),
      "Observation effective time may be at most 5 minutes ahead of Ward's clock",
    )
    assert.equal(
      reason(reading({ effectiveDateTime: '1900-01-01T00:00:00Z' })),
      'Observation effective time may be at most 10 years in the past',
    )
    assert.equal(reason(reading({ effectiveDateTime: '2017-01-01T00:00:00Z' })), undefined)
  })

  test('refuses deep nesting without exhausting the stack, naming the limit', () => {
    let deep: unknown = 1
    for (let level = 0; level < 5000; level += 1) deep = [deep]
    assert.equal(
      reason(reading({ note: [{ text: 'x', extension: deep }] })),
      `Observation.note[0].extension${'[0]'.repeat(maxReadingDepth - 3)} nests deeper than the ${maxReadingDepth} levels a reading may have`,
    )
    let nested: Record<string, unknown> = {}
    const top = nested
    for (let level = 0; level < maxReadingDepth - 2; level += 1) {
      const inner = {}
      nested['extension'] = inner
      nested = inner
    }
    assert.equal(reason(reading({ meta: top })), undefined)
    nested['extension'] = {}
    assert.match(String(reason(reading({ meta: top }))), /nests deeper than the 32 levels/)
  })
})
