import { randomUUID } from 'node:crypto'

import { Type, type Static } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'

import { WardError, canonicalBytes } from '@ward/core'

import { recordedAddress, type OperationContext } from '../context.js'

/** DICOM audit event types (DCM code system) that Ward records. */
export const auditEventTypes = {
  applicationActivity: { code: '110100', display: 'Application Activity' },
  auditLogUsed: { code: '110101', display: 'Audit Log Used' },
  export: { code: '110106', display: 'Export' },
  securityAlert: { code: '110113', display: 'Security Alert' },
  userAuthentication: { code: '110114', display: 'User Authentication' },
  patientRecord: { code: '110110', display: 'Patient Record' },
  query: { code: '110112', display: 'Query' },
} as const

const text = (maxLength: number) => Type.String({ minLength: 1, maxLength })

const Coding = Type.Object(
  { system: text(200), code: text(100), display: Type.Optional(text(200)) },
  { additionalProperties: false },
)

const Agent = Type.Object(
  {
    type: Type.Union([
      Type.Literal('operator'),
      Type.Literal('user'),
      Type.Literal('device'),
      Type.Literal('system'),
    ]),
    who: text(200),
    role: Type.Optional(text(100)),
    requestor: Type.Boolean(),
    network: Type.Optional(Type.Object({ address: text(100) }, { additionalProperties: false })),
  },
  { additionalProperties: false },
)

/** Detail values are references and counts, never PHI: the schema allows no free objects. */
const DetailValue = Type.Union([Type.String({ maxLength: 1000 }), Type.Number(), Type.Boolean()])

const Entity = Type.Object(
  {
    type: text(100),
    what: text(200),
    role: Type.Optional(text(100)),
    /** The patient's pseudonym inside Ward, never an identifier from outside. */
    patient: Type.Optional(text(100)),
    detail: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-zA-Z][a-zA-Z0-9]*$' }), DetailValue),
    ),
  },
  { additionalProperties: false },
)

/**
 * One audit event, shaped after FHIR R4 AuditEvent and the IHE Basic Audit Log Patterns. Its
 * RFC 8785 canonical JSON is the leaf of the log's Merkle tree, so the random `id` keeps leaf
 * hashes unguessable and the schema keeps the leaf free of PHI values.
 */
export const AuditEventSchema = Type.Object(
  {
    id: Type.String({
      pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$',
    }),
    recorded: Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z$' }),
    type: Coding,
    subtype: Coding,
    /** FHIR AuditEventAction: Create, Read, Update, Delete, Execute. */
    action: Type.Union([
      Type.Literal('C'),
      Type.Literal('R'),
      Type.Literal('U'),
      Type.Literal('D'),
      Type.Literal('E'),
    ]),
    /** FHIR R4 AuditEventOutcome: 0 success, 4 minor, 8 serious, 12 major failure. */
    outcome: Type.Union([
      Type.Literal('0'),
      Type.Literal('4'),
      Type.Literal('8'),
      Type.Literal('12'),
    ]),
    outcomeDescription: Type.Optional(text(500)),
    purposeOfUse: Type.Array(text(50), { minItems: 1, maxItems: 5 }),
    agent: Type.Array(Agent, { minItems: 1, maxItems: 10 }),
    source: Type.Object({ site: text(253), observer: text(100) }, { additionalProperties: false }),
    entity: Type.Array(Entity, { maxItems: 100 }),
    requestId: text(100),
    policy: Type.Object(
      { decision: Type.Literal('permit'), rule: text(100) },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
)

/** An audit event as recorded. */
export type AuditEvent = Static<typeof AuditEventSchema>

// Compiled once: every append checks its events, and the compiled form is several times faster.
const auditEventChecker = TypeCompiler.Compile(AuditEventSchema)

/** What an operation says about itself; the rest of the event comes from its context. */
export interface AuditEventInput {
  readonly type: { readonly code: string; readonly display: string }
  /** Ward's own name for the operation, e.g. `organization.create`. */
  readonly operation: string
  readonly action: AuditEvent['action']
  readonly outcome?: AuditEvent['outcome']
  readonly outcomeDescription?: string
  readonly entity?: AuditEvent['entity']
}

/** Largest canonical event Ward records: entry bundles prefix each entry with a uint16. */
export const maxAuditEventBytes = 65_535

const dicom = 'http://dicom.nema.org/resources/ontology/DCM'
const wardOperations = 'urn:ward:audit-operation'

/**
 * Builds the full event for `input` done under `context`, recorded now at `site`. Members are
 * written in RFC 8785 order, so canonicalizing the event is a single `JSON.stringify`.
 */
export function buildAuditEvent(
  context: OperationContext,
  site: string,
  input: AuditEventInput,
  recorded: Date = new Date(),
): AuditEvent {
  const actor = context.actor
  const address = recordedAddress(actor)
  return {
    action: input.action,
    agent: [
      {
        ...(address === undefined ? {} : { network: { address } }),
        requestor: true,
        ...(actor.role === undefined ? {} : { role: actor.role }),
        type: actor.type,
        who: actor.id,
      },
    ],
    entity: (input.entity ?? []).map(sortedMembers),
    id: randomUUID(),
    outcome: input.outcome ?? '0',
    ...(input.outcomeDescription === undefined
      ? {}
      : { outcomeDescription: input.outcomeDescription }),
    policy: { decision: 'permit', rule: context.policyRule },
    purposeOfUse: [context.purposeOfUse],
    recorded: recorded.toISOString(),
    requestId: context.requestId,
    source: { observer: 'ward', site },
    subtype: { code: input.operation, system: wardOperations },
    type: { code: input.type.code, display: input.type.display, system: dicom },
  }
}

function sortedMembers<T extends object>(object: T): T {
  const sorted: Record<string, unknown> = {}
  for (const name of Object.keys(object).sort()) {
    const value = (object as Record<string, unknown>)[name]
    sorted[name] =
      typeof value === 'object' && value !== null && !Array.isArray(value)
        ? sortedMembers(value)
        : value
  }
  return sorted as T
}

/**
 * Checks an event against the schema and the size limit and returns its canonical bytes, the
 * leaf that goes into the log. Throws `ERR_AUDIT_EVENT_INVALID` naming the first field at fault.
 */
export function encodeAuditEvent(event: AuditEvent): Uint8Array {
  if (!auditEventChecker.Check(event)) {
    const first = auditEventChecker.Errors(event).First()
    throw new WardError(
      'ERR_AUDIT_EVENT_INVALID',
      `audit event field ${first?.path || '(root)'}: ${first?.message ?? 'invalid'}`,
      { details: { field: first?.path ?? '' } },
    )
  }
  const bytes = canonicalBytes(event)
  if (bytes.length > maxAuditEventBytes) {
    throw new WardError(
      'ERR_AUDIT_EVENT_INVALID',
      `audit event is ${bytes.length} bytes; at most ${maxAuditEventBytes} allowed`,
      { details: { bytes: bytes.length, limit: maxAuditEventBytes } },
    )
  }
  return bytes
}
