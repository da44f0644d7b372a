import { Type, type TObject, type TSchema } from '@sinclair/typebox'

import { WardError } from '@ward/core'

import {
  breakGlassReasonCodes,
  breakGlassReasonLength,
  breakGlassReviewOutcomes,
  findBreakGlassGrant,
  findCareTeam,
  type BreakGlassGrant,
  type BreakGlassReviewItem,
  type CareTeam,
  type Principal,
} from '../../access/index.js'
import type { DeviceModel } from '../../devices/index.js'
import {
  PatientIdentitySchema,
  maxRangeDays,
  maxReadingPage,
  type Observation,
  type PatientReadings,
  findPatientByPseudonym,
  type Patient,
} from '../../records/index.js'
import { findOrganizationById, type Organization } from '../../tenancy/index.js'
import { platformLogName } from '../../audit/index.js'
import type { Ward } from '../../ward.js'
import { apiRoute, oneOf, type ApiRoute, type Resolved } from '../api-route.js'
import { adminRoutes } from './admin-api.js'
import { auditConsistencyProof, auditInclusionProof, auditTile } from './audit.js'
import {
  DeviceParams,
  OrganizationParams,
  Pseudonym,
  Serial,
  Slug,
  Uuid,
  created,
  DeviceOut,
  deviceIn,
  deviceOut,
  devicesOut,
  hide,
  inOrganization,
  ok,
  organizationOf,
  strict,
} from './resolvers.js'

const UserId = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$' })
const DateTime = Type.String({
  pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,9})?)?(Z|[+-]\\d{2}:\\d{2})$',
  maxLength: 40,
})
const Name = Type.String({ minLength: 1, maxLength: 100 })
const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()])

const PatientParams = Type.Object({ organization: Slug, patient: Pseudonym }, strict)
const CareTeamParams = Type.Object({ organization: Slug, careTeam: Uuid }, strict)
const MemberParams = Type.Object({ organization: Slug, careTeam: Uuid, user: UserId }, strict)
const TeamPatientParams = Type.Object(
  { organization: Slug, careTeam: Uuid, patient: Pseudonym },
  strict,
)
const GrantParams = Type.Object({ organization: Slug, grant: Uuid }, strict)
const ManufacturerParams = Type.Object(
  { organization: Slug, manufacturer: Type.String({ minLength: 1, maxLength: 200 }) },
  strict,
)

/** Most readings one request returns: one page of the records domain's read. */
export const maxReadingsPerRequest = maxReadingPage
const ReadingsQuery = Type.Object(
  {
    from: Type.Optional(DateTime),
    to: Type.Optional(DateTime),
    limit: Type.Integer({ minimum: 1, maximum: maxReadingsPerRequest, default: 1000 }),
    cursor: Type.Optional(Uuid),
  },
  strict,
)

const OrganizationOut = Type.Object({ id: Type.String(), slug: Type.String(), name: Type.String() })
const DeviceModelOut = Type.Object({
  id: Type.String(),
  name: Type.String(),
  manufacturer: Type.String(),
  policy: Type.Unknown(),
})
const PatientOut = Type.Object({ pseudonym: Type.String(), createdAt: Type.String() })
const CareTeamOut = Type.Object({
  id: Type.String(),
  name: Type.String(),
  createdAt: Type.String(),
})
const CareTeamDetailOut = Type.Object({
  id: Type.String(),
  name: Type.String(),
  createdAt: Type.String(),
  members: Type.Array(Type.String()),
  patients: Type.Array(Type.String()),
})
const ChangeOut = Type.Object({ changed: Type.Boolean() })
const ManufacturerCrlOut = Type.Object({
  number: Type.String(),
  thisUpdate: Type.String(),
  nextUpdate: Type.String(),
  revokedCertificates: Type.Integer(),
  stale: Type.Boolean(),
  manufacturerCas: Type.Array(Type.String()),
})
const GrantFields = {
  id: Type.String(),
  user: Type.String(),
  patient: Type.String(),
  reasonCode: Type.String(),
  openedAt: Type.String(),
  expiresAt: Type.String(),
  reviewStatus: Type.String(),
  reviewOutcome: Nullable(Type.String()),
  reviewedBy: Nullable(Type.String()),
  reviewedAt: Nullable(Type.String()),
}
const GrantOut = Type.Object(GrantFields)
const ReviewItemOut = Type.Object({ ...GrantFields, reason: Nullable(Type.String()) })
const ObservationBundle = Type.Object({
  resourceType: Type.Literal('Bundle'),
  type: Type.Literal('searchset'),
  /** Every reading that matches; given only on the last page, where it is known. */
  total: Type.Optional(Type.Integer()),
  link: Type.Optional(
    Type.Array(Type.Object({ relation: Type.String(), url: Type.String() }, strict)),
  ),
  entry: Type.Array(
    Type.Object(
      { fullUrl: Type.String(), resource: Type.Unknown() },
      { additionalProperties: false },
    ),
  ),
})

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

