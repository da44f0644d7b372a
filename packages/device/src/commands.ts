import type { X509Certificate } from 'node:crypto'
import { createHash } from 'node:crypto'
import { open, readdir, readFile, rename, rmdir, unlink } from 'node:fs/promises'
import { join } from 'node:path'

import { WardError, toBase64, toHex, wipeReportSigningInput, type WipeReport } from '@ward/core'

import type { DeviceAgent } from './agent.js'
import { DeliveryError, overwriteAndUnlink, type DeviceClient } from './client.js'
import { isRecord } from './fhir.js'
import { DurableQueue } from './queue.js'

/** What the device did about a wipe command. */
export interface WipeOutcome {
  readonly commandId: string
  readonly report: WipeReport
  /** True when Ward answered that it recorded the wipe; `wipeCertificate` is then its id. */
  readonly confirmed: boolean
  readonly wipeCertificate?: string
}

/** Where the device keeps what a wipe erases, and how long it tries to confirm. */
export interface CommandOptions {
  readonly client: DeviceClient
  /** The queue's directory. */
  readonly queueDirectory: string
  /** The queue, when it is open: it is closed before it is erased. */
  readonly queue?: DurableQueue
  /** The agent delivering from that queue: it is stopped first. */
  readonly agent?: DeviceAgent
  /**
   * How long the device keeps trying to confirm a wipe before it erases its key anyway, in
   * milliseconds. Default 10 minutes.
   */
  readonly confirmTimeoutMs?: number
  /** First wait between confirmation attempts; doubles up to 30 s. Default 500 ms. */
  readonly retryDelayMs?: number
}

const JOURNAL_FILE = 'wipe.json'

/**
 * Asks Ward for the device's lifecycle commands and carries them out; a device calls this on
 * every connection and send cycle. Resolves with the outcome of a wipe when there was one —
 * the device then holds no readings, key or certificate and must stop — and undefined when
 * there was nothing to do. A wipe interrupted by a crash is finished first, before anything
 * else is asked.
 */
export async function runCommands(options: CommandOptions): Promise<WipeOutcome | undefined> {
  const interrupted = await readJournal(options.client.directory)
  if (interrupted !== undefined) return finishWipe(options, interrupted)

  const answer = await options.client.request('GET', '/v1/commands')
  if (answer.status !== 200 || !isRecord(answer.body) || !Array.isArray(answer.body['commands'])) {
    throw new DeliveryError(
      'ERR_ENCODING_INVALID',
      `Ward answered commands with ${answer.status}`,
      {
        status: answer.status,
      },
    )
  }
  for (const command of answer.body['commands'] as unknown[]) {
    if (isRecord(command) && command['kind'] === 'wipe' && typeof command['id'] === 'string') {
      return wipe(options, command['id'])
    }
  }
  return undefined
}

/**
 * Carries out wipe command `commandId`, in an order that survives a crash at any step:
 *
 * 1. stops delivering and counts what the queue holds (readings waiting for delivery, readings
 *    Ward refused);
 * 2. signs a report of what it is erasing — those counts, its key and its certificate — with
 *    the device key, and writes report and signature to a journal, flushed;
 * 3. erases the queue directory — pending readings, the acknowledgement log and the log of
 *    refused readings — each file overwritten with zeros before it is unlinked;
 * 4. sends the signed report over mutual TLS, retrying until Ward answers, refuses the device
 *    (which Ward does once it recorded the wipe: a 4xx answer, a TLS alert, or three
 *    connections in a row reset as they open) or `confirmTimeoutMs` passes;
 * 5. erases its key, certificates and identity, and last the journal.
 *
 * The key outlives the readings only for as long as it takes to confirm, so that the
 * confirmation is made by the key being erased and carried over the device's own connection.
 * A crash after step 2 leaves the journal, and `runCommands` finishes from step 3 with the same
 * signed report; Ward takes a repeated confirmation as the first. A device that cannot reach
 * Ward within the timeout still erases its key: an unconfirmed wipe shows in Ward as a command
 * delivered but not completed.
 */
