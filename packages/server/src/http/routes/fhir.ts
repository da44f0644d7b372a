import { Type } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'

import { WardError, isWardError } from '@ward/core'

import { decide, type PurposeOfUse } from '../../access/index.js'
import { findDevice } from '../../devices/index.js'
import {
  findPatient,
  findPatientByPseudonym,
  pseudonymSystem,
  toOperationOutcome,
  type FhirResource,
  type SearchBundle,
  type SearchInput,
} from '../../records/index.js'
import { findReadingRow } from '../../records/readings.js'
import { findOrganization, type Organization } from '../../tenancy/index.js'
import type { Ward } from '../../ward.js'
import {
  apiRoute,
  hiddenResource,
  type ApiRoute,
  type Resolved,
  type RouteCall,
} from '../api-route.js'
import { errorSummary, retryAfterOf, toProblem, translateFrameworkError } from '../problem.js'
import { hide } from './resolvers.js'

/** FHIR's JSON media type, which every answer under the FHIR base carries. */
export const fhirJson = 'application/fhir+json; charset=utf-8'

/** The FHIR base of an organization, as a route pattern. */
export const fhirBase = '/v1/organizations/:organization/fhir'

const Slug = Type.String({ pattern: '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$' })
// A FHIR id: what every resource id Ward issues (pseudonym, UUID) is spelled in.
const FhirId = Type.String({ pattern: '^[A-Za-z0-9\\-.]{1,64}$' })
const strict = { additionalProperties: false } as const
const IdParams = Type.Object({ organization: Slug, id: FhirId }, strict)
const BaseParams = Type.Object({ organization: Slug }, strict)

// Search values are checked by the records domain, which names the parameter at fault; the
// schema bounds their size and count and documents them. Unknown parameters pass the schema
// so that the domain can name them.
const Value = Type.Union([
  Type.String({ maxLength: 1000 }),
  Type.Array(Type.String({ maxLength: 1000 }), { maxItems: 20 }),
])
const searchQuery = (names: readonly string[]) =>
  Type.Object(Object.fromEntries(names.map((name) => [name, Type.Optional(Value)])), {
    additionalProperties: true,
    maxProperties: 12,
  })

const FhirResourceOut = Type.Object(
  { resourceType: Type.String(), id: Type.Optional(Type.String()) },
  { additionalProperties: true },
)
const BundleOut = Type.Object(
  {
    resourceType: Type.Literal('Bundle'),
    type: Type.Literal('searchset'),
    link: Type.Array(Type.Object({ relation: Type.String(), url: Type.String() })),
    entry: Type.Array(
      Type.Object({
        fullUrl: Type.String(),
        resource: FhirResourceOut,
        search: Type.Object({ mode: Type.String() }),
      }),
    ),
  },
  { additionalProperties: true },
)

const OperationOutcomeOut = Type.Object({
  resourceType: Type.Literal('OperationOutcome'),
  issue: Type.Array(
    Type.Object({
      severity: Type.String(),
      code: Type.String(),
      diagnostics: Type.String(),
      expression: Type.Optional(Type.Array(Type.String())),
    }),
  ),
})
const errors = {
  400: OperationOutcomeOut,
  401: OperationOutcomeOut,
  403: OperationOutcomeOut,
  404: OperationOutcomeOut,
  410: OperationOutcomeOut,
}

/**
 * Default purposes of use of the clinical FHIR routes by role. Carers come first: a clinician
 * who is also a patient reads others for treatment by default, and names PATRQT to read
 * themself.
 */
const clinicalPurposes = {
  clinician: 'TREAT',
  'care-coordinator': 'TREAT',
  patient: 'PATRQT',
  support: 'HSYSADMIN',
} as const

