import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'

import { WardError } from '@ward/core'

const text = (maxLength: number) => Type.String({ minLength: 1, maxLength })

const HumanName = Type.Object(
  {
    family: text(200),
    given: Type.Array(text(100), { maxItems: 5 }),
  },
  { additionalProperties: false },
)

const Address = Type.Object(
  {
    line: Type.Array(text(200), { maxItems: 4 }),
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

/**
 * Checks `identity` against {@link PatientIdentitySchema}; throws `ERR_INPUT_INVALID` naming
 * the first field at fault and the rule it breaks, never the value.
 */
export function checkPatientIdentity(identity: unknown): asserts identity is PatientIdentity {
  if (Value.Check(PatientIdentitySchema, identity)) return
  const first = Value.Errors(PatientIdentitySchema, identity).First()
  throw new WardError(
    'ERR_INPUT_INVALID',
    `patient identity field ${first?.path || '(root)'}: ${first?.message ?? 'invalid'}`,
    { details: { field: first?.path ?? '' } },
  )
}
