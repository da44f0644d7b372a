import assert from 'node:assert/strict'
import { test } from 'node:test'

import { ReadingBudget } from './reading-budget.js'

test("lets a device send a minute's worth of readings at once, then refills at the model's rate", () => {
  const budget = new ReadingBudget()
  const start = 1_000_000
  budget.take('cuff', 60, 60, start)
  assert.throws(() => budget.take('cuff', 1, 60, start), {
    code: 'ERR_RATE_LIMITED',
    details: { retryAfterSeconds: 1 },
  })
  budget.take('cuff', 1, 60, start + 1000)
  assert.throws(() => budget.take('cuff', 30, 60, start + 1000), {
    code: 'ERR_RATE_LIMITED',
    details: { retryAfterSeconds: 30 },
  })
  budget.take('cuff', 30, 60, start + 31_000)
})

test('refuses a batch larger than a whole minute allows, so the device sends smaller ones', () => {
  const budget = new ReadingBudget()
  assert.throws(() => budget.take('cuff', 61, 60), {
    code: 'ERR_PAYLOAD_TOO_LARGE',
    message: /allows 60 readings a minute; a batch of 61 can never fit/,
  })
  budget.take('cuff', 60, 60)
})

test('keeps one budget per device', () => {
  const budget = new ReadingBudget()
  budget.take('first', 10, 10, 0)
  budget.take('second', 10, 10, 0)
  assert.throws(() => budget.take('first', 1, 10, 0), { code: 'ERR_RATE_LIMITED' })
})
