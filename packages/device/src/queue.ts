import { randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { crc32 } from 'node:zlib'

import { WardError } from '@ward/core'

import { isObservation, isRecord, withMessageId } from './fhir.js'
import type { Observation } from './fhir.js'

/** Limits of one device's queue. Every limit is checked before a reading is accepted. */
export interface QueueOptions {
  /** Most readings waiting for delivery at once. Default 100 000. */
  maxReadings?: number
  /**
   * Most bytes of readings waiting for delivery at once, as stored. Default 64 MiB. Settled
   * readings sharing a segment with waiting ones stay on disk until the segment is deleted, so
   * the directory can hold up to about one `segmentBytes` more.
   */
  maxBytes?: number
  /** Largest single reading, as stored. Default 64 KiB. */
  maxReadingBytes?: number
  /** Size at which the queue starts a new segment file. Default 4 MiB. */
  segmentBytes?: number
  /**
   * How many acknowledgements of readings whose segment is already deleted the
   * acknowledgement log may hold before it is rewritten. Default 4096.
   */
  compactAfter?: number
  /**
   * Most refused readings kept in the rejected log, which holds them whole (PHI) for whoever
   * looks into why Ward refused them. Default 1000. Once the log holds twice as many, and when
   * the queue opens holding more, it is rewritten with the newest `maxRejected` and any older
   * one whose segment, which holds it too, is still on disk; the others are erased.
   */
  maxRejected?: number
}

/** A reading waiting in the queue, exactly as it will be sent. */
export interface QueuedReading {
  /** The device's own id for this reading, also in the Observation's identifiers. */
  messageId: string
  /** When the reading was enqueued, as an ISO 8601 UTC time. */
  enqueuedAt: string
  /** The Observation, carrying `messageId` under `urn:ward:device-message-id`. */
  observation: Observation
}

/** A reading Ward refused, kept on the device with the reason and never sent again. */
export interface RejectedReading extends QueuedReading {
  rejectedAt: string
  reason: string
}

/** What opening the queue found and repaired. */
export interface QueueRecovery {
  /** Bytes of incomplete final lines cut off, from writes a crash interrupted. */
  tornBytes: number
  /** Complete lines skipped because their checksum or JSON was wrong. */
  corruptLines: number
}

const DEFAULTS = {
  maxReadings: 100_000,
  maxBytes: 64 * 1024 * 1024,
  maxReadingBytes: 64 * 1024,
  segmentBytes: 4 * 1024 * 1024,
  compactAfter: 4096,
  maxRejected: 1000,
} satisfies Required<QueueOptions>

const ACKNOWLEDGED_FILE = 'acknowledged.log'
const REJECTED_FILE = 'rejected.log'
const LOCK_FILE = 'queue.lock'
const SEGMENT_NAME = /^segment-(\d{12})\.log$/
const NEWLINE = 0x0a
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'

// Directories this process has open, so a second open in the same process is refused even
// though the lock file names this very process.
const openDirectories = new Set<string>()

interface Segment {
  sequence: number
  path: string
  handle: FileHandle
  size: number
  messageIds: string[]
  settled: number
}

interface Location {
  segment: Segment
  offset: number
  length: number
}

interface Append {
  messageId: string
  line: Buffer
  resolve: (messageId: string) => void
  reject: (error: unknown) => void
}

/**
 * A durable queue of one device's readings, kept in a directory of its own.
 *
 * Readings are appended to segment files as checksummed JSON lines; `enqueue` resolves only
 * after the line is written and flushed to stable storage, so a reading whose enqueue resolved
 * survives a crash or power loss. Delivered readings are recorded in an acknowledgement log
 * and refused ones in a rejected log, both flushed before the call resolves, so a reading
 * once settled is never handed out again. Segments whose readings are all settled are deleted,
 * the one being written included, so a device whose readings were all delivered keeps none of
 * them on disk; the rejected log keeps the newest `maxRejected` refusals.
 * Opening the queue cuts off a torn final line left by an interrupted write.
 *
 * Only one `DurableQueue` may have a directory open at a time, across processes.
 */
export class DurableQueue {
  /** What opening the queue found and repaired. */
  readonly recovery: QueueRecovery
  /** The queue's directory, as an absolute path. */
  readonly directory: string

  private readonly limits: Required<QueueOptions>
  private readonly segments = new Map<number, Segment>()
  private readonly pending = new Map<string, Location>()
  private readonly acknowledged = new Set<string>()
  private readonly appends: Append[] = []
  private readonly waiters = new Set<() => void>()
  private acknowledgementLog: FileHandle
  private rejectedLog: FileHandle
  private acknowledgementLogEntries: number
  private rejectedCount: number
  private pendingBytes = 0
  private reservedReadings = 0
  private reservedBytes = 0
  private nextSequence: number
  private flushScheduled = false
  private tail: Promise<unknown> = Promise.resolve()
  private failure: unknown = undefined
  private closed = false

  private constructor(state: OpenedState) {
    this.directory = state.directory
    this.limits = state.limits
    this.recovery = state.recovery
    this.acknowledgementLog = state.acknowledgementLog
    this.rejectedLog = state.rejectedLog
    this.acknowledgementLogEntries = state.acknowledgementLogEntries
    this.rejectedCount = state.rejectedCount
    this.nextSequence = state.nextSequence
  }

  /**
   * Opens the queue in `directory`, creating it (mode 0700) when missing, and recovers what a
   * crash left: torn final lines are cut off, readings already acknowledged or rejected are
   * dropped from the queue, and fully settled segments are deleted. Throws `ERR_ACCESS_DENIED`
   * when another live process, or this one, has the directory open.
   */
  static async open(directory: string, options: QueueOptions = {}): Promise<DurableQueue> {
    const limits = checkedLimits(options)
    const absolute = resolve(directory)
    if (openDirectories.has(absolute)) throw inUse(absolute, process.pid)
    await mkdir(absolute, { recursive: true, mode: 0o700 })
    await acquireLock(absolute)
    openDirectories.add(absolute)

    try {
      return await DurableQueue.recover(absolute, limits)
    } catch (error) {
      openDirectories.delete(absolute)
      await unlink(join(absolute, LOCK_FILE)).catch(() => undefined)
      throw error
    }
  }

  private static async recover(
    directory: string,
    limits: Required<QueueOptions>,
  ): Promise<DurableQueue> {
    const recovery: QueueRecovery = { tornBytes: 0, corruptLines: 0 }

    const acknowledgedIds = new Set<string>()
    const acknowledgementLog = await openLog(join(directory, ACKNOWLEDGED_FILE), recovery)
    let acknowledgementLogEntries = 0
    for (const { record } of acknowledgementLog.lines) {
      const ids = isRecord(record) ? record['acknowledged'] : undefined
      if (!Array.isArray(ids)) continue
      for (const id of ids) {
        if (typeof id !== 'string') continue
        acknowledgedIds.add(id)
        acknowledgementLogEntries++
      }
    }

    const rejectedIds = new Set<string>()
    const rejectedLog = await openLog(join(directory, REJECTED_FILE), recovery)
    for (const { record } of rejectedLog.lines) {
      if (isRecord(record) && typeof record['messageId'] === 'string') {
        rejectedIds.add(record['messageId'])
      }
    }

    const sequences = (await readdir(directory))
      .map((name) => SEGMENT_NAME.exec(name)?.[1])
      .filter((digits): digits is string => digits !== undefined)
      .map(Number)
      .sort((a, b) => a - b)

    const queue = new DurableQueue({
      directory,
      limits,
      recovery,
      acknowledgementLog: acknowledgementLog.handle,
      rejectedLog: rejectedLog.handle,
      acknowledgementLogEntries,
      rejectedCount: rejectedLog.lines.length,
      nextSequence: (sequences.at(-1) ?? 0) + 1,
    })

    for (const sequence of sequences) {
      const path = join(directory, segmentName(sequence))
      const log = await openLog(path, recovery)
      const segment: Segment = {
        sequence,
        path,
        handle: log.handle,
        size: log.size,
        messageIds: [],
        settled: 0,
      }
      queue.segments.set(sequence, segment)
      for (const { record, offset, length } of log.lines) {
        const messageId = isRecord(record) ? record['messageId'] : undefined
        if (typeof messageId !== 'string' || queue.pending.has(messageId)) continue
        segment.messageIds.push(messageId)
        if (acknowledgedIds.has(messageId)) {
          queue.acknowledged.add(messageId)
          segment.settled++
        } else if (rejectedIds.has(messageId)) {
          segment.settled++
        } else {
          queue.pending.set(messageId, { segment, offset, length })
          queue.pendingBytes += length
        }
      }
    }

    await queue.exclusive(async () => {
      await queue.compactNow(true)
      if (queue.rejectedCount > limits.maxRejected) await queue.trimRejected()
    })
    return queue
  }

  /** Readings waiting for delivery. */
  get size(): number {
    return this.pending.size
  }

  /** Bytes of readings waiting for delivery, as stored. */
  get bytes(): number {
    return this.pendingBytes
  }

  /** Refused readings kept in the rejected log (at most twice `maxRejected`). */
  get rejected(): number {
    return this.rejectedCount
  }

  /**
   * Adds a reading and resolves with the message id it was given, once the reading is on
   * stable storage. The stored Observation carries that id under `urn:ward:device-message-id`,
   * replacing any message id it had. Fails, and stores nothing, with `ERR_INPUT_INVALID` for
   * anything but an Observation, `ERR_PAYLOAD_TOO_LARGE` for a reading over `maxReadingBytes`,
   * and `ERR_RATE_LIMITED` when the queue is at `maxReadings` or `maxBytes`: readings are
   * never dropped to make room.
   */
  async enqueue(observation: Observation): Promise<string> {
    this.assertUsable()
    if (!isObservation(observation)) {
      throw new WardError('ERR_INPUT_INVALID', 'a reading must be a FHIR Observation', {
        details: { field: 'resourceType' },
      })
    }

    const messageId = newMessageId()
    const record = {
      messageId,
      enqueuedAt: new Date().toISOString(),
      observation: withMessageId(observation, messageId),
    }
    const line = frame(record)
    if (line.length > this.limits.maxReadingBytes) {
      throw new WardError('ERR_PAYLOAD_TOO_LARGE', 'the reading is larger than maxReadingBytes', {
        details: { limit: 'maxReadingBytes', maxReadingBytes: this.limits.maxReadingBytes },
      })
    }
    if (this.pending.size + this.reservedReadings >= this.limits.maxReadings) {
      throw queueFull('maxReadings', this.limits.maxReadings)
    }
    if (this.pendingBytes + this.reservedBytes + line.length > this.limits.maxBytes) {
      throw queueFull('maxBytes', this.limits.maxBytes)
    }

    this.reservedReadings++
    this.reservedBytes += line.length
    return new Promise<string>((resolve, reject) => {
      this.appends.push({ messageId, line, resolve, reject })
      if (!this.flushScheduled) {
        this.flushScheduled = true
        void this.exclusive(() => this.flushAppends()).catch(() => undefined)
      }
    })
  }

  /**
   * The oldest `max` readings waiting for delivery, oldest first, without removing them. A
   * reading stays in the queue, and comes back from the next `peek`, until it is acknowledged
   * or rejected.
   */
  async peek(max: number): Promise<QueuedReading[]> {
    this.assertUsable()
    return this.exclusive(async () => {
      const locations: Location[] = []
      for (const location of this.pending.values()) {
        if (locations.length >= max) break
        locations.push(location)
      }
      return readReadings(locations)
    })
  }

  /**
   * Records that Ward durably committed these readings, and resolves once that record is on
   * stable storage; they are never handed out again. Ids not waiting in the queue are ignored.
   * Resolves with how many readings were settled.
   */
  async acknowledge(messageIds: readonly string[]): Promise<number> {
    this.assertUsable()
    return this.exclusive(async () => {
      const settled = [...new Set(messageIds)].filter((id) => this.pending.has(id))
      if (settled.length === 0) return 0

      await appendSynced(this.acknowledgementLog, frame({ acknowledged: settled }))
      this.acknowledgementLogEntries += settled.length
      for (const messageId of settled) {
        this.settle(messageId)
        this.acknowledged.add(messageId)
      }

      await this.compactNow(false)
      return settled.length
    })
  }

  /**
   * Moves a reading Ward refused to the rejected log, with `reason`, and resolves once that is
   * on stable storage; it is never sent again. Resolves false when no such reading waits.
   */
  async reject(messageId: string, reason: string): Promise<boolean> {
    this.assertUsable()
    return this.exclusive(async () => {
      const location = this.pending.get(messageId)
      if (location === undefined) return false

      const [reading] = await readReadings([location])
      const record = { ...reading, rejectedAt: new Date().toISOString(), reason }
      await appendSynced(this.rejectedLog, frame(record))
      this.rejectedCount++
      this.settle(messageId)
      if (this.rejectedCount >= 2 * this.limits.maxRejected) await this.trimRejected()

      await this.compactNow(false)
      return true
    })
  }

  /** Every reading in the rejected log, oldest first, with the reason Ward gave. */
  async rejectedReadings(): Promise<RejectedReading[]> {
    this.assertUsable()
    return this.exclusive(async () => {
      const text = await readFile(join(this.directory, REJECTED_FILE))
      return scanLines(text).lines.flatMap(({ record }) =>
        isRejectedReading(record) ? [record] : [],
      )
    })
  }

  /**
   * Deletes every segment whose readings are all settled and rewrites the acknowledgement log
   * to hold only what the remaining segments need. Runs by itself as readings are settled;
   * calling it forces the rewrite.
   */
  async compact(): Promise<void> {
    this.assertUsable()
    await this.exclusive(() => this.compactNow(true))
  }

  /**
   * Resolves when a reading is waiting, or when `signal` aborts or the queue closes. Resolves
   * at once when readings are already waiting.
   */
  waitForReadings(signal?: AbortSignal): Promise<void> {
    if (this.pending.size > 0 || this.closed || signal?.aborted === true) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const wake = () => {
        this.waiters.delete(wake)
        signal?.removeEventListener('abort', wake)
        resolve()
      }
      this.waiters.add(wake)
      signal?.addEventListener('abort', wake, { once: true })
    })
  }

  /**
   * Waits for every write in progress, then closes the files and releases the directory.
   * Readings whose enqueue resolved stay on disk for the next `open`.
   */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.tail.catch(() => undefined)
    for (const wake of [...this.waiters]) wake()

    for (const segment of this.segments.values()) await segment.handle.close()
    this.segments.clear()
    await this.acknowledgementLog.close()
    await this.rejectedLog.close()
    await unlink(join(this.directory, LOCK_FILE)).catch(() => undefined)
    openDirectories.delete(this.directory)
  }

  private assertUsable(): void {
    if (this.closed) throw new WardError('ERR_NOT_INITIALIZED', 'the queue is closed')
    if (this.failure !== undefined) {
      throw new WardError('ERR_INTERNAL', 'the queue failed to write; reopen it to recover', {
        cause: this.failure,
      })
    }
  }

  // Runs file work one piece at a time, in call order, so the in-memory view never races the
  // files it describes.
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const result = this.tail.then(work)
    this.tail = result.catch(() => undefined)
    return result
  }

  // Writes every enqueue waiting at this moment with as few flushes as possible: readings that
  // arrive together share one write and one fsync.
  private async flushAppends(): Promise<void> {
    this.flushScheduled = false
    const batch = this.appends.splice(0)
    let written = 0
    try {
      while (written < batch.length) {
        const segment = await this.segmentFor(batch[written]!.line.length)
        const group: Append[] = []
        let groupBytes = 0
        for (const append of batch.slice(written)) {
          const fits = segment.size + groupBytes + append.line.length <= this.limits.segmentBytes
          if (!fits && segment.size + groupBytes > 0) break
          group.push(append)
          groupBytes += append.line.length
        }
        await this.writeGroup(segment, group)
        written += group.length
      }
    } catch (error) {
      for (const append of batch.slice(written)) {
        this.release(append.line.length)
        append.reject(error)
      }
    }
    if (this.pending.size > 0) for (const wake of [...this.waiters]) wake()
  }

  private async writeGroup(segment: Segment, group: Append[]): Promise<void> {
    const start = segment.size
    try {
      await appendSynced(segment.handle, Buffer.concat(group.map((append) => append.line)))
    } catch (error) {
      // Cut the file back to what is known to be whole, so a half-written group cannot turn
      // into readings nobody was told about; if even that fails, stop until reopened.
      await segment.handle.truncate(start).catch((truncateError: unknown) => {
        this.failure = truncateError
      })
      throw error
    }

    let offset = start
    for (const append of group) {
      const length = append.line.length
      this.pending.set(append.messageId, { segment, offset, length })
      segment.messageIds.push(append.messageId)
      offset += length
      this.pendingBytes += length
      this.release(length)
      append.resolve(append.messageId)
    }
    segment.size = offset
  }

  private release(length: number): void {
    this.reservedReadings--
    this.reservedBytes -= length
  }

  private async segmentFor(length: number): Promise<Segment> {
    const active = this.activeSegment()
    if (
      active !== undefined &&
      (active.size === 0 || active.size + length <= this.limits.segmentBytes)
    ) {
      return active
    }

    const sequence = this.nextSequence++
    const path = join(this.directory, segmentName(sequence))
    const handle = await open(path, 'a+', 0o600)
    await syncDirectory(this.directory)
    const segment: Segment = { sequence, path, handle, size: 0, messageIds: [], settled: 0 }
    this.segments.set(sequence, segment)
    return segment
  }

  private activeSegment(): Segment | undefined {
    let newest: Segment | undefined
    for (const segment of this.segments.values()) {
      if (newest === undefined || segment.sequence > newest.sequence) newest = segment
    }
    return newest
  }

  private settle(messageId: string): void {
    const location = this.pending.get(messageId)
    if (location === undefined) return
    this.pending.delete(messageId)
    this.pendingBytes -= location.length
    location.segment.settled++
  }

  // Segments go first and the directory is flushed before the acknowledgement log loses any
  // line: were it the other way round, a crash in between would bring settled readings back.
  // The segment being written goes too once all its readings are settled (file work runs one
  // piece at a time, so no append is half done); the next append starts a new one.
  private async compactNow(force: boolean): Promise<void> {
    const settledSegments = [...this.segments.values()].filter(
      (segment) => segment.settled === segment.messageIds.length,
    )
    for (const segment of settledSegments) {
      await segment.handle.close()
      await unlink(segment.path)
      this.segments.delete(segment.sequence)
      for (const messageId of segment.messageIds) this.acknowledged.delete(messageId)
    }
    if (settledSegments.length > 0) await syncDirectory(this.directory)

    const stale = this.acknowledgementLogEntries - this.acknowledged.size
    if (stale === 0 || (!force && stale < this.limits.compactAfter)) return

    const path = join(this.directory, ACKNOWLEDGED_FILE)
    const bytes =
      this.acknowledged.size > 0 ? frame({ acknowledged: [...this.acknowledged] }) : Buffer.alloc(0)
    this.acknowledgementLog = await replaceLog(this.acknowledgementLog, path, bytes)
    this.acknowledgementLogEntries = this.acknowledged.size
  }

  // Rewrites the rejected log with its newest `maxRejected` lines, and any older one whose
  // segment is still on disk: recovery settles a reading in a kept segment by finding it in
  // this log, and without it the reading would be sent again.
  private async trimRejected(): Promise<void> {
    const path = join(this.directory, REJECTED_FILE)
    const bytes = await readFile(path)
    const { lines } = scanLines(bytes)
    const live = new Set<string>()
    for (const segment of this.segments.values()) {
      for (const messageId of segment.messageIds) live.add(messageId)
    }
    const newest = lines.length - this.limits.maxRejected
    const kept = lines.filter((line, index) => {
      const messageId = isRecord(line.record) ? line.record['messageId'] : undefined
      return index >= newest || (typeof messageId === 'string' && live.has(messageId))
    })

    const rewritten = Buffer.concat(
      kept.map((line) => bytes.subarray(line.offset, line.offset + line.length)),
    )
    this.rejectedLog = await replaceLog(this.rejectedLog, path, rewritten)
    this.rejectedCount = kept.length
  }
}