/**
 * The FHIR R4 API of each organization, under `/v1/organizations/<org>/fhir/`, as routes of
 * the same shape as the route table in `api.ts`, under the same policy. What the policy sees:
 *
 * - `Patient/<id>`, `Patient?_id=|identifier=`: the patient named (`fhir.patient.read`);
 *   whether the answer includes identity is a second question to the policy
 *   (`fhir.patient.identity`) about the same patient.
 * - `Observation/<id>`: the patient the reading belongs to; `Observation?patient=`: that
 *   patient (`fhir.observation.read`).
 * - `Device/<id>`: the device, with its patient when it is assigned to one; `Device?patient=`:
 *   that patient (`fhir.device.read`).
 * - `AuditEvent?…`: the organization's audit log (`fhir.audit-event.search`).
 *
 * A patient-scoped search without `patient` (or `_id`/`identifier`) is refused with 400 before
 * the policy is asked: no search reaches across patients. A search naming a patient the
 * organization does not have answers 404 as a read does — not an empty Bundle — because the
 * policy decides on one patient, and one that is not there has no care team.
 */
export const fhirRoutes: readonly ApiRoute[] = [
  apiRoute({
    method: 'GET',
    url: `${fhirBase}/Patient/:id`,
    action: 'fhir.patient.read',
    purposeOfUse: 'TREAT',
    purposeOfUseByRole: clinicalPurposes,
    summary: 'FHIR read of a Patient by pseudonym; name and birth date only for their carers',
    tag: 'fhir',
    params: IdParams,
    response: { 200: FhirResourceOut, ...errors },
    resolve: (ward, params) => patientIn(ward, params.organization, params.id),
    handle: async (call) =>
      fhir(
        call,
        await call.ward.fhir.readPatient(call.context, call.params.id, {
          includeIdentity: await identityAllowed(call),
        }),
      ),
  }),
  apiRoute({
    method: 'GET',
    url: `${fhirBase}/Patient`,
    action: 'fhir.patient.read',
    purposeOfUse: 'TREAT',
    purposeOfUseByRole: clinicalPurposes,
    summary: 'FHIR search for one Patient by _id or identifier (urn:ward:pseudonym|…)',
    tag: 'fhir',
    params: BaseParams,
    querystring: searchQuery(['_id', 'identifier', '_count']),
    response: { 200: BundleOut, ...errors },
    resolve: async (ward, params, _principal, query) => {
      const id = single('Patient', query, '_id')
      if (id !== undefined && !/^[A-Za-z0-9\-.]{1,64}$/.test(id)) {
        invalid('Patient', '_id', 'must be a FHIR id: 1–64 letters, digits, - and .')
      }
      const pseudonym = id ?? identifierValue(single('Patient', query, 'identifier'))
      if (pseudonym === undefined) throw required('Patient', '_id or identifier', '_id')
      return patientIn(ward, params.organization, pseudonym)
    },
    handle: async (call) =>
      fhir(
        call,
        await call.ward.fhir.searchPatients(call.context, searchInput(call.query), {
          includeIdentity: await identityAllowed(call),
        }),
      ),
  }),
  apiRoute({
    method: 'GET',
    url: `${fhirBase}/Observation/:id`,
    action: 'fhir.observation.read',
    purposeOfUse: 'TREAT',
    purposeOfUseByRole: clinicalPurposes,
    summary: 'FHIR read of one reading, as the Observation the device sent',
    tag: 'fhir',
    params: IdParams,
    response: { 200: FhirResourceOut, ...errors },
    resolve: async (ward, params) => {
      const organization = await organizationOf(ward, params.organization)
      const row = await findReadingRow(ward.store.db, organization.id, params.id)
      if (row === undefined) throw hiddenResource()
      const patient = await findPatient(ward.store.db, organization.id, row.patientId).catch(hide)
      return {
        organization,
        patient,
        resource: {
          type: 'patient',
          organizationId: organization.id,
          patientPseudonym: patient.pseudonym,
        },
      }
    },
    handle: async (call) =>
      fhir(call, await call.ward.fhir.readObservation(call.context, call.params.id)),
  }),
  apiRoute({
    method: 'GET',
    url: `${fhirBase}/Observation`,
    action: 'fhir.observation.read',
    purposeOfUse: 'TREAT',
    purposeOfUseByRole: clinicalPurposes,
    summary: "FHIR search of one patient's readings by date and code, paged by next links",
    tag: 'fhir',
    params: BaseParams,
    querystring: searchQuery(['patient', 'date', 'code', '_count', '_sort', '_cursor']),
    response: { 200: BundleOut, ...errors },
    resolve: (ward, params, _principal, query) =>
      patientIn(ward, params.organization, patientParameter('Observation', query)),
    handle: async (call) =>
      fhir(call, await call.ward.fhir.searchObservations(call.context, searchInput(call.query))),
  }),
  apiRoute({
    method: 'GET',
    url: `${fhirBase}/Device/:id`,
    action: 'fhir.device.read',
    purposeOfUse: 'TREAT',
    purposeOfUseByRole: clinicalPurposes,
    summary: 'FHIR read of a Device by id, with its patient when assigned to one',
    tag: 'fhir',
    params: IdParams,
    response: { 200: FhirResourceOut, ...errors },
    resolve: async (ward, params) => {
      const organization = await organizationOf(ward, params.organization)
      const device = await findDevice(ward.store.db, organization.id, params.id).catch(hide)
      // findDevice also takes serials; a FHIR read names the id only.
      if (device.id !== params.id) throw hiddenResource()
      const patient =
        device.patientId === null
          ? undefined
          : await findPatient(ward.store.db, organization.id, device.patientId).catch(hide)
      return {
        organization,
        device,
        ...(patient === undefined ? {} : { patient }),
        resource: {
          type: 'device',
          organizationId: organization.id,
          ...(patient === undefined ? {} : { patientPseudonym: patient.pseudonym }),
        },
      }
    },
    handle: async (call) =>
      fhir(call, await call.ward.fhir.readDevice(call.context, call.params.id)),
  }),
  apiRoute({
    method: 'GET',
    url: `${fhirBase}/Device`,
    action: 'fhir.device.read',
    purposeOfUse: 'TREAT',
    purposeOfUseByRole: clinicalPurposes,
    summary: 'FHIR search of the devices assigned to one patient',
    tag: 'fhir',
    params: BaseParams,
    querystring: searchQuery(['patient', '_count']),
    response: { 200: BundleOut, ...errors },
    resolve: (ward, params, _principal, query) =>
      patientIn(ward, params.organization, patientParameter('Device', query)),
    handle: async (call) =>
      fhir(call, await call.ward.fhir.searchDevices(call.context, searchInput(call.query))),
  }),
  apiRoute({
    method: 'GET',
    url: `${fhirBase}/AuditEvent`,
    action: 'fhir.audit-event.search',
    purposeOfUse: 'HOPERAT',
    summary: "FHIR search of the organization's audit log by date, patient and entity",
    tag: 'fhir',
    params: BaseParams,
    querystring: searchQuery(['date', 'patient', 'entity', '_count', '_sort', '_cursor']),
    response: { 200: BundleOut, ...errors },
    resolve: async (ward, params) => {
      const organization = await organizationOf(ward, params.organization)
      return { organization, resource: { type: 'audit-log', organizationId: organization.id } }
    },
    handle: async (call) =>
      fhir(call, await call.ward.fhir.searchAuditEvents(call.context, searchInput(call.query))),
  }),
]