export async function wipe(options: CommandOptions, commandId: string): Promise<WipeOutcome> {
  return finishWipe(options, await prepareWipe(options, commandId))
}

/**
 * Steps 1 and 2 of {@link wipe}: stops delivering, counts the queue, signs the report and
 * writes the journal. What is left is what `runCommands` finishes after a crash.
 */
export async function prepareWipe(
  options: CommandOptions,
  commandId: string,
): Promise<{ report: WipeReport; signature: string }> {
  const { client } = options
  await options.agent?.stop()
  let queuedReadings = 0
  let rejectedReadings = 0
  const queue = options.queue ?? (await DurableQueue.open(options.queueDirectory).catch(() => null))
  if (queue !== null) {
    queuedReadings = queue.size
    rejectedReadings = queue.rejected
    await queue.close()
  }

  const certificate = await client.certificate()
  const report: WipeReport = {
    command: commandId,
    device: client.identity.deviceId,
    erased: {
      queuedReadings,
      rejectedReadings,
      keys: [publicKeyId(certificate)],
      certificates: [serialOf(certificate)],
    },
    erasedAt: new Date().toISOString(),
  }
  const signature = toBase64(await client.signWithDeviceKey(wipeReportSigningInput(report)))
  const journal: Journal = { report, signature }
  await writeJournal(client.directory, journal)
  return journal
}

interface Journal {
  readonly report: WipeReport
  readonly signature: string
}

async function finishWipe(options: CommandOptions, journal: Journal): Promise<WipeOutcome> {
  const { client } = options
  await options.agent?.stop()
  await eraseDirectory(options.queueDirectory)

  const deadline = Date.now() + (options.confirmTimeoutMs ?? 600_000)
  let delay = options.retryDelayMs ?? 500
  let wipeCertificate: string | undefined
  let resets = 0
  for (;;) {
    try {
      const answer = await client.request(
        'POST',
        `/v1/commands/${journal.report.command}/result`,
        journal,
      )
      if (answer.status === 200 && isRecord(answer.body)) {
        const id = answer.body['wipeCertificate']
        if (typeof id === 'string') wipeCertificate = id
        break
      }
      // Refused: the device is no longer served, which is what Ward does once it has recorded
      // the wipe; any other refusal of the report will not change by sending it again.
      if (answer.status >= 400 && answer.status < 500 && answer.status !== 429) break
    } catch (error) {
      if (refusedAtHandshake(error)) break
      // Ward refuses a revoked certificate at the handshake, and in TLS 1.3 the client often
      // sees that only as the connection reset once it opened. Resets in a row, each on a fresh
      // connection, are taken as that refusal; a network that resets every connection to Ward
      // three times running is taken for it too, and the key is erased a little early.
      resets = isReset(error) ? resets + 1 : 0
      if (resets >= 3) break
    }
    if (Date.now() + delay > deadline) break
    await new Promise((resolve) => setTimeout(resolve, delay))
    delay = Math.min(delay * 2, 30_000)
  }

  await client.eraseIdentity()
  await overwriteAndUnlink(join(client.directory, JOURNAL_FILE))
  return {
    commandId: journal.report.command,
    report: journal.report,
    confirmed: wipeCertificate !== undefined,
    ...(wipeCertificate === undefined ? {} : { wipeCertificate }),
  }
}

/** The key id Ward uses: SHA-256 of the SubjectPublicKeyInfo, lowercase hex. */
function publicKeyId(certificate: X509Certificate): string {
  const spki = certificate.publicKey.export({ type: 'spki', format: 'der' })
  return toHex(createHash('sha256').update(spki).digest())
}

/** The certificate's serial number as Ward writes it: lowercase hex, no leading zero bytes. */
function serialOf(certificate: X509Certificate): string {
  let hex = certificate.serialNumber.toLowerCase()
  if (hex.length % 2 === 1) hex = `0${hex}`
  while (hex.length > 2 && hex.startsWith('00')) hex = hex.slice(2)
  return hex
}

