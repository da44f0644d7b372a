// Enqueues readings into the queue directory given as the first argument, several at a time,
// and prints each message id as soon as its enqueue resolved, until it is killed.
import { DurableQueue } from '../src/queue.js'

import { spo2 } from './support.js'

const queue = await DurableQueue.open(process.argv[2]!, { segmentBytes: 64 * 1024 })
// Bulky readings make each write long, so the kill is likely to land inside one.
const padding = 'x'.repeat(2000)

async function writer(): Promise<never> {
  for (;;) {
    const messageId = await queue.enqueue({ ...spo2(), note: [{ text: padding }] })
    process.stdout.write(`${messageId}\n`)
  }
}

await Promise.all([writer(), writer(), writer(), writer()])