interface OpenedState {
  directory: string
  limits: Required<QueueOptions>
  recovery: QueueRecovery
  acknowledgementLog: FileHandle
  rejectedLog: FileHandle
  acknowledgementLogEntries: number
  rejectedCount: number
  nextSequence: number
}

interface ScannedLine {
  offset: number
  length: number
  record: unknown
}

/**
 * A new device message id: 26 characters of Crockford base32, the first ten encoding the
 * millisecond it was made and the other sixteen 80 random bits, so ids sort by time and two
 * devices never make the same one in practice.
 */
export function newMessageId(now = Date.now()): string {
  let time = ''
  let rest = now
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[rest % 32]! + time
    rest = Math.floor(rest / 32)
  }

  const random = randomBytes(10)
  let bits = 0
  let bitCount = 0
  let suffix = ''
  for (const byte of random) {
    bits = (bits << 8) | byte
    bitCount += 8
    while (bitCount >= 5) {
      bitCount -= 5
      suffix += CROCKFORD[(bits >> bitCount) & 31]!
    }
    bits &= (1 << bitCount) - 1
  }
  return time + suffix
}

// A line is `<crc32 of the JSON, 8 hex digits> <JSON>\n`; the checksum tells a line that is
// whole from one a crash or a bad sector damaged.
function frame(record: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(record), 'utf8')
  const checksum = Buffer.from(`${crc32(json).toString(16).padStart(8, '0')} `, 'latin1')
  return Buffer.concat([checksum, json, Buffer.of(NEWLINE)])
}