async function careTeamIn(ward: Ward, slug: string, careTeamId: string): Promise<Resolved> {
  const organization = await organizationOf(ward, slug)
  const careTeam = await findCareTeam(ward.store.db, organization.id, careTeamId).catch(hide)
  return {
    organization,
    careTeam,
    resource: { type: 'care-team', organizationId: organization.id, careTeamId },
  }
}

async function ownRecord(ward: Ward, principal: Principal): Promise<Resolved> {
  const pseudonym = principal.patientPseudonym
  if (principal.organizationId === null || pseudonym === undefined) {
    // Not a patient: the policy refuses, naming its rule.
    return { resource: { type: 'patient', organizationId: principal.organizationId } }
  }
  const organization = await findOrganizationById(ward.store.db, principal.organizationId).catch(
    hide,
  )
  return patientIn(ward, organization.slug, pseudonym)
}

function organizationOut(organization: Organization) {
  return { id: organization.id, slug: organization.slug, name: organization.name }
}

function modelOut(model: DeviceModel) {
  return { id: model.id, name: model.name, manufacturer: model.manufacturer, policy: model.policy }
}

function patientOut(patient: Patient) {
  return { pseudonym: patient.pseudonym, createdAt: patient.createdAt }
}

function careTeamOut(team: CareTeam) {
  return { id: team.id, name: team.name, createdAt: team.createdAt }
}

function grantOut(grant: BreakGlassGrant) {
  return {
    id: grant.id,
    user: grant.userId,
    patient: grant.patientPseudonym,
    reasonCode: grant.reasonCode,
    openedAt: grant.openedAt,
    expiresAt: grant.expiresAt,
    reviewStatus: grant.reviewStatus,
    reviewOutcome: grant.reviewOutcome,
    reviewedBy: grant.reviewedBy,
    reviewedAt: grant.reviewedAt,
  }
}

function reviewItemOut(item: BreakGlassReviewItem) {
  return { ...grantOut(item), reason: item.reason }
}

const org = '/v1/organizations/:organization'
// A tree size or entry index of an audit log, as a query parameter.
const TreeSize = Type.String({ pattern: '^(0|[1-9][0-9]{0,15})$' })

/** A route that changes one device's trust through the fleet and answers the device. */
function deviceChange(
  method: 'POST' | 'DELETE',
  path: string,
  action: 'device.suspend' | 'device.reinstate' | 'device.revoke',
  operation: 'suspendDevice' | 'reinstateDevice' | 'revokeDevice',
  summary: string,
): ApiRoute {
  return apiRoute({
    method,
    url: `${org}/devices/:serial/${path}`,
    action,
    purposeOfUse: 'HSYSADMIN',
    summary,
    tag: 'fleet',
    params: DeviceParams,
    response: { 200: DeviceOut },
    resolve: (ward, params) => deviceIn(ward, params.organization, params.serial),
    handle: async ({ ward, params, context }) =>
      ok(
        await deviceOut(
          ward,
          await ward.fleet[operation](context, params.organization, params.serial),
        ),
      ),
  })
}

