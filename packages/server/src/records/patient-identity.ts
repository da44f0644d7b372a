import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'

import { WardError } from '@ward/core'

// Printable text, not blank: control characters (NUL, line breaks, escapes) have no place in a
// name or an address, and would reach every document that prints one.
const text = (maxLength: number) =>
  Type.String({ minLength: 1, maxLength, pattern: '^(?=.*\\S)[^\\u0000-\\u001f\\u007f]+$' })

const HumanName = Type.Object(
  {
    family: text(200),
    /** Absent, or empty, for a person known by one name. */
    given: Type.Optional(Type.Array(text(100), { maxItems: 5 })),
  },
  { additionalProperties: false },
)

const Address = Type.Object(
  {
    line: Type.Array(text(200), { minItems: 1, maxItems: 4 }),
    city: Type.Optional(text(100)),
    state: Type.Optional(text(100)),
    postalCode: Type.Optional(text(20)),
    country: Type.Optional(text(100)),
  },
  { additionalProperties: false },
)

/**
 * A patient's direct identifiers: everything that names or reaches the person. Ward keeps
 * them only sealed, as one record in the identity vault; inside Ward a patient is known by
 * their pseudonym alone.
 */
export const PatientIdentitySchema = Type.Object(
  {
    name: HumanName,
    /** FHIR `date`: year, month and day. */
    birthDate: Type.String({ pattern: '^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])$' }),
    /** The organization's own medical record number for the patient. */
    medicalRecordNumber: Type.Optional(text(100)),
    address: Type.Optional(Address),
    phone: Type.Optional(Type.String({ pattern: '^\\+?[0-9][0-9 ().-]{2,29}$' })),
    email: Type.Optional(Type.String({ maxLength: 254, pattern: '^[^\\s@]+@[^\\s@]+$' })),
  },
  { additionalProperties: false },
)

/** A patient's direct identifiers. */
export type PatientIdentity = Static<typeof PatientIdentitySchema>

// What each field allows, in words, for errors about it; the schema's own messages quote
// patterns.
const allowed: Record<string, string> = {
  '/birthDate': 'must be a date written YYYY-MM-DD, not in the future',
  '/phone': 'must be a phone number: digits, spaces and + ( ) . -, 3 to 30 characters',
  '/email': 'must be an email address of at most 254 characters',
}
const fields = Object.keys(PatientIdentitySchema.properties).join(', ')

/**
 * Checks `identity` against {@link PatientIdentitySchema}, and that the birth date is a day
 * that exists and has come; throws `ERR_INPUT_INVALID` naming the first field at fault and
 * what it allows, never the value.
 */
export function checkPatientIdentity(
  identity: unknown,
  now = new Date(),
): asserts identity is PatientIdentity {
  if (!Value.Check(PatientIdentitySchema, identity)) {
    // A field that is not one is named first: it may be why an expected one seems missing.
    const errors = [...Value.Errors(PatientIdentitySchema, identity)]
    const first = errors.find((error) => error.message === 'Unexpected property') ?? errors[0]
    const path = first?.path || '(root)'
    throw invalidField(path, describe(path, first?.message ?? 'is invalid'))
  }
  const birth = new Date(`${identity.birthDate}T00:00:00Z`)
  if (birth.toISOString().slice(0, 10) !== identity.birthDate || birth > now) {
    throw invalidField('/birthDate', describe('/birthDate', 'is not a day that has come'))
  }
}

function describe(path: string, schemaMessage: string): string {
  if (schemaMessage === 'Expected required property') return 'is required'
  if (schemaMessage === 'Unexpected property') {
    return path.includes('/', 1)
      ? 'is not a field here'
      : `is not a field; the fields are ${fields}`
  }
  const rule = allowed[path]
  if (rule !== undefined) return rule
  if (schemaMessage.startsWith('Expected string to match')) {
    return 'must be printable text, not blank, without control characters'
  }
  return schemaMessage.toLowerCase()
}

function invalidField(path: string, rule: string): WardError {
  return new WardError('ERR_INPUT_INVALID', `patient identity field ${path} ${rule}`, {
    details: { field: path },
  })
}
