import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { isWardError } from '@ward/core'

import { toOperationOutcome } from './fhir-resources.js'
import { parseSearch, storedCodes, type SearchSpec } from './fhir-search.js'

const spec: SearchSpec = { date: 'date', code: 'token', _count: 'count', patient: 'patient' }
const range = (...dates: string[]) => parseSearch('Observation', { date: dates }, spec).range

describe('FHIR search parameters', () => {
  test('a date stands for the interval its precision implies', () => {
    assert.deepEqual(range('2026-03-01'), {
      from: '2026-03-01T00:00:00.000Z',
      to: '2026-03-02T00:00:00.000Z',
    })
    assert.deepEqual(range('eq2026-02'), {
      from: '2026-02-01T00:00:00.000Z',
      to: '2026-03-01T00:00:00.000Z',
    })
    assert.deepEqual(range('2026'), {
      from: '2026-01-01T00:00:00.000Z',
      to: '2027-01-01T00:00:00.000Z',
    })
    assert.deepEqual(range('2026-03-01T10:15+02:00'), {
      from: '2026-03-01T08:15:00.000Z',
      to: '2026-03-01T08:16:00.000Z',
    })
    assert.deepEqual(range('2026-03-01T10:15:30.25Z'), {
      from: '2026-03-01T10:15:30.250Z',
      to: '2026-03-01T10:15:30.260Z',
    })
  })

  test('ge and gt bound from below, le and lt from above, and bounds intersect', () => {
    assert.deepEqual(range('ge2026-03-01'), { from: '2026-03-01T00:00:00.000Z' })
    assert.deepEqual(range('gt2026-03-01'), { from: '2026-03-02T00:00:00.000Z' })
    assert.deepEqual(range('lt2026-03-01'), { to: '2026-03-01T00:00:00.000Z' })
    assert.deepEqual(range('le2026-03-01'), { to: '2026-03-02T00:00:00.000Z' })
    assert.deepEqual(range('ge2026-03-01T00:00:00Z', 'lt2026-03-01T12:00:00-05:00'), {
      from: '2026-03-01T00:00:00.000Z',
      to: '2026-03-01T17:00:00.000Z',
    })
  })

  test('refuses dates that are not on the calendar, lack a zone or fall outside the years', () => {
    assert.ok(range('2028-02-29') !== undefined)
    for (const bad of [
      '2026-02-29',
      '2026-13-01',
      '2026-03-01T24:00:00Z',
      '2026-03-01T10:00:00',
      '2026-03-01T10:00:00+15:00',
      '1899-12-31',
      '3000-01-01',
      'sa2026-03-01',
      '2026-3-1',
    ]) {
      assert.throws(
        () => range(bad),
        (error) => isWardError(error, 'ERR_INPUT_INVALID') && error.details['parameter'] === 'date',
        bad,
      )
    }
  })

  test('takes codes as system|code and finds the bare LOINC form stored too', () => {
    const parsed = parseSearch(
      'Observation',
      new URLSearchParams('code=http://loinc.org|8867-4,urn:iso:std:iso:11073:10101|150456'),
      spec,
    )
    assert.deepEqual(storedCodes(parsed.codes ?? []), [
      'http://loinc.org|8867-4',
      '8867-4',
      'urn:iso:std:iso:11073:10101|150456',
    ])
  })

  test('bounds the codes of one search', () => {
    const code = (i: number) => `urn:example:a-long-code-system-name-${'x'.repeat(40)}|${i}`
    assert.throws(
      () =>
        parseSearch(
          'Observation',
          { code: Array.from({ length: 14 }, (_, i) => code(i)).join(',') },
          spec,
        ),
      (error) =>
        isWardError(error, 'ERR_INPUT_INVALID') && /at most 1000 characters/.test(error.message),
    )
    assert.throws(
      () =>
        parseSearch(
          'Observation',
          { code: Array.from({ length: 21 }, (_, i) => `urn:x|${i}`).join(',') },
          spec,
        ),
      (error) => isWardError(error, 'ERR_INPUT_INVALID') && /at most 20 codes/.test(error.message),
    )
  })

  test('names an unknown parameter and the allowed ones, and never echoes a value', () => {
    assert.throws(
      () => parseSearch('Observation', { name: 'Alex Testpatient' }, spec),
      (error) =>
        isWardError(error, 'ERR_INPUT_INVALID') &&
        error.message ===
          'Observation search parameter name is not supported; allowed: date, code, _count, patient',
    )
    assert.throws(
      () => parseSearch('Observation', { '<script>': '1' }, spec),
      (error) => isWardError(error) && error.message.includes('(unprintable name)'),
    )
    // A date whose first two letters are no prefix FHIR knows: they are the value's, unsaid.
    assert.throws(
      () => parseSearch('Observation', { date: 'xxSECRETxx' }, spec),
      (error) =>
        isWardError(error, 'ERR_INPUT_INVALID') &&
        error.message.includes('its prefix is not supported') &&
        !error.message.includes('xx'),
    )
    assert.throws(
      () => parseSearch('Observation', { date: 'sa2026-01-01' }, spec),
      (error) => isWardError(error) && error.message.includes('prefix sa is not supported'),
    )
  })
})

describe('OperationOutcome', () => {
  test('keeps the code and parameter of Ward errors and says nothing of other errors', () => {
    let caught: unknown
    try {
      parseSearch('Observation', { _count: '0' }, spec)
    } catch (error) {
      caught = error
    }
    assert.deepEqual(toOperationOutcome(caught), {
      resourceType: 'OperationOutcome',
      issue: [
        {
          severity: 'error',
          code: 'invalid',
          diagnostics:
            'ERR_INPUT_INVALID: Observation search parameter _count must be an integer 1–1000',
          expression: ['_count'],
        },
      ],
    })
    const outcome = toOperationOutcome(new Error('row for Alex Testpatient born 1970-01-01'))
    assert.deepEqual(outcome.issue, [
      { severity: 'error', code: 'exception', diagnostics: 'internal error' },
    ])
  })
})