/**
 * Every API route under the access policy: what it does, the action the policy is asked about,
 * how the resource is found, and its schemas. The authorization matrix test is generated from
 * this table, so a route added here without a row there fails it.
 */
export const apiRoutes: readonly ApiRoute[] = [
  apiRoute({
    method: 'GET',
    url: '/v1/organizations',
    action: 'organization.list',
    purposeOfUse: 'HSYSADMIN',
    summary: "The platform's organizations",
    tag: 'platform',
    response: { 200: Type.Array(OrganizationOut) },
    resolve: async () => ({ resource: { type: 'platform', organizationId: null } }),
    handle: async ({ ward }) => ok((await ward.listOrganizations()).map(organizationOut)),
  }),

  apiRoute({
    method: 'GET',
    url: `${org}/device-models`,
    action: 'device-model.list',
    purposeOfUse: 'HSYSADMIN',
    summary: "The organization's device models",
    tag: 'fleet',
    params: OrganizationParams,
    response: { 200: Type.Array(DeviceModelOut) },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, params }) =>
      ok((await ward.fleet.listDeviceModels(params.organization)).map(modelOut)),
  }),
  apiRoute({
    method: 'POST',
    url: `${org}/device-models`,
    action: 'device-model.create',
    purposeOfUse: 'HSYSADMIN',
    summary: 'Registers a device model and what its devices may send',
    tag: 'fleet',
    params: OrganizationParams,
    body: Type.Object(
      { name: Name, manufacturer: Name, policy: Type.Object({}, { additionalProperties: true }) },
      strict,
    ),
    response: { 201: DeviceModelOut },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, params, body, context }) =>
      created(modelOut(await ward.fleet.createDeviceModel(context, params.organization, body))),
  }),

  apiRoute({
    method: 'GET',
    url: `${org}/devices`,
    action: 'device.list',
    purposeOfUse: 'HSYSADMIN',
    summary: "The organization's devices",
    tag: 'fleet',
    params: OrganizationParams,
    response: { 200: Type.Array(DeviceOut) },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, params, resolved }) => {
      const devices = await ward.fleet.listDevices(params.organization)
      return ok(await devicesOut(ward, resolved.organization?.id ?? '', devices))
    },
  }),
  apiRoute({
    method: 'POST',
    url: `${org}/devices`,
    action: 'device.create',
    purposeOfUse: 'HSYSADMIN',
    summary: 'Registers a device of a device model',
    tag: 'fleet',
    params: OrganizationParams,
    body: Type.Object({ serial: Serial, model: Name }, strict),
    response: { 201: DeviceOut },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, params, body, context }) =>
      created(
        await deviceOut(ward, await ward.fleet.createDevice(context, params.organization, body)),
      ),
  }),
  apiRoute({
    method: 'PUT',
    url: `${org}/devices/:serial/patient`,
    action: 'device.assign',
    purposeOfUse: 'HSYSADMIN',
    summary: 'Assigns the device to a patient, or ends its assignment with null',
    tag: 'fleet',
    params: DeviceParams,
    body: Type.Object({ patient: Nullable(Pseudonym) }, strict),
    response: { 200: DeviceOut },
    resolve: (ward, params) => deviceIn(ward, params.organization, params.serial),
    handle: async ({ ward, params, body, context }) => {
      const device = await ward.fleet
        .assignDevice(context, params.organization, params.serial, body.patient)
        .catch(hide)
      return ok(await deviceOut(ward, device))
    },
  }),
  apiRoute({
    method: 'POST',
    url: `${org}/devices/:serial/enrollment-tokens`,
    action: 'enrollment-token.create',
    purposeOfUse: 'HSYSADMIN',
    summary: 'Issues a one-time enrollment token for the device; shown once',
    tag: 'fleet',
    params: DeviceParams,
    response: { 201: Type.Object({ token: Type.String(), expiresAt: Type.String() }) },
    resolve: (ward, params) => deviceIn(ward, params.organization, params.serial),
    handle: async ({ ward, params, context }) =>
      created(await ward.fleet.issueEnrollmentToken(context, params.organization, params.serial)),
  }),
  apiRoute({
    method: 'PUT',
    url: `${org}/manufacturers/:manufacturer/crl`,
    action: 'manufacturer-crl.upload',
    purposeOfUse: 'HSYSADMIN',
    summary:
      "Stores the manufacturer's CRL (PEM), signed by its registered CA; factory certificates it lists no longer enroll",
    tag: 'fleet',
    params: ManufacturerParams,
    // The largest CRL Ward takes, as PEM text.
    body: Type.Object({ crl: Type.String({ minLength: 1, maxLength: 800_000 }) }, strict),
    response: { 200: ManufacturerCrlOut },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, params, body, context }) => {
      const upload = await ward.fleet.uploadManufacturerCrl(context, params.organization, {
        name: params.manufacturer,
        crl: body.crl,
      })
      return ok({
        number: upload.number,
        thisUpdate: upload.thisUpdate,
        nextUpdate: upload.nextUpdate,
        revokedCertificates: upload.entries,
        stale: upload.stale,
        manufacturerCas: upload.authorities.map((authority) => authority.id),
      })
    },
  }),
  deviceChange(
    'POST',
    'suspension',
    'device.suspend',
    'suspendDevice',
    'Suspends the device: refused at once, open connections closed',
  ),
  deviceChange(
    'DELETE',
    'suspension',
    'device.reinstate',
    'reinstateDevice',
    'Lifts the suspension of the device',
  ),
  deviceChange(
    'POST',
    'revocation',
    'device.revoke',
    'revokeDevice',
    'Revokes every certificate of the device; it must enroll again',
  ),

  apiRoute({
    method: 'GET',
    url: `${org}/patients`,
    action: 'patient.list',
    purposeOfUse: 'HSYSADMIN',
    summary: "The organization's patients, by pseudonym only",
    tag: 'patients',
    params: OrganizationParams,
    response: { 200: Type.Array(PatientOut) },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, params }) =>
      ok((await ward.fleet.listPatients(params.organization)).map(patientOut)),
  }),
  apiRoute({
    method: 'POST',
    url: `${org}/patients`,
    action: 'patient.create',
    purposeOfUse: 'HSYSADMIN',
    summary: 'Registers a patient; the identity is sealed and the pseudonym returned',
    tag: 'patients',
    params: OrganizationParams,
    body: Type.Object({ identity: PatientIdentitySchema }, strict),
    response: { 201: PatientOut },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, params, body, context }) =>
      created(
        patientOut(await ward.fleet.createPatient(context, params.organization, body.identity)),
      ),
  }),

  apiRoute({
    method: 'GET',
    url: `${org}/care-teams`,
    action: 'care-team.list',
    purposeOfUse: 'HOPERAT',
    summary: "The organization's care teams; a clinician or coordinator sees their own",
    tag: 'care teams',
    params: OrganizationParams,
    response: { 200: Type.Array(CareTeamOut) },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ access, resolved, decision, principal }) => {
      const organization = resolved.organization as Organization
      const all = decision.role === 'org-admin'
      const teams = await access.listCareTeams(organization, all ? undefined : principal.userId)
      return ok(teams.map(careTeamOut))
    },
  }),
  apiRoute({
    method: 'POST',
    url: `${org}/care-teams`,
    action: 'care-team.create',
    purposeOfUse: 'HSYSADMIN',
    summary: 'Creates a care team',
    tag: 'care teams',
    params: OrganizationParams,
    body: Type.Object({ name: Name }, strict),
    response: { 201: CareTeamOut },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ access, resolved, body, context }) =>
      created(
        careTeamOut(
          await access.createCareTeam(context, resolved.organization as Organization, body.name),
        ),
      ),
  }),
  apiRoute({
    method: 'GET',
    url: `${org}/care-teams/:careTeam`,
    action: 'care-team.read',
    purposeOfUse: 'HOPERAT',
    summary: 'The care team with its members and patients',
    tag: 'care teams',
    params: CareTeamParams,
    response: { 200: CareTeamDetailOut },
    resolve: (ward, params) => careTeamIn(ward, params.organization, params.careTeam),
    handle: async ({ access, resolved }) => {
      const detail = await access.careTeamDetail(resolved.careTeam as CareTeam)
      return ok({ ...careTeamOut(detail), members: detail.members, patients: detail.patients })
    },
  }),
  apiRoute({
    method: 'PUT',
    url: `${org}/care-teams/:careTeam/members/:user`,
    action: 'care-team.manage',
    purposeOfUse: 'HSYSADMIN',
    summary: 'Puts a person (by user id) on the care team',
    tag: 'care teams',
    params: MemberParams,
    response: { 200: ChangeOut },
    resolve: (ward, params) => careTeamIn(ward, params.organization, params.careTeam),
    handle: async ({ access, resolved, params, context }) => {
      const { organization, careTeam } = resolved as Required<Resolved>
      return ok({
        changed: await access.addMember(context, organization, careTeam, params.user).catch(hide),
      })
    },
  }),
  apiRoute({
    method: 'DELETE',
    url: `${org}/care-teams/:careTeam/members/:user`,
    action: 'care-team.manage',
    purposeOfUse: 'HSYSADMIN',
    summary: 'Takes a person off the care team',
    tag: 'care teams',
    params: MemberParams,
    response: { 200: ChangeOut },
    resolve: (ward, params) => careTeamIn(ward, params.organization, params.careTeam),
    handle: async ({ access, resolved, params, context }) => {
      const { organization, careTeam } = resolved as Required<Resolved>
      return ok({
        changed: await access.removeMember(context, organization, careTeam, params.user),
      })
    },
  }),
  apiRoute({
    method: 'PUT',
    url: `${org}/care-teams/:careTeam/patients/:patient`,
    action: 'care-team.manage',
    purposeOfUse: 'HSYSADMIN',
    summary: "Puts a patient in the care team's care",
    tag: 'care teams',
    params: TeamPatientParams,
    response: { 200: ChangeOut },
    resolve: (ward, params) => careTeamIn(ward, params.organization, params.careTeam),
    handle: async ({ ward, access, resolved, params, context }) => {
      const { organization, careTeam } = resolved as Required<Resolved>
      const patient = await findPatientByPseudonym(
        ward.store.db,
        organization.id,
        params.patient,
      ).catch(hide)
      return ok({ changed: await access.addPatient(context, organization, careTeam, patient) })
    },
  }),
  apiRoute({
    method: 'DELETE',
    url: `${org}/care-teams/:careTeam/patients/:patient`,
    action: 'care-team.manage',
    purposeOfUse: 'HSYSADMIN',
    summary: "Ends the care team's care of a patient",
    tag: 'care teams',
    params: TeamPatientParams,
    response: { 200: ChangeOut },
    resolve: (ward, params) => careTeamIn(ward, params.organization, params.careTeam),
    handle: async ({ ward, access, resolved, params, context }) => {
      const { organization, careTeam } = resolved as Required<Resolved>
      const patient = await findPatientByPseudonym(
        ward.store.db,
        organization.id,
        params.patient,
      ).catch(hide)
      return ok({ changed: await access.removePatient(context, organization, careTeam, patient) })
    },
  }),

  apiRoute({
    method: 'POST',
    url: `${org}/patients/:patient/break-glass`,
    action: 'break-glass.open',
    purposeOfUse: 'ETREAT',
    summary: 'Opens time-boxed emergency access to a patient outside your care teams',
    tag: 'break-glass',
    params: PatientParams,
    body: Type.Object(
      {
        reasonCode: oneOf(breakGlassReasonCodes),
        reason: Type.String({
          minLength: breakGlassReasonLength.min,
          maxLength: breakGlassReasonLength.max,
        }),
        durationMinutes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1440 })),
      },
      strict,
    ),
    response: { 201: GrantOut },
    resolve: (ward, params) => patientIn(ward, params.organization, params.patient),
    handle: async ({ access, resolved, body, context }) => {
      const { organization, patient } = resolved as Required<Resolved>
      return created(grantOut(await access.openBreakGlass(context, organization, patient, body)))
    },
  }),
  apiRoute({
    method: 'GET',
    url: `${org}/break-glass-reviews`,
    action: 'break-glass.review',
    purposeOfUse: 'HOPERAT',
    summary: 'The review queue of emergency grants, with their stated reasons',
    tag: 'break-glass',
    params: OrganizationParams,
    querystring: Type.Object(
      {
        status: Type.Unsafe<'open' | 'closed'>({
          type: 'string',
          enum: ['open', 'closed'],
          default: 'open',
        }),
        limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
      },
      strict,
    ),
    response: { 200: Type.Array(ReviewItemOut) },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ access, resolved, query, context }) => {
      const items = await access.listReviews(context, resolved.organization as Organization, query)
      return ok(items.map(reviewItemOut))
    },
  }),
  apiRoute({
    method: 'POST',
    url: `${org}/break-glass-reviews/:grant/closure`,
    action: 'break-glass.review',
    purposeOfUse: 'HOPERAT',
    summary: 'Closes the review of an emergency grant, ending the grant if it still runs',
    tag: 'break-glass',
    params: GrantParams,
    body: Type.Object({ outcome: oneOf(breakGlassReviewOutcomes) }, strict),
    response: { 200: GrantOut },
    resolve: async (ward, params) => {
      const organization = await organizationOf(ward, params.organization)
      const grant = await findBreakGlassGrant(ward.store.db, organization.id, params.grant).catch(
        hide,
      )
      return {
        organization,
        grant,
        resource: {
          type: 'break-glass-grant',
          organizationId: organization.id,
          patientPseudonym: grant.patientPseudonym,
        },
      }
    },
    handle: async ({ access, resolved, body, context }) => {
      const { organization, grant } = resolved as Required<Resolved>
      return ok(grantOut(await access.closeReview(context, organization, grant, body.outcome)))
    },
  }),

  apiRoute({
    method: 'GET',
    url: `${org}/audit/checkpoint`,
    action: 'audit-log.read',
    purposeOfUse: 'HOPERAT',
    summary: "The newest signed checkpoint of the organization's audit log, as a C2SP signed note",
    tag: 'audit',
    params: OrganizationParams,
    response: { 200: Type.Object({ checkpoint: Type.String() }) },
    resolve: async (ward, params) => {
      const organization = await organizationOf(ward, params.organization)
      return { organization, resource: { type: 'audit-log', organizationId: organization.id } }
    },
    handle: async ({ ward, resolved }) =>
      ok({
        checkpoint: (await ward.currentCheckpoint((resolved.organization as Organization).slug))
          .note,
      }),
  }),
  apiRoute({
    method: 'GET',
    url: '/v1/platform/audit/checkpoint',
    action: 'audit-log.read',
    purposeOfUse: 'HSYSADMIN',
    summary: "The newest signed checkpoint of the platform's audit log (C2SP signed note)",
    tag: 'audit',
    response: { 200: Type.Object({ checkpoint: Type.String() }) },
    resolve: async () => ({ resource: { type: 'audit-log', organizationId: null } }),
    handle: async ({ ward }) =>
      ok({ checkpoint: (await ward.currentCheckpoint(platformLogName)).note }),
  }),

  ...auditLogRoutes({
    prefix: `${org}/audit`,
    purposeOfUse: 'HOPERAT',
    whose: "the organization's audit log",
    params: OrganizationParams,
    resolve: async (ward, params) => {
      const organization = await organizationOf(
        ward,
        (params as { organization: string }).organization,
      )
      return {
        organization,
        resource: { type: 'audit-log', organizationId: organization.id },
        auditLog: organization.slug,
      }
    },
  }),
  ...auditLogRoutes({
    prefix: '/v1/platform/audit',
    purposeOfUse: 'HSYSADMIN',
    whose: "the platform's audit log",
    params: Type.Object({}, strict),
    resolve: async () => ({
      resource: { type: 'audit-log', organizationId: null },
      auditLog: platformLogName,
    }),
  }),

  apiRoute({
    method: 'GET',
    url: `${org}/patients/:patient/observations`,
    action: 'observation.read',
    purposeOfUse: 'TREAT',
    summary:
      "A patient's readings over a time range, as a FHIR searchset Bundle; under emergency access send x-purpose-of-use: ETREAT",
    tag: 'readings',
    params: PatientParams,
    querystring: ReadingsQuery,
    response: { 200: ObservationBundle },
    resolve: (ward, params) => patientIn(ward, params.organization, params.patient),
    handle: async ({ ward, resolved, query, context }) => {
      const { organization, patient } = resolved as Required<Resolved>
      const range = readingsRange(query)
      const page = await ward.readings
        .readReadings(context, readingsQuery(patient.pseudonym, range, query))
        .catch(hide)
      const path = `/v1/organizations/${organization.slug}/patients/${patient.pseudonym}/observations`
      return ok(observationBundle(page, path, range, query))
    },
  }),
  apiRoute({
    method: 'GET',
    url: '/v1/me/observations',
    action: 'observation.read',
    purposeOfUse: 'PATRQT',
    summary: 'Your own readings over a time range, as a FHIR searchset Bundle',
    tag: 'readings',
    querystring: ReadingsQuery,
    response: { 200: ObservationBundle },
    resolve: (ward, _params, principal) => ownRecord(ward, principal),
    handle: async ({ ward, resolved, query, context }) => {
      const { patient } = resolved as Required<Resolved>
      const range = readingsRange(query)
      const page = await ward.readings
        .readOwnReadings(context, readingsQuery(patient.pseudonym, range, query))
        .catch(hide)
      return ok(observationBundle(page, '/v1/me/observations', range, query))
    },
  }),
  ...adminRoutes,
]

