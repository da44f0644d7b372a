import assert from 'node:assert/strict'
import { test } from 'node:test'

import { AddressRateLimit } from './rate-limit.js'

test('refuses an address past its limit until the window ends, naming the wait', () => {
  const limit = new AddressRateLimit(3, 60_000)
  for (let i = 0; i < 3; i += 1) limit.take('192.0.2.1', 1_000)
  assert.throws(
    () => limit.take('192.0.2.1', 2_000),
    (error: Error & { code?: string; details?: Record<string, unknown> }) =>
      error.code === 'ERR_RATE_LIMITED' && error.details?.['retryAfterSeconds'] === 59,
  )
  assert.doesNotThrow(() => limit.take('192.0.2.2', 2_000))
  assert.doesNotThrow(() => limit.take('192.0.2.1', 61_000))
})

test('stays bounded when many addresses call once', () => {
  const limit = new AddressRateLimit(1, 60_000, 100)
  for (let i = 0; i < 1_000; i += 1) limit.take(`198.51.100.${i}`, i)
  assert.throws(() => {
    limit.take('198.51.100.999', 1_000)
  })
})