// A revoked certificate is refused with a TLS alert after the client's handshake completes.
function refusedAtHandshake(error: unknown): boolean {
  const cause = error instanceof WardError ? (error.cause as { code?: unknown }) : undefined
  const code = typeof cause?.code === 'string' ? cause.code : ''
  return /ALERT_(CERTIFICATE_REVOKED|CERTIFICATE_UNKNOWN|BAD_CERTIFICATE|CERTIFICATE_EXPIRED)/.test(
    code,
  )
}

function isReset(error: unknown): boolean {
  const cause = error instanceof WardError ? (error.cause as { code?: unknown }) : undefined
  return cause?.code === 'ECONNRESET'
}

async function eraseDirectory(directory: string): Promise<void> {
  let names: string[]
  try {
    names = await readdir(directory)
  } catch {
    return
  }
  for (const name of names) await overwriteAndUnlink(join(directory, name))
  await rmdir(directory).catch(() => undefined)
}

async function readJournal(directory: string): Promise<Journal | undefined> {
  let text: string
  try {
    text = await readFile(join(directory, JOURNAL_FILE), 'utf8')
  } catch {
    return undefined
  }
  const value = JSON.parse(text) as unknown
  if (!isRecord(value) || !isRecord(value['report']) || typeof value['signature'] !== 'string') {
    throw new WardError('ERR_KEY_INVALID', 'the wipe journal cannot be read', {
      details: { file: JOURNAL_FILE },
    })
  }
  return value as unknown as Journal
}

async function writeJournal(directory: string, journal: Journal): Promise<void> {
  const path = join(directory, JOURNAL_FILE)
  const temporary = `${path}.tmp`
  await unlink(temporary).catch(() => undefined)
  const handle = await open(temporary, 'wx', 0o600)
  try {
    await handle.writeFile(JSON.stringify(journal), 'utf8')
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(temporary, path)
  const parent = await open(directory, 'r')
  try {
    await parent.sync()
  } finally {
    await parent.close()
  }
}

/** A running watch for lifecycle commands alongside a delivering agent. */
export interface CommandWatch {
  /** Resolves when the device wiped itself on command; the agent is stopped by then. */
  readonly wiped: Promise<WipeOutcome>
  /** Stops watching; a check under way finishes. */
  stop(): void
}

/**
 * Watches for lifecycle commands while `options.agent` delivers: asks Ward once at once (the
 * connection cycle) and again after a delivery cycle ends (each batch answered or failed), at
 * most every `intervalMs` (default 60 s), and every `intervalMs` while the agent is idle. A wipe stops the agent, erases the device and
 * resolves `wiped`. Failing to ask is left for the next cycle and reported through `onError`.
 */
export function watchCommands(
  options: CommandOptions & {
    readonly agent: DeviceAgent
    readonly intervalMs?: number
    readonly onError?: (error: unknown) => void
  },
): CommandWatch {
  const intervalMs = options.intervalMs ?? 60_000
  let lastCheck = -Infinity
  let checking = false
  let stopped = false
  let resolveWiped: (outcome: WipeOutcome) => void = () => undefined
  const wiped = new Promise<WipeOutcome>((resolve) => {
    resolveWiped = resolve
  })

  const check = () => {
    if (stopped || checking || Date.now() - lastCheck < intervalMs) return
    checking = true
    lastCheck = Date.now()
    runCommands(options)
      .then((outcome) => {
        if (outcome === undefined) return
        stop()
        resolveWiped(outcome)
      })
      .catch((error: unknown) => options.onError?.(error))
      .finally(() => {
        checking = false
      })
  }
  const stop = () => {
    stopped = true
    clearInterval(timer)
    options.agent.off('progress', check)
  }

  options.agent.on('progress', check)
  const timer = setInterval(check, intervalMs)
  timer.unref()
  check()
  return { wiped, stop }
}