function unframe(line: Buffer): unknown {
  if (line.length < 10 || line[8] !== 0x20) return undefined
  const checksum = Number.parseInt(line.subarray(0, 8).toString('latin1'), 16)
  const json = line.subarray(9)
  if (!Number.isInteger(checksum) || crc32(json) !== checksum) return undefined
  try {
    return JSON.parse(json.toString('utf8')) as unknown
  } catch {
    return undefined
  }
}

function scanLines(bytes: Buffer): { lines: ScannedLine[]; whole: number; corrupt: number } {
  const lines: ScannedLine[] = []
  let corrupt = 0
  let start = 0
  for (;;) {
    const end = bytes.indexOf(NEWLINE, start)
    if (end < 0) break
    const record = unframe(bytes.subarray(start, end))
    if (record === undefined) corrupt++
    else lines.push({ offset: start, length: end + 1 - start, record })
    start = end + 1
  }
  return { lines, whole: start, corrupt }
}

// Opens one of the queue's append-only files, cutting off a torn final line.
async function openLog(
  path: string,
  recovery: QueueRecovery,
): Promise<{ handle: FileHandle; lines: ScannedLine[]; size: number }> {
  const handle = await open(path, 'a+', 0o600)
  try {
    const bytes = await handle.readFile()
    const scan = scanLines(bytes)
    recovery.corruptLines += scan.corrupt
    if (scan.whole < bytes.length) {
      recovery.tornBytes += bytes.length - scan.whole
      await handle.truncate(scan.whole)
      await handle.sync()
    }
    return { handle, lines: scan.lines, size: scan.whole }
  } catch (error) {
    await handle.close()
    throw error
  }
}

