import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'

import { WardError } from './errors.js'
import { checkReadingShape, maxReadingAgeMs, maxReadingClockSkewMs } from './reading-shape.js'

/** Code systems a device model may name measurements in. */
export const codeSystems = {
  loinc: 'http://loinc.org',
  mdc: 'urn:iso:std:iso:11073:10101',
  ucum: 'http://unitsofmeasure.org',
} as const

/** The identifier system under which a device gives each reading its own message id. */
export const deviceMessageIdSystem = 'urn:ward:device-message-id'

const Code = Type.Object(
  {
    system: Type.String({ minLength: 1, maxLength: 200 }),
    code: Type.String({ minLength: 1, maxLength: 64 }),
  },
  { additionalProperties: false },
)

const QuantityRule = Type.Object(
  {
    kind: Type.Literal('quantity'),
    /** Each UCUM unit the value may carry (`%`, `/min`, `mm[Hg]`, `mg/dL`…) with its range. */
    units: Type.Array(
      Type.Object(
        {
          unit: Type.String({ minLength: 1, maxLength: 32 }),
          min: Type.Number(),
          max: Type.Number(),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 8 },
    ),
  },
  { additionalProperties: false },
)

const OtherValueRule = Type.Object(
  {
    kind: Type.Union([
      Type.Literal('coded'),
      Type.Literal('boolean'),
      Type.Literal('string'),
      Type.Literal('dateTime'),
      Type.Literal('sampled'),
      Type.Literal('none'),
    ]),
  },
  { additionalProperties: false },
)

const ValueRule = Type.Union([QuantityRule, OtherValueRule])

const ComponentRule = Type.Object(
  {
    codes: Type.Array(Code, { minItems: 1, maxItems: 8 }),
    value: ValueRule,
  },
  { additionalProperties: false },
)

const MeasurementRule = Type.Object(
  {
    /** Any of these codings in `Observation.code` selects this rule. */
    codes: Type.Array(Code, { minItems: 1, maxItems: 8 }),
    display: Type.String({ minLength: 1, maxLength: 200 }),
    value: ValueRule,
    /** Components the observation may carry; any other component is refused. */
    components: Type.Optional(Type.Array(ComponentRule, { maxItems: 32 })),
  },
  { additionalProperties: false },
)

/**
 * What the devices of one model may send: the measurements (by LOINC or ISO/IEEE 11073 MDC
 * code), their UCUM units and plausible ranges, and the most readings a device may send a
 * minute. Anything else is rejected with a reason, never stored.
 */
export const DeviceModelPolicySchema = Type.Object(
  {
    measurements: Type.Array(MeasurementRule, { minItems: 1, maxItems: 64 }),
    maxReadingsPerMinute: Type.Integer({ minimum: 1, maximum: 60_000 }),
  },
  { additionalProperties: false },
)

/** A device model's policy. */
export type DeviceModelPolicy = Static<typeof DeviceModelPolicySchema>
type MeasurementRuleType = Static<typeof MeasurementRule>
type ValueRuleType = Static<typeof ValueRule>

/** Checks a policy against its schema and that every range is sound. */
export function checkDeviceModelPolicy(policy: unknown): DeviceModelPolicy {
  if (!Value.Check(DeviceModelPolicySchema, policy)) {
    const first = Value.Errors(DeviceModelPolicySchema, policy).First()
    throw new WardError(
      'ERR_INPUT_INVALID',
      `device model policy field ${first?.path || '(root)'}: ${first?.message ?? 'invalid'}`,
      { details: { field: first?.path ?? '' } },
    )
  }
  for (const [position, rule] of policy.measurements.entries()) {
    const values = [rule.value, ...(rule.components ?? []).map((component) => component.value)]
    for (const value of values) {
      if (value.kind === 'quantity' && value.units.some((range) => !(range.min <= range.max))) {
        throw new WardError(
          'ERR_INPUT_INVALID',
          `device model policy measurement ${position}: min must not exceed max`,
          { details: { field: `/measurements/${position}` } },
        )
      }
    }
  }
  return policy
}

/** A reading that passed its device model's policy: what Ward stores about it in clear. */
export interface AcceptedReading {
  readonly messageId: string
  /** The code of the rule that matched, `system|code`. */
  readonly code: string
  readonly effectiveAt: string
}

type Json = Record<string, unknown>

const observationStatuses = new Set([
  'registered',
  'preliminary',
  'final',
  'amended',
  'corrected',
  'cancelled',
  'entered-in-error',
  'unknown',
])
const messageIdPattern = /^[A-Za-z0-9._:-]{1,128}$/
// FHIR dateTime: a date alone, or a date and time with its zone.
const dateTimePattern = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/

/**
 * Checks one FHIR R4 Observation against a device model's policy and the device's patient.
 * Returns what Ward stores in clear, or throws `ERR_READING_REJECTED` whose message says what
 * the model does not allow (it names codes, units and limits, never a value's owner).
 *
 * `patientReference` is the only subject allowed (`Patient/<pseudonym>`); an observation may
 * also leave the subject out, and Ward fills it in from the device's assignment. The shape
 * checks of {@link checkReadingShape} come first; the effective time must lie within
 * {@link maxReadingAgeMs} before `now` and {@link maxReadingClockSkewMs} after it.
 */
export function checkObservation(
  resource: unknown,
  policy: DeviceModelPolicy,
  patientReference: string,
  now: number = Date.now(),
): AcceptedReading {
  if (!isObject(resource) || resource['resourceType'] !== 'Observation') {
    throw rejected('entry is not a FHIR Observation')
  }
  checkReadingShape(resource, patientReference)
  const status = resource['status']
  if (typeof status !== 'string' || !observationStatuses.has(status)) {
    throw rejected('Observation.status must be a FHIR observation status')
  }

  const messageId = findMessageId(resource)
  const effectiveAt = findEffectiveTime(resource, now)

  const subject = resource['subject']
  if (subject !== undefined) {
    const reference = isObject(subject) ? subject['reference'] : undefined
    if (reference !== patientReference) {
      throw rejected("Observation.subject must be absent or the device's assigned patient")
    }
  }

  const codings = codingsOf(resource['code'])
  const rule = policy.measurements.find((candidate) => matches(candidate.codes, codings))
  if (rule === undefined) {
    const named = codings.map((coding) => `${coding.system}|${coding.code}`).join(', ')
    throw rejected(`code ${named || '(none)'} is not a measurement this device model may send`)
  }

  checkValue(resource, rule.value, rule.display)
  checkComponents(resource, rule)

  const first = rule.codes[0] as { system: string; code: string }
  return { messageId, code: `${first.system}|${first.code}`, effectiveAt }
}

function findMessageId(resource: Json): string {
  const identifiers = Array.isArray(resource['identifier']) ? resource['identifier'] : []
  const own = identifiers.filter(
    (identifier): identifier is Json =>
      isObject(identifier) && identifier['system'] === deviceMessageIdSystem,
  )
  const value = own[0]?.['value']
  if (own.length !== 1 || typeof value !== 'string' || !messageIdPattern.test(value)) {
    throw rejected(
      `Observation.identifier must hold exactly one ${deviceMessageIdSystem} value of 1–128 ` +
        'letters, digits or ._:-',
    )
  }
  return value
}

function findEffectiveTime(resource: Json, now: number): string {
  const period = resource['effectivePeriod']
  const candidate =
    resource['effectiveDateTime'] ??
    resource['effectiveInstant'] ??
    (isObject(period) ? period['start'] : undefined)
  if (typeof candidate !== 'string' || !dateTimePattern.test(candidate)) {
    throw rejected(
      'Observation needs an effectiveDateTime, effectiveInstant or effectivePeriod.start with a time zone',
    )
  }
  const time = Date.parse(candidate)
  if (Number.isNaN(time)) throw rejected('Observation effective time is not a valid date')
  if (time > now + maxReadingClockSkewMs) {
    throw rejected(
      `Observation effective time may be at most ${maxReadingClockSkewMs / 60_000} minutes ahead of Ward's clock`,
    )
  }
  if (time < now - maxReadingAgeMs) {
    throw rejected('Observation effective time may be at most 10 years in the past')
  }
  return new Date(time).toISOString()
}

function checkValue(holder: Json, rule: ValueRuleType, display: string) {
  if (holder['dataAbsentReason'] !== undefined) return
  const valueKeys = Object.keys(holder).filter((key) => key.startsWith('value'))
  if (rule.kind === 'none') {
    if (valueKeys.length > 0) throw rejected(`${display} carries no value of its own`)
    return
  }
  const expected = {
    quantity: 'valueQuantity',
    coded: 'valueCodeableConcept',
    boolean: 'valueBoolean',
    string: 'valueString',
    dateTime: 'valueDateTime',
    sampled: 'valueSampledData',
  }[rule.kind]
  if (valueKeys.length === 0 && rule.kind !== 'quantity') return
  if (valueKeys.length !== 1 || valueKeys[0] !== expected) {
    throw rejected(`${display} must be sent as ${expected} or with a dataAbsentReason`)
  }
  if (rule.kind !== 'quantity') return

  const quantity = holder['valueQuantity']
  if (!isObject(quantity) || typeof quantity['value'] !== 'number') {
    throw rejected(`${display} needs a numeric valueQuantity.value`)
  }
  const unit = quantity['code']
  const range = rule.units.find((candidate) => candidate.unit === unit)
  if (quantity['system'] !== codeSystems.ucum || range === undefined) {
    throw rejected(
      `${display} must be in UCUM ${rule.units.map((candidate) => candidate.unit).join(' or ')}`,
    )
  }
  const value = quantity['value']
  if (!Number.isFinite(value) || value < range.min || value > range.max) {
    throw rejected(`${display} must lie between ${range.min} and ${range.max} ${range.unit}`)
  }
}

function checkComponents(resource: Json, rule: MeasurementRuleType) {
  const components = resource['component']
  if (components === undefined) return
  if (!Array.isArray(components) || components.length > 32) {
    throw rejected('Observation.component must be a list of at most 32 components')
  }
  for (const component of components) {
    if (!isObject(component)) throw rejected('Observation.component entries must be objects')
    const codings = codingsOf(component['code'])
    const componentRule = (rule.components ?? []).find((candidate) =>
      matches(candidate.codes, codings),
    )
    if (componentRule === undefined) {
      const named = codings.map((coding) => `${coding.system}|${coding.code}`).join(', ')
      throw rejected(`component ${named || '(none)'} is not allowed in ${rule.display}`)
    }
    checkValue(
      component,
      componentRule.value,
      `${rule.display} component ${codings[0]?.code ?? ''}`,
    )
  }
}

function codingsOf(concept: unknown): { system: string; code: string }[] {
  if (!isObject(concept) || !Array.isArray(concept['coding'])) return []
  return concept['coding'].filter(
    (coding): coding is { system: string; code: string } =>
      isObject(coding) &&
      typeof coding['system'] === 'string' &&
      typeof coding['code'] === 'string',
  )
}

function matches(
  codes: readonly { system: string; code: string }[],
  codings: readonly { system: string; code: string }[],
) {
  return codings.some((coding) =>
    codes.some((code) => code.system === coding.system && code.code === coding.code),
  )
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function rejected(reason: string): WardError {
  return new WardError('ERR_READING_REJECTED', reason)
}
