import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { appendFileSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'

import { isWardError } from '@ward/core'

import { messageIdOf, messageIdSystem } from './fhir.js'
import { DurableQueue, newMessageId } from './queue.js'
import { spo2, temporaryDirectory } from '../test/support.js'

const childScript = new URL('../test/enqueue-until-killed.ts', import.meta.url).pathname

function segments(directory: string): string[] {
  return readdirSync(directory)
    .filter((name) => name.startsWith('segment-'))
    .sort()
}

// Starts the child, waits until it reported `count` resolved enqueues, kills it with SIGKILL
// and returns every message id it reported.
async function enqueueUntilKilled(directory: string, count: number): Promise<string[]> {
  const child = spawn(
    process.execPath,
    ['--conditions=@ward/source', '--import', 'tsx', childScript, directory],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  let output = ''
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on('exit', (_code, signal) => resolve(signal)),
  )
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk: string) => {
    output += chunk
    if (output.split('\n').length > count) child.kill('SIGKILL')
  })
  const signal = await exited
  assert.equal(signal, 'SIGKILL', 'the child ran until killed')
  // A line cut short by the kill was never fully reported, so only whole lines count.
  return output.split('\n').slice(0, -1)
}

test('keeps every reading whose enqueue resolved when the process is killed mid-enqueue', async (t) => {
  const directory = temporaryDirectory(t)

  const first = await enqueueUntilKilled(directory, 300)
  const second = await enqueueUntilKilled(directory, 300)
  const reported = [...first, ...second]
  // What a kill inside write(2) leaves on a disk that tears writes: half a line, no newline.
  // The second kill may itself have landed inside a write and left a partial line; recovery
  // cuts that off together with the one added here. It may also have landed just after the
  // queue started a segment, leaving that one empty or holding only part of its first line, so
  // the whole line the torn one is cut from is the last one in any segment.
  const files = segments(directory).map((name) => join(directory, name))
  const last = files.at(-1)!
  const content = readFileSync(last, 'utf8')
  const leftByKill = Buffer.byteLength(content.slice(content.lastIndexOf('\n') + 1))
  const wholeLines = files.flatMap((file) => readFileSync(file, 'utf8').split('\n').slice(0, -1))
  const torn = wholeLines.at(-1)!.slice(0, 120)
  appendFileSync(last, torn)

  const queue = await DurableQueue.open(directory)
  t.after(() => queue.close())
  const readings = await queue.peek(100_000)
  const ids = readings.map((reading) => reading.messageId)
  assert.equal(queue.recovery.tornBytes, leftByKill + torn.length, 'the torn line is cut off')

  assert.equal(new Set(ids).size, ids.length, 'no reading is there twice')
  const present = new Set(ids)
  for (const messageId of reported) assert.ok(present.has(messageId), `${messageId} survived`)
  assert.ok(ids.length >= reported.length)
  assert.equal(queue.size, ids.length)
  for (const reading of readings) assert.equal(messageIdOf(reading.observation), reading.messageId)
  assert.ok(segments(directory).length > 1, 'the readings span several segments')
})

test('drops a torn final line and keeps the whole lines before it', async (t) => {
  const directory = temporaryDirectory(t)
  const queue = await DurableQueue.open(directory)
  const kept = [await queue.enqueue(spo2(95)), await queue.enqueue(spo2(96))]
  await queue.close()

  const segment = join(directory, segments(directory).at(-1)!)
  const whole = statSync(segment).size
  const torn = '1a2b3c4d {"messageId":"01TORN","enqueuedAt":"2025-01-0'
  appendFileSync(segment, torn)

  const reopened = await DurableQueue.open(directory)
  t.after(() => reopened.close())
  assert.deepEqual(reopened.recovery, { tornBytes: torn.length, corruptLines: 0 })
  assert.equal(statSync(segment).size, whole, 'the torn bytes are cut off the file')
  assert.deepEqual(
    (await reopened.peek(10)).map((reading) => reading.messageId),
    kept,
  )

  const next = await reopened.enqueue(spo2(97))
  assert.deepEqual(
    (await reopened.peek(10)).map((reading) => reading.messageId),
    [...kept, next],
    'appends after the cut read back whole',
  )
})

test('skips a damaged line in the middle of a segment and keeps the rest', async (t) => {
  const directory = temporaryDirectory(t)
  const queue = await DurableQueue.open(directory)
  const ids = [
    await queue.enqueue(spo2(95)),
    await queue.enqueue(spo2(96)),
    await queue.enqueue(spo2(97)),
  ]
  await queue.close()

  const segment = join(directory, segments(directory)[0]!)
  const lines = readFileSync(segment, 'utf8').split('\n')
  lines[1] = lines[1]!.replace('"value":96', '"value":69')
  writeFileSync(segment, lines.join('\n'))

  const reopened = await DurableQueue.open(directory)
  t.after(() => reopened.close())
  assert.equal(reopened.recovery.corruptLines, 1)
  assert.deepEqual(
    (await reopened.peek(10)).map((reading) => reading.messageId),
    [ids[0], ids[2]],
  )
})