interface ReadingsRequest {
  readonly from?: string
  readonly to?: string
  readonly limit: number
  readonly cursor?: string
}

/**
 * The time range of a readings request: as given, or — for a bound left out — the widest the
 * records domain reads ({@link maxRangeDays} days): ending now, or that long after `from`;
 * starting that long before `to`.
 */
function readingsRange(query: ReadingsRequest): { from: string; to: string } {
  const span = maxRangeDays * 86_400_000
  if (query.from !== undefined && query.to !== undefined) return { from: query.from, to: query.to }
  if (query.to !== undefined) {
    return { from: new Date(instant(query.to, 'to') - span).toISOString(), to: query.to }
  }
  const now = Date.now()
  if (query.from !== undefined) {
    return {
      from: query.from,
      to: new Date(Math.min(now, instant(query.from, 'from') + span)).toISOString(),
    }
  }
  return { from: new Date(now - span).toISOString(), to: new Date(now).toISOString() }
}

function instant(text: string, field: string): number {
  const time = Date.parse(text)
  if (Number.isNaN(time)) {
    throw new WardError('ERR_INPUT_INVALID', `${field} must be a real date and time`, {
      details: { field },
    })
  }
  return time
}

function readingsQuery(
  patient: string,
  range: { from: string; to: string },
  query: ReadingsRequest,
) {
  return {
    patient,
    ...range,
    limit: query.limit,
    ...(query.cursor === undefined ? {} : { cursor: query.cursor }),
  }
}

