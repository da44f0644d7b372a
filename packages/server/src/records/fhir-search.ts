import { WardError } from '@ward/core'

import type { EffectiveRange, ReadingOrder } from './readings.js'

/**
 * Search parameters as a route hands them over: a URL's query, or name → value(s). Values are
 * never echoed in errors, because a search value may be an identifier.
 */
export type SearchInput = URLSearchParams | Readonly<Record<string, string | readonly string[]>>

/** The kinds of parameter Ward's FHIR searches take. */
export type ParameterKind =
  | 'count'
  | 'cursor'
  | 'date'
  | 'id'
  | 'pseudonym-identifier'
  | 'patient'
  | 'reference'
  | 'sort'
  | 'token'

/** The parameters one resource type's search allows, by name. */
export type SearchSpec = Readonly<Record<string, ParameterKind>>

/** A search, parsed and checked. Only the parameters given are present. */
export interface ParsedSearch {
  readonly range?: EffectiveRange
  readonly count?: number
  readonly cursor?: string
  readonly order?: ReadingOrder
  /** Patient pseudonym, from `patient`, `_id` or `identifier`. */
  readonly patient?: string
  readonly id?: string
  /** `system|code` tokens, as given. */
  readonly codes?: readonly string[]
  /** A reference, as given (for `entity`). */
  readonly reference?: string
}

/** Most results one page of a FHIR search may hold. */
export const maxSearchCount = 1000

/** Results per page when `_count` is not given. */
export const defaultSearchCount = 100

/** The code system of Ward's patient pseudonyms, in `Patient.identifier`. */
export const pseudonymSystem = 'urn:ward:pseudonym'

const prefixes = ['ge', 'le', 'gt', 'lt', 'eq'] as const
const datePattern =
  /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2}))?)?)?$/
const pseudonymPattern = /^pt-[a-z2-7]{20}$/
const idPattern = /^[A-Za-z0-9\-.]{1,64}$/
const tokenPattern = /^([a-z][a-z0-9+.-]*:[^\s|,]{1,200})\|([^\s|,]{1,64})$/
const cursorPattern = /^[0-9]{1,19}$|^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const referencePattern = /^(?:[A-Z][A-Za-z]{1,63}\/)?[A-Za-z0-9\-.:]{1,200}$/
const maxTokens = 20
const maxTokenText = 1000
const earliestYear = 1900
const latestYear = 2999

/**
 * Parses `input` as a search of `resourceType` allowing exactly `spec`. Strict: an unknown
 * parameter (modifiers such as `code:text` included), a repeated one, an empty or malformed
 * value, an unsupported date prefix or a `_count` out of range is `ERR_INPUT_INVALID` naming
 * the parameter and what is allowed — never the value given.
 */