test('hands out readings oldest first until acknowledged, and never after, across reopening', async (t) => {
  const directory = temporaryDirectory(t)
  const queue = await DurableQueue.open(directory)
  const ids: string[] = []
  for (let value = 90; value < 100; value++) ids.push(await queue.enqueue(spo2(value)))

  const firstPeek = await queue.peek(4)
  assert.deepEqual(
    firstPeek.map((reading) => reading.messageId),
    ids.slice(0, 4),
  )
  assert.deepEqual(
    (await queue.peek(4)).map((reading) => reading.messageId),
    ids.slice(0, 4),
    'peeking removes nothing',
  )
  assert.deepEqual(firstPeek[0]!.observation['valueQuantity'], spo2(90)['valueQuantity'])

  assert.equal(await queue.acknowledge([ids[0]!, ids[1]!, ids[1]!, 'not-queued']), 2)
  assert.equal(queue.size, 8)
  assert.equal(await queue.acknowledge([ids[0]!]), 0, 'acknowledging again changes nothing')
  await queue.close()

  const reopened = await DurableQueue.open(directory)
  t.after(() => reopened.close())
  assert.equal(reopened.size, 8)
  assert.deepEqual(
    (await reopened.peek(100)).map((reading) => reading.messageId),
    ids.slice(2),
  )
})

test('moves a rejected reading to the rejected log and never hands it out again', async (t) => {
  const directory = temporaryDirectory(t)
  const queue = await DurableQueue.open(directory)
  const [kept, refused] = [await queue.enqueue(spo2(97)), await queue.enqueue(spo2(-1))]

  assert.equal(await queue.reject(refused, 'invalid: value out of range'), true)
  assert.equal(await queue.reject(refused, 'again'), false)
  assert.equal(queue.rejected, 1)
  await queue.close()

  const reopened = await DurableQueue.open(directory)
  t.after(() => reopened.close())
  assert.deepEqual(
    (await reopened.peek(10)).map((reading) => reading.messageId),
    [kept],
  )
  const rejected = await reopened.rejectedReadings()
  assert.equal(rejected.length, 1)
  assert.equal(rejected[0]!.messageId, refused)
  assert.equal(rejected[0]!.reason, 'invalid: value out of range')
  assert.equal(messageIdOf(rejected[0]!.observation), refused)
  assert.equal(reopened.rejected, 1)
})

test('deletes settled segments and rewrites the acknowledgement log when compacting', async (t) => {
  const directory = temporaryDirectory(t)
  const queue = await DurableQueue.open(directory, { segmentBytes: 2048, compactAfter: 1_000_000 })
  const ids: string[] = []
  for (let i = 0; i < 40; i++) ids.push(await queue.enqueue(spo2(90 + (i % 10))))
  const before = segments(directory).length
  assert.ok(before >= 5, `40 readings fill several 2 KiB segments, got ${before}`)

  await queue.acknowledge(ids.slice(0, 30))
  await queue.reject(ids[30]!, 'invalid')
  const after = segments(directory)
  assert.ok(after.length < before, 'fully settled segments are deleted at once')

  const acknowledgements = join(directory, 'acknowledged.log')
  const grown = statSync(acknowledgements).size
  await queue.compact()
  assert.ok(statSync(acknowledgements).size < grown, 'the acknowledgement log shrank')
  assert.deepEqual(
    (await queue.peek(100)).map((reading) => reading.messageId),
    ids.slice(31),
  )
  await queue.close()

  const reopened = await DurableQueue.open(directory)
  t.after(() => reopened.close())
  assert.deepEqual(
    (await reopened.peek(100)).map((reading) => reading.messageId),
    ids.slice(31),
    'nothing settled comes back after compaction and reopening',
  )
  await reopened.acknowledge(ids.slice(31))
  assert.equal(reopened.size, 0)
  assert.deepEqual(segments(directory), [], 'every settled segment is gone')
})

test('keeps no delivered reading on disk once everything is settled, and goes on after', async (t) => {
  const directory = temporaryDirectory(t)
  const queue = await DurableQueue.open(directory)
  t.after(() => queue.close())
  const marker = 'delivered-reading-marker'
  const delivered = [
    await queue.enqueue({ ...spo2(95), note: [{ text: marker }] }),
    await queue.enqueue({ ...spo2(96), note: [{ text: marker }] }),
  ]
  const waiting = await queue.enqueue(spo2(97))
  await queue.acknowledge(delivered)
  assert.equal(segments(directory).length, 1, 'a segment with a waiting reading stays')

  await queue.acknowledge([waiting])
  assert.deepEqual(segments(directory), [], 'the segment being written went with its last reading')
  for (const name of readdirSync(directory)) {
    assert.ok(
      !readFileSync(join(directory, name), 'utf8').includes(marker),
      `${name} holds a reading`,
    )
  }

  const next = await queue.enqueue(spo2(98))
  assert.equal(segments(directory).length, 1)
  assert.deepEqual(
    (await queue.peek(10)).map((reading) => reading.messageId),
    [next],
  )
})