/** What the CapabilityStatement lists: each resource type, its interactions and parameters. */
const supported: readonly {
  readonly type: string
  readonly interactions: readonly ('read' | 'search-type')[]
  readonly parameters: readonly [string, string][]
}[] = [
  {
    type: 'Patient',
    interactions: ['read', 'search-type'],
    parameters: [
      ['_id', 'token'],
      ['identifier', 'token'],
      ['_count', 'number'],
    ],
  },
  {
    type: 'Observation',
    interactions: ['read', 'search-type'],
    parameters: [
      ['patient', 'reference'],
      ['date', 'date'],
      ['code', 'token'],
      ['_count', 'number'],
      ['_sort', 'string'],
      ['_cursor', 'string'],
    ],
  },
  {
    type: 'Device',
    interactions: ['read', 'search-type'],
    parameters: [
      ['patient', 'reference'],
      ['_count', 'number'],
    ],
  },
  {
    type: 'AuditEvent',
    interactions: ['search-type'],
    parameters: [
      ['date', 'date'],
      ['patient', 'reference'],
      ['entity', 'reference'],
      ['_count', 'number'],
      ['_sort', 'string'],
      ['_cursor', 'string'],
    ],
  },
]

/** The CapabilityStatement of the FHIR base at `base`: exactly what Ward serves there. */
export function capabilityStatement(base: string): FhirResource {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2026-12-04',
    publisher: 'Ward',
    kind: 'instance',
    software: { name: 'Ward', version: '0.1.0' },
    implementation: { description: 'Ward FHIR R4 read subset', url: base },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json'],
    rest: [
      {
        mode: 'server',
        security: {
          description:
            'Authorization: Bearer with a Ward session token or an API token holding scope ' +
            'fhir:read (fhir:audit for AuditEvent); x-purpose-of-use names the purpose of use.',
        },
        resource: supported.map((resource) => ({
          type: resource.type,
          interaction: resource.interactions.map((code) => ({ code })),
          searchParam: resource.parameters.map(([name, type]) => ({ name, type })),
        })),
      },
    ],
  }
}