// Replaces the log at `path`, open as `handle`, with `bytes`: written beside it and flushed,
// renamed over it and the directory flushed, so a crash leaves the old log or the new one
// whole. Resolves with the new log open for appending.
async function replaceLog(handle: FileHandle, path: string, bytes: Buffer): Promise<FileHandle> {
  const temporary = `${path}.tmp`
  const replacement = await open(temporary, 'w', 0o600)
  try {
    if (bytes.length > 0) await replacement.write(bytes)
    await replacement.sync()
  } finally {
    await replacement.close()
  }
  await rename(temporary, path)
  await syncDirectory(dirname(path))
  await handle.close()
  return open(path, 'a+', 0o600)
}

async function appendSynced(handle: FileHandle, bytes: Buffer): Promise<void> {
  let written = 0
  while (written < bytes.length) {
    const result = await handle.write(bytes, written, bytes.length - written)
    written += result.bytesWritten
  }
  await handle.datasync()
}

async function readReadings(locations: readonly Location[]): Promise<QueuedReading[]> {
  const readings: QueuedReading[] = []
  let index = 0
  while (index < locations.length) {
    // Readings next to each other in one segment come back in one read.
    const first = locations[index]!
    let end = index + 1
    let spanEnd = first.offset + first.length
    while (
      end < locations.length &&
      locations[end]!.segment === first.segment &&
      locations[end]!.offset === spanEnd
    ) {
      spanEnd += locations[end]!.length
      end++
    }

    const span = Buffer.alloc(spanEnd - first.offset)
    const { bytesRead } = await first.segment.handle.read(span, 0, span.length, first.offset)
    for (let i = index; i < end; i++) {
      const location = locations[i]!
      const start = location.offset - first.offset
      const record = unframe(span.subarray(start, Math.min(bytesRead, start + location.length - 1)))
      if (!isQueuedReading(record)) {
        throw new WardError('ERR_INTERNAL', 'a queued reading no longer reads back whole', {
          details: { segment: segmentName(location.segment.sequence), offset: location.offset },
        })
      }
      readings.push(record)
    }
    index = end
  }
  return readings
}

