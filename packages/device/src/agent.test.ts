import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { TestContext } from 'node:test'

import { DeviceAgent } from './agent.js'
import type { AgentCounters } from './agent.js'
import { DurableQueue } from './queue.js'
import { TestDeviceEndpoint, makePki } from '../test/device-endpoint.js'
import type { EndpointOptions, TestPki } from '../test/device-endpoint.js'
import { enrolledDevice, spo2, temporaryDirectory } from '../test/support.js'

const fastRetry = { baseDelayMs: 20, maxDelayMs: 200 }

async function setUp(
  t: TestContext,
  options: Omit<EndpointOptions, 'pki'> = {},
  batchSize = 100,
): Promise<{
  pki: TestPki
  endpoint: TestDeviceEndpoint
  queue: DurableQueue
  agent: DeviceAgent
}> {
  const pki = await makePki()
  const endpoint = await TestDeviceEndpoint.start({ pki, ...options })
  t.after(() => endpoint.close())
  const directory = temporaryDirectory(t)
  const client = await enrolledDevice(endpoint, pki, directory)
  t.after(() => client.close())
  const queue = await DurableQueue.open(`${directory}/queue`)
  const agent = new DeviceAgent({ queue, client, batchSize, retry: fastRetry })
  t.after(async () => {
    await agent.stop()
    await queue.close()
  })
  return { pki, endpoint, queue, agent }
}

async function enqueueMany(queue: DurableQueue, count: number): Promise<string[]> {
  const ids: string[] = []
  for (let i = 0; i < count; i++) ids.push(await queue.enqueue(spo2(80 + (i % 20))))
  return ids
}

// Every reading the device let go of is stored exactly once, and nothing else is stored.
function assertStoredExactlyOnce(
  endpoint: TestDeviceEndpoint,
  ids: readonly string[],
  counters: AgentCounters,
) {
  const storedIds = [...endpoint.stored.keys()].map((key) => key.split('/')[1])
  assert.deepEqual(new Set(storedIds), new Set(ids))
  assert.equal(endpoint.stored.size, counters.accepted + counters.duplicate)
  for (const [key, times] of endpoint.created) assert.equal(times, 1, `${key} stored once`)
}

test('delivers the queue in batches of the configured size, oldest first', async (t) => {
  const { endpoint, queue, agent } = await setUp(t, {}, 100)
  const ids = await enqueueMany(queue, 250)
  const progress: AgentCounters[] = []
  agent.on('progress', (counters) => progress.push(counters))

  await agent.drain()

  assert.deepEqual(
    endpoint.requests.map((request) => request.messageIds.length),
    [100, 100, 50],
  )
  assert.deepEqual(
    endpoint.requests.flatMap((request) => request.messageIds),
    ids,
  )
  assert.equal(queue.size, 0)
  assert.deepEqual(agent.counters, {
    sent: 250,
    accepted: 250,
    duplicate: 0,
    rejected: 0,
    queued: 0,
    retries: 0,
  })
  assert.deepEqual(
    progress.map((counters) => counters.queued),
    [150, 50, 0],
  )
  assertStoredExactlyOnce(endpoint, ids, agent.counters)
})

test('keeps delivering readings enqueued while it runs', async (t) => {
  const { endpoint, queue, agent } = await setUp(t)
  agent.start()
  await agent.drain()
  const ids = await enqueueMany(queue, 5)
  await agent.drain()
  assert.equal(queue.size, 0)
  assertStoredExactlyOnce(endpoint, ids, agent.counters)
})

test('waits what Retry-After asks after a 429 before sending again', async (t) => {
  const { endpoint, queue, agent } = await setUp(t, {
    interfere: ({ number }) =>
      number === 1 ? { kind: 'refuse', status: 429, retryAfter: '1' } : { kind: 'answer' },
  })
  const ids = await enqueueMany(queue, 10)
  const waits: number[] = []
  agent.on('retry', (_error, delayMs) => waits.push(delayMs))

  await agent.drain()

  assert.equal(endpoint.requests.length, 2)
  const [refused, accepted] = endpoint.requests
  assert.equal(refused!.outcome, 'refused')
  assert.ok(accepted!.at - refused!.at >= 1000, `waited ${accepted!.at - refused!.at} ms`)
  assert.ok(waits[0]! >= 1000 && waits[0]! < 1000 + fastRetry.baseDelayMs)
  assert.equal(agent.counters.retries, 1)
  assertStoredExactlyOnce(endpoint, ids, agent.counters)
})

