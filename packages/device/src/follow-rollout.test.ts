import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { reasonCode, simulatedHealthy } from './follow-rollout.js'

describe('following a rollout', () => {
  test('refusal reasons become the codes update-status takes', () => {
    const code = /^[a-z0-9][a-z0-9._-]{0,63}$/
    const cases: [string, string][] = [
      ['ExpiredMetadataError', 'expired-metadata-error'],
      ['below-min-version', 'below-min-version'],
      ['DownloadLengthMismatchError', 'download-length-mismatch-error'],
      ['--Weird reason!', 'weird-reason-'],
      ['', 'update-refused'],
      ['!!!', 'update-refused'],
    ]
    for (const [reason, expected] of cases) {
      assert.equal(reasonCode(reason), expected, reason)
      assert.match(reasonCode(reason), code)
    }
    assert.equal(reasonCode('A'.repeat(200)).length, 64)
  })

  test('the simulated health check fails the same devices, about the share asked for', () => {
    const serials = Array.from({ length: 10_000 }, (_, index) => `SN-${index}`)
    const failing = serials.filter((serial) => !simulatedHealthy(serial, 0.3))
    assert.ok(Math.abs(failing.length - 3000) < 200, `${failing.length} of 10000 failed`)
    // The same serials fail every time, and a lower rate fails a subset of them.
    assert.deepEqual(
      serials.filter((serial) => !simulatedHealthy(serial, 0.3)),
      failing,
    )
    const fewer = serials.filter((serial) => !simulatedHealthy(serial, 0.1))
    assert.ok(fewer.every((serial) => failing.includes(serial)))
    assert.ok(serials.every((serial) => simulatedHealthy(serial, 0)))
    assert.ok(serials.every((serial) => !simulatedHealthy(serial, 1)))
    for (const rate of [-0.1, 1.5, Number.NaN]) {
      assert.throws(() => simulatedHealthy('SN-1', rate), /fail rate must be a number from 0 to 1/)
    }
  })
})