function isQueuedReading(record: unknown): record is QueuedReading {
  return (
    isRecord(record) &&
    typeof record['messageId'] === 'string' &&
    typeof record['enqueuedAt'] === 'string' &&
    isObservation(record['observation'])
  )
}

function isRejectedReading(record: unknown): record is RejectedReading {
  return (
    isRecord(record) &&
    typeof record['reason'] === 'string' &&
    typeof record['rejectedAt'] === 'string' &&
    isQueuedReading(record)
  )
}

async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

async function acquireLock(directory: string): Promise<void> {
  const path = join(directory, LOCK_FILE)
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, 'wx', 0o600)
      try {
        await handle.writeFile(`${process.pid}\n`)
        await handle.sync()
      } finally {
        await handle.close()
      }
      return
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }

    const owner = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10)
    if (Number.isInteger(owner) && owner !== process.pid && isRunning(owner)) {
      throw inUse(directory, owner)
    }
    // The process that held the lock is gone, crashed most likely: its lock is stale.
    await unlink(path).catch(() => undefined)
  }
  throw inUse(directory, Number.NaN)
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function inUse(directory: string, pid: number): WardError {
  return new WardError('ERR_ACCESS_DENIED', 'the queue directory is open in another queue', {
    details: { directory, pid: Number.isNaN(pid) ? null : pid },
  })
}

function queueFull(limit: 'maxReadings' | 'maxBytes', value: number): WardError {
  return new WardError('ERR_RATE_LIMITED', `the queue is full (${limit} ${value})`, {
    details: { limit, [limit]: value },
  })
}

function segmentName(sequence: number): string {
  return `segment-${String(sequence).padStart(12, '0')}.log`
}

function checkedLimits(options: QueueOptions): Required<QueueOptions> {
  const limits = { ...DEFAULTS, ...definedOnly(options) }
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new WardError('ERR_CONFIG_INVALID', `queue option ${name} must be a positive integer`, {
        details: { field: name },
      })
    }
  }
  return limits
}

function definedOnly(options: QueueOptions): QueueOptions {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined))
}