export function parseSearch(
  resourceType: string,
  input: SearchInput,
  spec: SearchSpec,
): ParsedSearch {
  const byName = new Map<string, string[]>()
  for (const [name, value] of entriesOf(input)) {
    if (!Object.hasOwn(spec, name)) {
      throw new WardError(
        'ERR_INPUT_INVALID',
        `${resourceType} search parameter ${printable(name)} is not supported; allowed: ${Object.keys(spec).join(', ')}`,
        { details: { parameter: printable(name), allowed: Object.keys(spec).join(',') } },
      )
    }
    const values = byName.get(name) ?? []
    values.push(value)
    byName.set(name, values)
  }

  const parsed: {
    -readonly [K in keyof ParsedSearch]: ParsedSearch[K]
  } = {}
  for (const [name, values] of byName) {
    const kind = spec[name] as ParameterKind
    const fail = (rule: string) => searchInvalid(resourceType, name, rule)
    if (values.some((value) => value.length === 0)) fail('must not be empty')
    if (kind !== 'date' && values.length > 1) fail('may be given once')
    const value = values[0] as string

    switch (kind) {
      case 'count': {
        const count = /^[0-9]{1,4}$/.test(value) ? Number(value) : NaN
        if (!(count >= 1 && count <= maxSearchCount)) fail(`must be an integer 1–${maxSearchCount}`)
        parsed.count = count
        break
      }
      case 'cursor':
        if (!cursorPattern.test(value)) fail('must be the value a next link carried')
        parsed.cursor = value
        break
      case 'date':
        if (values.length > 2) fail('may be given at most twice, for a lower and an upper bound')
        parsed.range = dateRange(values, fail)
        break
      case 'id':
        if (!idPattern.test(value)) fail('must be a FHIR id: 1–64 letters, digits, - and .')
        parsed.id = value
        break
      case 'patient': {
        const pseudonym = value.startsWith('Patient/') ? value.slice('Patient/'.length) : value
        if (!pseudonymPattern.test(pseudonym)) {
          fail('must be a patient pseudonym, as Patient/<id> or <id>')
        }
        parsed.patient = pseudonym
        break
      }
      case 'pseudonym-identifier': {
        const bar = value.lastIndexOf('|')
        const system = bar < 0 ? undefined : value.slice(0, bar)
        const pseudonym = bar < 0 ? value : value.slice(bar + 1)
        if ((system !== undefined && system !== pseudonymSystem) || pseudonym.length === 0) {
          fail(`must be ${pseudonymSystem}|<pseudonym> or the pseudonym alone`)
        }
        parsed.patient = pseudonym
        break
      }
      case 'reference':
        if (!referencePattern.test(value)) fail('must be a reference: <Type>/<id> or <id>')
        parsed.reference = value
        break
      case 'sort':
        if (value !== 'date' && value !== '-date') fail('must be date or -date')
        parsed.order = value === '-date' ? 'newest-first' : 'oldest-first'
        break
      case 'token': {
        // Bounded so that the audit event, which records the codes, stays within its limits.
        if (value.length > maxTokenText) fail(`must be at most ${maxTokenText} characters`)
        const tokens = value.split(',')
        if (tokens.length > maxTokens) fail(`may list at most ${maxTokens} codes`)
        for (const token of tokens) {
          if (!tokenPattern.test(token)) {
            fail('must be system|code (a comma separates alternatives), the system an absolute URI')
          }
        }
        parsed.codes = tokens
        break
      }
    }
  }
  return parsed
}

/**
 * The stored forms of `system|code` tokens: the token itself and, for LOINC, the bare code,
 * which is how readings stored with a bare LOINC code keep it.
 */
export function storedCodes(tokens: readonly string[]): string[] {
  const stored = new Set<string>()
  for (const token of tokens) {
    stored.add(token)
    if (token.startsWith('http://loinc.org|')) stored.add(token.slice('http://loinc.org|'.length))
  }
  return [...stored]
}

/** The error for one search parameter: names it, says what is allowed. */
export function searchInvalid(resourceType: string, parameter: string, rule: string): never {
  throw new WardError(
    'ERR_INPUT_INVALID',
    `${resourceType} search parameter ${parameter} ${rule}`,
    { details: { parameter, allowed: rule } },
  )
}

function entriesOf(input: SearchInput): [string, string][] {
  if (input instanceof URLSearchParams) return [...input.entries()]
  const entries: [string, string][] = []
  for (const [name, value] of Object.entries(input)) {
    if (typeof value === 'string') entries.push([name, value])
    else for (const one of value) entries.push([name, one])
  }
  return entries
}

/**
 * The effective times a set of `date` values allows, as one half-open UTC range. Each value
 * stands for the interval its precision implies (a day, a minute, a second…); `ge` and `gt`
 * bound from below, `lt` and `le` from above, `eq` (or no prefix) both.
 */