test('backs off through 503s and recovers when the endpoint does', async (t) => {
  const { endpoint, queue, agent } = await setUp(t, {
    interfere: ({ number }) => (number <= 3 ? { kind: 'refuse', status: 503 } : { kind: 'answer' }),
  })
  const ids = await enqueueMany(queue, 30)

  await agent.drain()

  assert.deepEqual(
    endpoint.requests.map((request) => request.outcome),
    ['refused', 'refused', 'refused', 'answered'],
  )
  assert.equal(agent.counters.retries, 3)
  assert.equal(agent.counters.sent, 120)
  assertStoredExactlyOnce(endpoint, ids, agent.counters)
})

test('loses nothing and stores nothing twice when the endpoint dies mid-stream and comes back', async (t) => {
  const started: { endpoint?: TestDeviceEndpoint } = {}
  const crashes: Promise<void>[] = []
  const restartLater = () => {
    const pause = new Promise((resolve) => setTimeout(resolve, 300))
    crashes.push(pause.then(() => started.endpoint!.restart()))
  }
  const setup = await setUp(
    t,
    {
      interfere: ({ number }) => {
        // The second batch is stored but never answered; the fourth dies before storing.
        if (number === 2 || number === 4) {
          restartLater()
          return { kind: 'crash', afterStoring: number === 2 }
        }
        return { kind: 'answer' }
      },
    },
    40,
  )
  started.endpoint = setup.endpoint
  const { endpoint, queue, agent } = setup
  const ids = await enqueueMany(queue, 200)

  await agent.drain()
  await Promise.all(crashes)

  const outcomes = endpoint.requests.map((request) => request.outcome)
  assert.equal(outcomes.filter((outcome) => outcome === 'crashed').length, 2)
  assert.equal(queue.size, 0)
  assert.equal(agent.counters.duplicate, 40, 'the batch stored before the crash came back 200')
  assert.equal(agent.counters.accepted, 160)
  assert.ok(agent.counters.retries >= 2)
  assertStoredExactlyOnce(endpoint, ids, agent.counters)
})

test('rejects readings answered 422 once and never sends them again', async (t) => {
  const { endpoint, queue, agent } = await setUp(
    t,
    {
      validate: (observation) => {
        const quantity = observation['valueQuantity'] as { value: number }
        return quantity.value > 100 ? 'value: SpO2 above 100 %' : undefined
      },
    },
    4,
  )
  const good = await enqueueMany(queue, 3)
  const bad = await queue.enqueue(spo2(140))
  const later = await enqueueMany(queue, 5)

  await agent.drain()

  const sent = endpoint.requests.flatMap((request) => request.messageIds)
  assert.equal(sent.filter((id) => id === bad).length, 1, 'the refused reading went out once')
  assert.equal(agent.counters.rejected, 1)
  assert.equal(queue.rejected, 1)
  const [rejected] = await queue.rejectedReadings()
  assert.equal(rejected!.messageId, bad)
  assert.equal(rejected!.reason, 'invalid: value: SpO2 above 100 %')
  assertStoredExactlyOnce(endpoint, [...good, ...later], agent.counters)
})

test('splits a batch refused as too large until the reading at fault stands alone', async (t) => {
  const { endpoint, queue, agent } = await setUp(t, { bodyLimitBytes: 6000 }, 16)
  const small = await enqueueMany(queue, 7)
  const huge = await queue.enqueue({ ...spo2(), note: [{ text: 'x'.repeat(8000) }] })
  const after = await enqueueMany(queue, 8)

  await agent.drain()

  assert.equal(queue.size, 0)
  const [rejected] = await queue.rejectedReadings()
  assert.equal(rejected!.messageId, huge)
  assert.match(rejected!.reason, /413 ERR_PAYLOAD_TOO_LARGE/)
  assertStoredExactlyOnce(endpoint, [...small, ...after], agent.counters)
})

test('full jitter stays below a ceiling that doubles up to the cap', () => {
  const high = new DeviceAgent({
    queue: {} as DurableQueue,
    client: { sendBatch: async () => [] },
    retry: { baseDelayMs: 100, maxDelayMs: 1000, maxRetryAfterMs: 5000 },
    random: () => 0.999999,
  })
  assert.deepEqual(
    [1, 2, 3, 4, 5, 9].map((attempt) => Math.round(high.delayFor(attempt))),
    [100, 200, 400, 800, 1000, 1000],
  )
  assert.equal(Math.round(high.delayFor(1, 2000)), 2100, 'Retry-After plus up to one base delay')
  assert.equal(Math.round(high.delayFor(1, 60_000)), 5100, 'Retry-After is cut to its cap')

  const low = new DeviceAgent({
    queue: {} as DurableQueue,
    client: { sendBatch: async () => [] },
    random: () => 0,
  })
  assert.equal(low.delayFor(7), 0)
  assert.equal(low.delayFor(1, 3000), 3000, 'never sooner than Retry-After')
})
