import assert from 'node:assert/strict'
import { test } from 'node:test'

import { checkWipeReport, wipeReportSigningInput, type WipeReport } from './device-commands.js'
import { utf8Decode } from './encoding.js'

const report: WipeReport = {
  command: '3f1c2b9e-8d4a-4e5f-9a6b-7c8d9e0f1a2b',
  device: '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d',
  erased: {
    queuedReadings: 12,
    rejectedReadings: 1,
    keys: ['a'.repeat(64)],
    certificates: ['1f2e3d'],
  },
  erasedAt: '2026-12-04T10:00:00.000Z',
}

test('a well-formed wipe report passes unchanged', () => {
  assert.deepEqual(checkWipeReport(structuredClone(report)), report)
})

test('signs a fixed context line, then the canonical JSON of the report', () => {
  const reordered = {
    erasedAt: report.erasedAt,
    erased: report.erased,
    device: report.device,
    command: report.command,
  }
  const text = utf8Decode(wipeReportSigningInput(reordered))
  assert.equal(text, utf8Decode(wipeReportSigningInput(report)), 'member order does not matter')
  assert.ok(text.startsWith('ward-device-wipe-report:v1\n{"command":'))
})

test('refuses reports that carry anything else, naming the field', () => {
  const cases: [unknown, RegExp][] = [
    [{ ...report, note: 'x' }, /report\.note is not allowed/],
    [
      { ...report, erased: { ...report.erased, readings: [] } },
      /report\.erased\.readings is not allowed/,
    ],
    [{ ...report, command: 'nope' }, /report\.command must be a UUID/],
    [
      { ...report, erased: { ...report.erased, queuedReadings: -1 } },
      /queuedReadings must be a whole number/,
    ],
    [
      { ...report, erased: { ...report.erased, keys: ['A'.repeat(64)] } },
      /keys\[0\] must be 64 lowercase hex/,
    ],
    [{ ...report, erased: { ...report.erased, certificates: Array(65).fill('01') } }, /at most 64/],
    [{ ...report, erasedAt: 'yesterday' }, /erasedAt must be an ISO 8601 UTC time/],
    [[], /report must be an object/],
  ]
  for (const [value, message] of cases) {
    assert.throws(
      () => checkWipeReport(value),
      (error: { code?: string; message: string }) =>
        error.code === 'ERR_INPUT_INVALID' && message.test(error.message),
      String(message),
    )
  }
})