function dateRange(values: readonly string[], fail: (rule: string) => never): EffectiveRange {
  let from: number | undefined
  let to: number | undefined
  const lower = (time: number) => (from = from === undefined ? time : Math.max(from, time))
  const upper = (time: number) => (to = to === undefined ? time : Math.min(to, time))

  for (const value of values) {
    const prefix = /^[a-z]{2}/.test(value) ? value.slice(0, 2) : 'eq'
    const text = /^[a-z]{2}/.test(value) ? value.slice(2) : value
    if (!(prefixes as readonly string[]).includes(prefix)) {
      // Only a prefix FHIR defines is named: two other letters are part of the value.
      const named = otherFhirPrefixes.includes(prefix) ? `prefix ${prefix}` : 'its prefix'
      fail(`${named} is not supported; allowed: ge, le, gt, lt, eq or none`)
    }
    const interval = dateInterval(text)
    if (interval === undefined) {
      fail(
        `must be a date (YYYY, YYYY-MM, YYYY-MM-DD, in UTC) or a date and time with a zone, ` +
          `years ${earliestYear}–${latestYear}, after an optional prefix ge, le, gt, lt or eq`,
      )
    }
    const [start, end] = interval
    if (prefix === 'ge' || prefix === 'eq') lower(start)
    if (prefix === 'gt') lower(end)
    if (prefix === 'lt') upper(start)
    if (prefix === 'le' || prefix === 'eq') upper(end)
  }
  if (from !== undefined && to !== undefined && from >= to) {
    fail('values leave no time between their lower and upper bounds')
  }
  return {
    ...(from === undefined ? {} : { from: new Date(from).toISOString() }),
    ...(to === undefined ? {} : { to: new Date(to).toISOString() }),
  }
}

/** The half-open interval, in epoch milliseconds, that a FHIR date or dateTime stands for. */
function dateInterval(text: string): [number, number] | undefined {
  const match = datePattern.exec(text)
  if (match === null) return undefined
  const [, year, month, day, hour, minute, second, fraction, zone] = match
  const y = Number(year)
  if (y < earliestYear || y > latestYear) return undefined
  const m = month === undefined ? 1 : Number(month)
  const d = day === undefined ? 1 : Number(day)
  const h = hour === undefined ? 0 : Number(hour)
  const min = minute === undefined ? 0 : Number(minute)
  const s = second === undefined ? 0 : Number(second)
  if (m < 1 || m > 12 || h > 23 || min > 59 || s > 59) return undefined
  const dayStart = Date.UTC(y, m - 1, d)
  if (new Date(dayStart).getUTCDate() !== d) return undefined

  let offset = 0
  if (zone !== undefined && zone !== 'Z') {
    const sign = zone.startsWith('-') ? -1 : 1
    const [zoneHours, zoneMinutes] = zone.slice(1).split(':').map(Number) as [number, number]
    if (zoneHours > 14 || zoneMinutes > 59) return undefined
    offset = sign * (zoneHours * 60 + zoneMinutes) * 60_000
  }
  const milliseconds = fraction === undefined ? 0 : Number(fraction.slice(0, 3).padEnd(3, '0'))
  const start = dayStart + ((h * 60 + min) * 60 + s) * 1000 + milliseconds - offset

  let end: number
  if (month === undefined) end = Date.UTC(y + 1, 0, 1)
  else if (day === undefined) end = Date.UTC(y, m, 1)
  else if (hour === undefined) end = Date.UTC(y, m - 1, d + 1)
  else if (second === undefined) end = start + 60_000
  else if (fraction === undefined) end = start + 1000
  else end = start + Math.max(1, 10 ** (3 - Math.min(fraction.length, 3)))
  return [start, end]
}

/** A parameter name or prefix made safe to print: letters, digits and a few marks only. */
// FHIR's date prefixes that Ward does not take.
const otherFhirPrefixes = ['ne', 'sa', 'eb', 'ap']

function printable(text: string): string {
  return /^[A-Za-z0-9_:.-]{1,40}$/.test(text) ? text : '(unprintable name)'
}