/**
 * A page of readings as a FHIR searchset Bundle; when more follow, a `next` link carries the
 * same range and limit with the cursor to go on from.
 */
function observationBundle(
  page: PatientReadings,
  path: string,
  range: { from: string; to: string },
  query: ReadingsRequest,
) {
  const limit = query.limit
  const next =
    page.next === undefined
      ? undefined
      : `${path}?${new URLSearchParams({ ...range, limit: String(limit), cursor: page.next }).toString()}`
  return {
    resourceType: 'Bundle' as const,
    type: 'searchset' as const,
    // FHIR's total counts every match, not the page: only a page that is both first and last
    // knows it without counting.
    ...(next === undefined ? {} : { link: [{ relation: 'next', url: next }] }),
    ...(next === undefined && query.cursor === undefined ? { total: page.readings.length } : {}),
    entry: page.readings.map((observation: Observation) => ({
      fullUrl: `urn:uuid:${observation.id}`,
      resource: { ...(observation.resource as object), id: observation.id },
    })),
  }
}

/**
 * The tiles and proofs of an audit log under the access policy, beside its checkpoint route:
 * `<prefix>/tile/…` in the C2SP tlog-tiles layout, so a tile client pointed at `<prefix>` with
 * a bearer credential reads the log as it reads an export, and `<prefix>/proof/inclusion` and
 * `<prefix>/proof/consistency` as JSON of hex hashes. Reads go to the service log, not the
 * audit log, so reading a log never changes it.
 */
