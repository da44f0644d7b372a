import { utf8Encode, concatBytes } from './encoding.js'
import { WardError } from './errors.js'
import { canonicalBytes } from './jcs.js'

/**
 * What a device says it erased when it carried out a remote wipe. It names the command and the
 * device, counts the readings it deleted (those waiting for delivery and those Ward had refused),
 * and lists the keys (SHA-256 of the public key's SubjectPublicKeyInfo, lowercase hex) and the
 * certificates (serial numbers, lowercase hex) it deleted. `erasedAt` is the device's own clock.
 * Counts and ids only: a report never holds a reading.
 */
export interface WipeReport {
  readonly command: string
  readonly device: string
  readonly erased: {
    readonly queuedReadings: number
    readonly rejectedReadings: number
    readonly keys: readonly string[]
    readonly certificates: readonly string[]
  }
  readonly erasedAt: string
}

const signingContext = utf8Encode('ward-device-wipe-report:v1\n')
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const keyIdPattern = /^[0-9a-f]{64}$/
const serialPattern = /^[0-9a-f]{1,40}$/
const timePattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/

/**
 * The bytes a device signs for its wipe report: a fixed context line, so that the signature
 * cannot be taken for anything else the device key signs, then the report's RFC 8785 canonical
 * JSON.
 */
export function wipeReportSigningInput(report: WipeReport): Uint8Array {
  return concatBytes(signingContext, canonicalBytes(report))
}

/**
 * Checks that `value` is a well-formed {@link WipeReport} and returns it with nothing else in
 * it. Throws `ERR_INPUT_INVALID` naming the field at fault.
 */
export function checkWipeReport(value: unknown): WipeReport {
  const report = record(value, 'report', ['command', 'device', 'erased', 'erasedAt'])
  const erased = record(report['erased'], 'report.erased', [
    'queuedReadings',
    'rejectedReadings',
    'keys',
    'certificates',
  ])
  return {
    command: matching(report['command'], 'report.command', uuidPattern, 'a UUID'),
    device: matching(report['device'], 'report.device', uuidPattern, 'a UUID'),
    erased: {
      queuedReadings: count(erased['queuedReadings'], 'report.erased.queuedReadings'),
      rejectedReadings: count(erased['rejectedReadings'], 'report.erased.rejectedReadings'),
      keys: list(erased['keys'], 'report.erased.keys', keyIdPattern, '64 lowercase hex digits'),
      certificates: list(
        erased['certificates'],
        'report.erased.certificates',
        serialPattern,
        '1–40 lowercase hex digits',
      ),
    },
    erasedAt: matching(report['erasedAt'], 'report.erasedAt', timePattern, 'an ISO 8601 UTC time'),
  }
}

function invalid(field: string, message: string): WardError {
  return new WardError('ERR_INPUT_INVALID', `${field} ${message}`, { details: { field } })
}

function record(value: unknown, field: string, members: readonly string[]) {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(field, 'must be an object')
  }
  const object = value as Record<string, unknown>
  for (const name of Object.keys(object)) {
    if (!members.includes(name)) {
      throw invalid(`${field}.${name}`, `is not allowed; allowed: ${members.join(', ')}`)
    }
  }
  return object
}

function matching(value: unknown, field: string, pattern: RegExp, what: string): string {
  if (typeof value !== 'string' || !pattern.test(value)) throw invalid(field, `must be ${what}`)
  return value
}

function count(value: unknown, field: string): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0 || (value as number) > 1e9) {
    throw invalid(field, 'must be a whole number from 0 to 1000000000')
  }
  return value as number
}

function list(value: unknown, field: string, pattern: RegExp, what: string): string[] {
  if (!Array.isArray(value) || value.length > 64) {
    throw invalid(field, 'must be a list of at most 64 ids')
  }
  return value.map((item, index) => matching(item, `${field}[${index}]`, pattern, what))
}