/**
 * Registers the FHIR API in `scope`, an encapsulated part of the server of its own: the
 * routes under the policy through `register` (the same path as every `/v1` route), the open
 * `metadata`, an OperationOutcome 404 for every other path under the base, and an error
 * handler that answers every error — 400, 401, 403, 404, 410 — as an OperationOutcome with
 * FHIR's media type.
 */
export function registerFhirRoutes(
  scope: FastifyInstance,
  ward: Ward,
  register: (routes: readonly ApiRoute[]) => void,
): void {
  scope.setErrorHandler(async (error, request, reply) => fhirError(error, request, reply))

  // Open, as FHIR clients expect; the same for every organization slug, so that it tells
  // nothing about which organizations exist.
  scope.get(
    `${fhirBase}/metadata`,
    {
      schema: {
        summary: 'The CapabilityStatement of the FHIR API: what it serves and how',
        tags: ['fhir'],
        params: BaseParams,
        response: { 200: FhirResourceOut, ...errors },
      },
    },
    async (request, reply) => {
      const { organization } = request.params as { organization: string }
      return reply.type(fhirJson).send(capabilityStatement(baseUrl(ward, organization)))
    },
  )

  register(fhirRoutes)

  scope.route({
    method: ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'],
    url: `${fhirBase}/*`,
    schema: { hide: true },
    handler: async () => {
      throw new WardError('ERR_NOT_FOUND', 'no such resource type or interaction; see metadata')
    },
  })
}