function auditLogRoutes(spec: {
  prefix: string
  purposeOfUse: 'HOPERAT' | 'HSYSADMIN'
  whose: string
  params: TObject
  /** Finds the log's resource for the policy, with `auditLog` naming the log. */
  resolve: (ward: Ward, params: unknown) => Promise<Resolved>
}): ApiRoute[] {
  const { prefix, purposeOfUse, whose, resolve } = spec
  const nameOf = (resolved: Resolved) => resolved.auditLog as string
  return [
    apiRoute({
      method: 'GET',
      url: `${prefix}/tile/*`,
      action: 'audit-log.read',
      purposeOfUse,
      summary: `A tile or entry bundle of ${whose}, tlog-tiles layout, for its newest checkpoint`,
      tag: 'audit',
      params: Type.Object(
        { ...spec.params.properties, '*': Type.String({ maxLength: 100 }) },
        strict,
      ),
      response: { 200: Type.Unsafe<Uint8Array>({ type: 'string', format: 'binary' }) },
      resolve,
      handle: async ({ ward, resolved, params }) => ({
        status: 200,
        contentType: 'application/octet-stream',
        body: Buffer.from(await auditTile(ward, nameOf(resolved), params['*'])),
      }),
    }),
    apiRoute({
      method: 'GET',
      url: `${prefix}/proof/inclusion`,
      action: 'audit-log.read',
      purposeOfUse,
      summary: `An inclusion proof of one entry of ${whose}, hashes in lowercase hex`,
      tag: 'audit',
      params: spec.params,
      querystring: Type.Object({ index: TreeSize, size: TreeSize }, strict),
      response: {
        200: Type.Object({
          index: Type.Integer(),
          size: Type.Integer(),
          leafHash: Type.String(),
          proof: Type.Array(Type.String()),
        }),
      },
      resolve,
      handle: async ({ ward, resolved, query }) =>
        ok(await auditInclusionProof(ward, nameOf(resolved), query)),
    }),
    apiRoute({
      method: 'GET',
      url: `${prefix}/proof/consistency`,
      action: 'audit-log.read',
      purposeOfUse,
      summary: `A consistency proof between two tree sizes of ${whose}, hashes in lowercase hex`,
      tag: 'audit',
      params: spec.params,
      querystring: Type.Object({ from: TreeSize, to: TreeSize }, strict),
      response: {
        200: Type.Object({
          from: Type.Integer(),
          to: Type.Integer(),
          proof: Type.Array(Type.String()),
        }),
      },
      resolve,
      handle: async ({ ward, resolved, query }) =>
        ok(await auditConsistencyProof(ward, nameOf(resolved), query)),
    }),
  ]
}