test('keeps the newest maxRejected refusals once their segments are gone, resending none', async (t) => {
  const directory = temporaryDirectory(t)
  const maxRejected = 5
  const queue = await DurableQueue.open(directory, { maxRejected })
  // One reading stays waiting, so the segment of every refusal stays on disk too: refusals
  // trimmed from the log must still not come back as waiting readings after a reopen.
  const waiting = await queue.enqueue(spo2(97))
  const refused: string[] = []
  for (let i = 0; i < 2 * maxRejected + 2; i++) {
    const messageId = await queue.enqueue(spo2(-i))
    await queue.reject(messageId, `refusal ${i}`)
    refused.push(messageId)
  }
  // Their segment holds them anyway; the log keeps them so that they stay settled.
  assert.equal(queue.rejected, refused.length, 'refusals whose segment is on disk stay logged')
  await queue.close()

  const reopened = await DurableQueue.open(directory, { maxRejected })
  t.after(() => reopened.close())
  assert.deepEqual(
    (await reopened.peek(100)).map((reading) => reading.messageId),
    [waiting],
  )

  await reopened.acknowledge([waiting])
  const later = await reopened.enqueue(spo2(-100))
  await reopened.reject(later, 'refusal later')
  await reopened.close()
  const last = await DurableQueue.open(directory, { maxRejected })
  t.after(() => last.close())
  const kept = (await last.rejectedReadings()).map((reading) => reading.messageId)
  assert.deepEqual(kept, [...refused, later].slice(-maxRejected), 'the newest refusals are kept')
  assert.equal(last.rejected, maxRejected)
})

test('refuses readings beyond maxReadings or maxBytes and stores nothing for them', async (t) => {
  const directory = temporaryDirectory(t)
  const queue = await DurableQueue.open(directory, { maxReadings: 3 })
  t.after(() => queue.close())
  const results = await Promise.allSettled([1, 2, 3, 4, 5].map(() => queue.enqueue(spo2())))
  assert.equal(results.filter((result) => result.status === 'fulfilled').length, 3)
  for (const result of results.filter((each) => each.status === 'rejected')) {
    assert.ok(isWardError(result.reason, 'ERR_RATE_LIMITED'))
    assert.match(result.reason.message, /queue is full \(maxReadings 3\)/)
  }
  assert.equal(queue.size, 3)

  const small = await DurableQueue.open(join(directory, 'small'), { maxBytes: 500 })
  t.after(() => small.close())
  await small.enqueue(spo2())
  assert.ok(small.bytes > 250 && small.bytes <= 500, 'a second reading would pass maxBytes')
  await assert.rejects(small.enqueue(spo2()), (error) => isWardError(error, 'ERR_RATE_LIMITED'))
  await assert.rejects(
    small.enqueue({ ...spo2(), note: [{ text: 'x'.repeat(70_000) }] }),
    (error) => isWardError(error, 'ERR_PAYLOAD_TOO_LARGE'),
  )
  await assert.rejects(small.enqueue({ resourceType: 'Patient' } as never), (error) =>
    isWardError(error, 'ERR_INPUT_INVALID'),
  )
  assert.equal(small.size, 1)
})

test('refuses to open a directory another queue has open', async (t) => {
  const directory = temporaryDirectory(t)
  const queue = await DurableQueue.open(directory)
  await assert.rejects(DurableQueue.open(directory), (error) =>
    isWardError(error, 'ERR_ACCESS_DENIED'),
  )
  await queue.close()
  const again = await DurableQueue.open(directory)
  await again.close()
})

test('gives each reading a fresh message id, replacing one the Observation already had', async (t) => {
  const directory = temporaryDirectory(t)
  const queue = await DurableQueue.open(directory)
  t.after(() => queue.close())
  const template = {
    ...spo2(),
    identifier: [
      { system: 'urn:oid:1.2.3', value: 'device-local-7' },
      { system: messageIdSystem, value: 'stale' },
    ],
  }
  const first = await queue.enqueue(template)
  const second = await queue.enqueue(template)
  assert.notEqual(first, second)
  assert.match(first, /^[0-9A-HJKMNP-TV-Z]{26}$/)

  const [reading] = await queue.peek(1)
  assert.deepEqual(reading!.observation.identifier, [
    { system: 'urn:oid:1.2.3', value: 'device-local-7' },
    { system: messageIdSystem, value: first },
  ])
  assert.ok(newMessageId(0).startsWith('0000000000'))
  assert.ok(newMessageId(Date.now()) > newMessageId(Date.now() - 1000), 'ids sort by time')
})
