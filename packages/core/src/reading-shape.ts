import { WardError } from './errors.js'

/** Deepest nesting of objects and arrays a reading (or a batch Bundle around it) may have. */
export const maxReadingDepth = 32

/**
 * How far ahead of Ward's clock a reading's effective time may be: five minutes, for the
 * drift of device clocks kept by NTP or by the phone they pair with. A fixed rule rather than a
 * setting, so that every Ward refuses the same readings and a device's documentation can say so.
 */
export const maxReadingClockSkewMs = 5 * 60_000

/**
 * How old a reading's effective time may be: ten years. A device queues readings while offline
 * for days, not decades; an older time is a clock that was never set (1970, 1900) or a typo.
 */
export const maxReadingAgeMs = 10 * 365.25 * 24 * 60 * 60_000

/**
 * The top-level Observation elements a device may send: those the HL7 Personal Health Device
 * and FHIR R4 examples use. Left out on purpose: `contained` (a resource, such as a Patient
 * with a name and birth date, inside the reading), `focus` and `specimen` (references to what
 * else the reading is about), `implicitRules` and `modifierExtension` (which change the
 * meaning of the rest in ways Ward cannot check).
 */
export const deviceObservationElements: ReadonlySet<string> = new Set([
  'resourceType',
  'id',
  'meta',
  'language',
  'text',
  'extension',
  'identifier',
  'basedOn',
  'partOf',
  'status',
  'category',
  'code',
  'subject',
  'encounter',
  'effectiveDateTime',
  'effectivePeriod',
  'effectiveInstant',
  'effectiveTiming',
  'issued',
  'performer',
  'valueQuantity',
  'valueCodeableConcept',
  'valueString',
  'valueBoolean',
  'valueInteger',
  'valueRange',
  'valueRatio',
  'valueSampledData',
  'valueTime',
  'valueDateTime',
  'valuePeriod',
  'dataAbsentReason',
  'interpretation',
  'note',
  'bodySite',
  'method',
  'device',
  'referenceRange',
  'hasMember',
  'derivedFrom',
  'component',
])

// References to resource types that name a person — relative, absolute or conditional
// (`Patient?identifier=…`) — and a Reference's `type` naming one, by name or by the URL of its
// StructureDefinition. A reading may point at a person only as its own subject.
const personReference = /(?:^|\/)(?:Patient|RelatedPerson|Person)(?:[/?]|$)/
const personType = /(?:^|\/)(?:Patient|RelatedPerson|Person)$/

/**
 * Checks the shape of a reading before anything else looks into it, without recursion, so
 * that no input can exhaust the stack: at most {@link maxReadingDepth} levels of nesting,
 * only the {@link deviceObservationElements} at the top, no `contained` resources anywhere,
 * finite numbers only, and no reference to a Patient, RelatedPerson or Person other than
 * `patientReference` (the subject). Throws `ERR_READING_REJECTED` whose reason names the
 * element and the rule, never the value.
 */
export function checkReadingShape(resource: Record<string, unknown>, patientReference: string) {
  for (const key of Object.keys(resource)) {
    if (!deviceObservationElements.has(key)) {
      throw rejected(
        key === 'contained'
          ? 'Observation.contained is not allowed: a reading may hold no other resource'
          : `Observation.${elementName(key)} is not an element a device may send`,
      )
    }
  }
  const pending: { value: unknown; path: string; depth: number }[] = [
    { value: resource, path: 'Observation', depth: 1 },
  ]
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { value, path, depth } = next
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) throw rejected(`${path} must be a finite number`)
      continue
    }
    if (typeof value !== 'object' || value === null) continue
    if (depth > maxReadingDepth) {
      throw rejected(`${path} nests deeper than the ${maxReadingDepth} levels a reading may have`)
    }
    if (Array.isArray(value)) {
      value.forEach((item, index) => {
        pending.push({ value: item, path: `${path}[${index}]`, depth: depth + 1 })
      })
      continue
    }
    const object = value as Record<string, unknown>
    if (path !== 'Observation' && 'contained' in object) {
      throw rejected(`${path}.contained is not allowed: a reading may hold no other resource`)
    }
    checkPersonReference(object, path, patientReference)
    for (const [key, item] of Object.entries(object)) {
      pending.push({ value: item, path: `${path}.${elementName(key)}`, depth: depth + 1 })
    }
  }
}

/** Refuses `object` when it is a Reference to a person other than the subject. */
function checkPersonReference(
  object: Record<string, unknown>,
  path: string,
  patientReference: string,
) {
  const reference = object['reference']
  const type = object['type']
  const namesPerson =
    (typeof reference === 'string' && personReference.test(reference)) ||
    (typeof type === 'string' && personType.test(type) && path !== 'Observation')
  if (namesPerson && reference !== patientReference) {
    throw rejected(
      `${path} may refer to a Patient, RelatedPerson or Person only as the device's assigned ` +
        'patient, the subject',
    )
  }
}

// An element name as it appears in a reason: an unexpected key is cut short and kept to the
// characters of FHIR element names, so a reason never repeats what a device sent at length.
function elementName(key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(key) ? key : '(an invalid element name)'
}

function rejected(reason: string): WardError {
  return new WardError('ERR_READING_REJECTED', reason)
}