async function fhirError(error: unknown, request: FastifyRequest, reply: FastifyReply) {
  const ward = translateFrameworkError(error)
  const problem = toProblem(ward, request.id)
  if (problem.status >= 500) {
    request.log.error({ code: problem.code, err: errorSummary(error) }, 'request failed')
  }
  if (problem.status === 401) reply.header('www-authenticate', 'Bearer realm="ward"')
  const retryAfter = retryAfterOf(ward)
  if (retryAfter !== undefined) reply.header('retry-after', retryAfter)
  const outcome = toOperationOutcome(ward)
  const field = isWardError(ward) ? ward.details['field'] : undefined
  const coded = {
    ...outcome,
    issue: outcome.issue.map((issue) => ({
      ...issue,
      code: issueCode(problem.status, issue.code),
      // A schema error names the field, as `querystring/_count` or `params/id`.
      ...(issue.expression === undefined && typeof field === 'string'
        ? { expression: [field.replace(/^(querystring|params)\//, '')] }
        : {}),
    })),
  }
  return reply.status(problem.status).type(fhirJson).send(coded)
}

/** The FHIR issue type for statuses `toOperationOutcome` does not distinguish. */
function issueCode(status: number, code: string): string {
  if (code !== 'exception') return code
  if (status === 401) return 'login'
  if (status === 429) return 'throttled'
  if (status === 413) return 'too-long'
  if (status >= 400 && status < 500) return 'invalid'
  return code
}

/** The absolute FHIR base of organization `slug`, from the configured origin. */
function baseUrl(ward: Ward, slug: string): string {
  return `${ward.config.auth.origin}/v1/organizations/${slug}/fhir/`
}

/** Answers `resource` as FHIR JSON, a Bundle's links and full URLs made absolute. */
function fhir(
  call: RouteCall<{ organization: string }, unknown, unknown>,
  resource: FhirResource | SearchBundle,
) {
  const base = baseUrl(call.ward, (call.resolved.organization as Organization).slug)
  const body =
    resource.resourceType === 'Bundle'
      ? absoluteBundle(resource as SearchBundle, base)
      : (resource as FhirResource)
  return { status: 200, body, contentType: fhirJson }
}

function absoluteBundle(bundle: SearchBundle, base: string): SearchBundle {
  return {
    ...bundle,
    link: bundle.link.map((link) => ({ ...link, url: new URL(link.url, base).href })),
    // A search's outcome entry (readings withheld as tampered) has no address of its own.
    entry: bundle.entry.map((entry) =>
      entry.fullUrl === undefined
        ? entry
        : { ...entry, fullUrl: new URL(entry.fullUrl, base).href },
    ),
  }
}

/** Whether the policy lets the caller see the patient's identity, for the same patient. */
async function identityAllowed(call: RouteCall<unknown, unknown, unknown>): Promise<boolean> {
  const facts = await call.access.facts(call.principal, call.resolved.resource)
  return decide({
    principal: call.principal,
    action: 'fhir.patient.identity',
    resource: call.resolved.resource,
    purposeOfUse: call.context.purposeOfUse as PurposeOfUse,
    facts,
    mfa: call.ward.config.auth.mfa,
  }).allowed
}

async function organizationOf(ward: Ward, slug: string): Promise<Organization> {
  return findOrganization(ward.store.db, slug).catch(hide)
}

async function patientIn(ward: Ward, slug: string, pseudonym: string): Promise<Resolved> {
  const organization = await organizationOf(ward, slug)
  const patient = await findPatientByPseudonym(ward.store.db, organization.id, pseudonym).catch(
    hide,
  )
  return {
    organization,
    patient,
    resource: { type: 'patient', organizationId: organization.id, patientPseudonym: pseudonym },
  }
}

/** The query as the records domain's search takes it. */
function searchInput(query: unknown): SearchInput {
  return query as Record<string, string | string[]>
}

/** The one value of `name`, checked to be given once; undefined when absent. */
function single(resourceType: string, query: unknown, name: string): string | undefined {
  const value = (query as Record<string, string | string[] | undefined>)[name]
  if (value === undefined) return undefined
  if (typeof value !== 'string') invalid(resourceType, name, 'may be given once')
  if (value.length === 0) invalid(resourceType, name, 'must not be empty')
  return value
}

const pseudonymPattern = /^pt-[a-z2-7]{20}$/

/** The pseudonym a patient-scoped search names in `patient`; 400 without one. */
function patientParameter(resourceType: string, query: unknown): string {
  const value = single(resourceType, query, 'patient')
  if (value === undefined) throw required(resourceType, 'patient', 'patient')
  const pseudonym = value.startsWith('Patient/') ? value.slice('Patient/'.length) : value
  if (!pseudonymPattern.test(pseudonym)) {
    invalid(resourceType, 'patient', 'must be a patient pseudonym, as Patient/<id> or <id>')
  }
  return pseudonym
}

function identifierValue(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  const bar = value.lastIndexOf('|')
  if (bar >= 0 && value.slice(0, bar) !== pseudonymSystem) {
    invalid(
      'Patient',
      'identifier',
      `must be ${pseudonymSystem}|<pseudonym> or the pseudonym alone`,
    )
  }
  const pseudonym = value.slice(bar + 1)
  if (!pseudonymPattern.test(pseudonym)) {
    invalid(
      'Patient',
      'identifier',
      `must be ${pseudonymSystem}|<pseudonym> or the pseudonym alone`,
    )
  }
  return pseudonym
}

function invalid(resourceType: string, parameter: string, rule: string): never {
  throw new WardError(
    'ERR_INPUT_INVALID',
    `${resourceType} search parameter ${parameter} ${rule}`,
    {
      details: { parameter, allowed: rule },
    },
  )
}

function required(resourceType: string, what: string, parameter: string): WardError {
  return new WardError('ERR_INPUT_INVALID', `${resourceType} search needs the parameter ${what}`, {
    details: { parameter, allowed: `${what} is required` },
  })
}
