import { Type } from '@sinclair/typebox'

import { WardError, isWardError } from '@ward/core'

import {
  PeopleAdministration,
  maxPeoplePerPage,
  roles,
  type PersonSummary,
  type Role,
  type SetupIssued,
} from '../../access/index.js'
import type { DeviceCommand, WipeCertificate } from '../../devices/index.js'
import type { Organization } from '../../tenancy/index.js'
import type { Release, Rollout } from '../../updates/index.js'
import type { Ward } from '../../ward.js'
import { apiRoute, oneOf, type ApiRoute, type Resolved } from '../api-route.js'
import {
  DeviceOut,
  DeviceParams,
  OrganizationParams,
  Pseudonym,
  Serial,
  Slug,
  Uuid,
  created,
  deviceIn,
  deviceOut,
  hide,
  inOrganization,
  ok,
  organizationOf,
  strict,
} from './resolvers.js'

// People of an organization, for its org admins; the first org admin, for a platform operator.

const LoginName = Type.String({ minLength: 3, maxLength: 64 })
const RoleName = oneOf(roles)
const PersonParams = Type.Object({ organization: Slug, user: Uuid }, strict)
const PersonRoleParams = Type.Object({ organization: Slug, user: Uuid, role: RoleName }, strict)
const PersonOut = Type.Object({
  id: Type.String(),
  login: Type.String(),
  roles: Type.Array(Type.String()),
  status: Type.String(),
  passwordSet: Type.Boolean(),
  patient: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
})
const SetupOut = Type.Object({
  person: PersonOut,
  setupToken: Type.String(),
  setupTokenExpiresAt: Type.String(),
})

function personOut(person: PersonSummary) {
  return {
    id: person.id,
    login: person.loginName,
    roles: person.roles,
    status: person.status,
    passwordSet: person.passwordSet,
    patient: person.patient,
    createdAt: person.createdAt,
  }
}

function setupOut(issued: SetupIssued) {
  return {
    person: personOut(issued.person),
    setupToken: issued.setupToken,
    setupTokenExpiresAt: issued.setupTokenExpiresAt,
  }
}

// Releases, rollouts and the device lifecycle.

const RolloutParams = Type.Object({ organization: Slug, rollout: Uuid }, strict)
const Reference = Type.String({ minLength: 1, maxLength: 128 })
const ReleaseOut = Type.Object({
  id: Type.String(),
  targetName: Type.String(),
  version: Type.String(),
  minVersion: Type.String(),
  models: Type.Array(Type.String()),
  hardwareRevisions: Type.Array(Type.String()),
  notes: Type.String(),
  sha256: Type.String(),
  length: Type.Integer(),
  hasSbom: Type.Boolean(),
  /** The newest signed targets no longer list it: no rollout can take it. */
  withdrawn: Type.Boolean(),
  createdAt: Type.String(),
})
const RolloutOut = Type.Object({
  id: Type.String(),
  releaseId: Type.String(),
  releaseVersion: Type.String(),
  modelIds: Type.Array(Type.String()),
  deviceIds: Type.Union([Type.Array(Type.String()), Type.Null()]),
  percent: Type.Number(),
  stages: Type.Array(Type.Number()),
  failureThreshold: Type.Number(),
  reportDeadlineSeconds: Type.Integer(),
  state: Type.String(),
  stage: Type.Integer(),
  stageStartedAt: Type.String(),
  stageDeadlineAt: Type.String(),
  acceptedFailures: Type.Integer(),
  pausedReason: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
  updatedAt: Type.String(),
})
const RolloutDetailOut = Type.Object({
  rollout: RolloutOut,
  stages: Type.Array(
    Type.Object({
      stage: Type.Integer(),
      percent: Type.Number(),
      devices: Type.Record(Type.String(), Type.Integer()),
    }),
  ),
  devices: Type.Array(
    Type.Object({
      serial: Type.String(),
      stage: Type.Integer(),
      status: Type.String(),
      reason: Type.Union([Type.String(), Type.Null()]),
      updatedAt: Type.String(),
    }),
  ),
})
const CommandOut = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  status: Type.String(),
  issuedAt: Type.String(),
  deliveredAt: Type.Union([Type.String(), Type.Null()]),
  completedAt: Type.Union([Type.String(), Type.Null()]),
})
const WipeCertificateOut = Type.Object({
  id: Type.String(),
  commandId: Type.String(),
  queuedReadings: Type.Integer(),
  rejectedReadings: Type.Integer(),
  keyIds: Type.Array(Type.String()),
  certificateSerials: Type.Array(Type.String()),
  erasedAt: Type.String(),
  recordedAt: Type.String(),
  report: Type.String(),
  signature: Type.String(),
  signingCertificate: Type.String(),
})

function releaseOut(release: Release) {
  return {
    id: release.id,
    targetName: release.targetName,
    version: release.version,
    minVersion: release.minVersion,
    models: release.models,
    hardwareRevisions: release.hardwareRevisions,
    notes: release.notes,
    sha256: release.sha256,
    length: release.length,
    hasSbom: release.hasSbom,
    withdrawn: release.withdrawn,
    createdAt: release.createdAt,
  }
}

function rolloutOut(rollout: Rollout) {
  return {
    id: rollout.id,
    releaseId: rollout.releaseId,
    releaseVersion: rollout.releaseVersion,
    modelIds: rollout.modelIds,
    deviceIds: rollout.deviceIds,
    percent: rollout.percent,
    stages: rollout.stages,
    failureThreshold: rollout.failureThreshold,
    reportDeadlineSeconds: rollout.reportDeadlineSeconds,
    state: rollout.state,
    stage: rollout.stage,
    stageStartedAt: rollout.stageStartedAt,
    stageDeadlineAt: rollout.stageDeadlineAt,
    acceptedFailures: rollout.acceptedFailures,
    pausedReason: rollout.pausedReason,
    createdAt: rollout.createdAt,
    updatedAt: rollout.updatedAt,
  }
}

function commandOut(command: DeviceCommand) {
  return {
    id: command.id,
    kind: command.kind,
    status: command.status,
    issuedAt: command.issuedAt,
    deliveredAt: command.deliveredAt,
    completedAt: command.completedAt,
  }
}

function wipeCertificateOut(certificate: WipeCertificate) {
  return {
    id: certificate.id,
    commandId: certificate.commandId,
    queuedReadings: certificate.queuedReadings,
    rejectedReadings: certificate.rejectedReadings,
    keyIds: certificate.keyIds,
    certificateSerials: certificate.certificateSerials,
    erasedAt: certificate.erasedAt,
    recordedAt: certificate.recordedAt,
    report: certificate.report,
    signature: certificate.signature,
    signingCertificate: certificate.signingCertificate,
  }
}

/**
 * A release, device model or device named in a request body that the organization does not
 * have is the caller's mistake in that field, not a missing resource of the URL.
 */
function inputReference(field: string) {
  return (error: unknown): never => {
    if (isWardError(error) && error.code.endsWith('_NOT_FOUND')) {
      throw new WardError('ERR_INPUT_INVALID', `${field} names nothing in this organization`, {
        details: { field },
      })
    }
    throw error
  }
}

const people = (ward: Ward) => new PeopleAdministration(ward)
const org = '/v1/organizations/:organization'

/** The people, rollout and device-lifecycle routes of the route table. */
export const adminRoutes: readonly ApiRoute[] = [
  apiRoute({
    method: 'GET',
    url: `${org}/people`,
    action: 'person.list',
    purposeOfUse: 'HSYSADMIN',
    summary: "The organization's people: ids, login names, roles and status; no secret",
    tag: 'people',
    params: OrganizationParams,
    querystring: Type.Object(
      {
        limit: Type.Integer({ minimum: 1, maximum: maxPeoplePerPage, default: maxPeoplePerPage }),
        after: Type.Optional(LoginName),
      },
      strict,
    ),
    response: { 200: Type.Array(PersonOut) },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, resolved, query }) => {
      const list = await people(ward).list(resolved.organization as Organization, {
        limit: query.limit,
        ...(query.after === undefined ? {} : { after: query.after }),
      })
      return ok(list.map(personOut))
    },
  }),
  apiRoute({
    method: 'POST',
    url: `${org}/people`,
    action: 'person.create',
    purposeOfUse: 'HSYSADMIN',
    summary:
      'Creates a person with roles; answers their one-time setup token, shown once. The patient role needs the patient',
    tag: 'people',
    params: OrganizationParams,
    body: Type.Object(
      {
        login: LoginName,
        roles: Type.Array(RoleName, { minItems: 1, maxItems: roles.length, uniqueItems: true }),
        patient: Type.Optional(Pseudonym),
      },
      strict,
    ),
    response: { 201: SetupOut },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, resolved, body, context, decision }) =>
      created(
        setupOut(
          await people(ward).create(
            context,
            resolved.organization as Organization,
            byRole(decision.role),
            {
              loginName: body.login,
              roles: body.roles,
              ...(body.patient === undefined ? {} : { patient: body.patient }),
            },
          ),
        ),
      ),
  }),
  apiRoute({
    method: 'PUT',
    url: `${org}/people/:user/roles/:role`,
    action: 'person.manage',
    purposeOfUse: 'HSYSADMIN',
    summary: 'Grants the person a role; body {} or, for the patient role, the patient it links to',
    tag: 'people',
    params: PersonRoleParams,
    body: Type.Object({ patient: Type.Optional(Pseudonym) }, strict),
    response: { 200: PersonOut },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, resolved, params, body, context, decision }) => {
      const person = await people(ward)
        .grant(
          context,
          resolved.organization as Organization,
          byRole(decision.role),
          params.user,
          params.role,
          body.patient,
        )
        .catch(hide)
      return ok(personOut(person))
    },
  }),
  apiRoute({
    method: 'DELETE',
    url: `${org}/people/:user/roles/:role`,
    action: 'person.manage',
    purposeOfUse: 'HSYSADMIN',
    summary: 'Revokes a role from the person',
    tag: 'people',
    params: PersonRoleParams,
    response: { 200: PersonOut },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, resolved, params, context, decision }) => {
      const person = await people(ward)
        .revoke(
          context,
          resolved.organization as Organization,
          byRole(decision.role),
          params.user,
          params.role,
        )
        .catch(hide)
      return ok(personOut(person))
    },
  }),
  apiRoute({
    method: 'POST',
    url: `${org}/people/:user/disablement`,
    action: 'person.manage',
    purposeOfUse: 'HSYSADMIN',
    summary: 'Disables the person: sign-in stops, their sessions and API tokens end now',
    tag: 'people',
    params: PersonParams,
    response: { 200: PersonOut },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, resolved, params, context }) => {
      const person = await people(ward)
        .disable(context, resolved.organization as Organization, params.user)
        .catch(hide)
      return ok(personOut(person))
    },
  }),
  apiRoute({
    method: 'POST',
    url: `${org}/people/:user/setup-tokens`,
    action: 'person.manage',
    purposeOfUse: 'HSYSADMIN',
    summary:
      'Issues a new one-time setup token for the person, shown once; earlier ones stop working',
    tag: 'people',
    params: PersonParams,
    response: { 201: SetupOut },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, resolved, params, context }) => {
      const issued = await people(ward)
        .reissueSetupToken(context, resolved.organization as Organization, params.user)
        .catch(hide)
      return created(setupOut(issued))
    },
  }),
  apiRoute({
    method: 'POST',
    url: '/v1/platform/organizations/:organization/first-admin',
    action: 'organization.first-admin',
    purposeOfUse: 'HSYSADMIN',
    summary:
      "Creates an organization's first org admin and answers their setup token; refused once it has one",
    tag: 'people',
    params: OrganizationParams,
    body: Type.Object({ login: LoginName }, strict),
    response: { 201: SetupOut },
    resolve: async (ward, params): Promise<Resolved> => {
      const organization = await organizationOf(ward, params.organization)
      return { organization, resource: { type: 'platform', organizationId: null } }
    },
    handle: async ({ ward, resolved, body, context }) =>
      created(
        setupOut(
          await people(ward).createFirstAdmin(
            context,
            resolved.organization as Organization,
            body.login,
          ),
        ),
      ),
  }),

  apiRoute({
    method: 'GET',
    url: `${org}/releases`,
    action: 'release.list',
    purposeOfUse: 'HSYSADMIN',
    summary: "The organization's published firmware releases, newest first",
    tag: 'updates',
    params: OrganizationParams,
    response: { 200: Type.Array(ReleaseOut) },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, params }) =>
      ok((await ward.updates.listReleases(params.organization)).map(releaseOut)),
  }),
  apiRoute({
    method: 'GET',
    url: `${org}/rollouts`,
    action: 'rollout.list',
    purposeOfUse: 'HSYSADMIN',
    summary: "The organization's rollouts, newest first",
    tag: 'updates',
    params: OrganizationParams,
    response: { 200: Type.Array(RolloutOut) },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, params }) =>
      ok((await ward.rollouts.list(params.organization)).map(rolloutOut)),
  }),
  apiRoute({
    method: 'POST',
    url: `${org}/rollouts`,
    action: 'rollout.create',
    purposeOfUse: 'HSYSADMIN',
    summary: 'Stages a firmware release out to the fleet and starts its first stage',
    tag: 'updates',
    params: OrganizationParams,
    body: Type.Object(
      {
        release: Reference,
        models: Type.Optional(Type.Array(Reference, { minItems: 1, maxItems: 100 })),
        devices: Type.Optional(Type.Array(Serial, { minItems: 1, maxItems: 10_000 })),
        percent: Type.Optional(Type.Number({ minimum: 1, maximum: 100 })),
        stages: Type.Optional(
          Type.Array(Type.Number({ minimum: 0, maximum: 100 }), { minItems: 1, maxItems: 20 }),
        ),
        failureThreshold: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
        reportDeadlineSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
      },
      strict,
    ),
    response: { 201: RolloutOut },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, params, body, context }) => {
      const rollout = await ward.rollouts
        .create(context, params.organization, {
          releaseId: body.release,
          ...(body.models === undefined ? {} : { models: body.models }),
          ...(body.devices === undefined ? {} : { devices: body.devices }),
          ...(body.percent === undefined ? {} : { percent: body.percent }),
          ...(body.stages === undefined ? {} : { stages: body.stages }),
          ...(body.failureThreshold === undefined
            ? {}
            : { failureThreshold: body.failureThreshold }),
          ...(body.reportDeadlineSeconds === undefined
            ? {}
            : { reportDeadlineSeconds: body.reportDeadlineSeconds }),
        })
        .catch(inputReference('release, models or devices'))
      return created(rolloutOut(rollout))
    },
  }),
  apiRoute({
    method: 'GET',
    url: `${org}/rollouts/:rollout`,
    action: 'rollout.read',
    purposeOfUse: 'HSYSADMIN',
    summary: 'The rollout with its stages counted per status and each device with its status',
    tag: 'updates',
    params: RolloutParams,
    response: { 200: RolloutDetailOut },
    resolve: (ward, params) => inOrganization(ward, params.organization),
    handle: async ({ ward, params }) => {
      const summary = await ward.rollouts.summary(params.organization, params.rollout).catch(hide)
      const devices = await ward.rollouts.devices(params.organization, params.rollout)
      const serials = new Map(
        (await ward.fleet.listDevices(params.organization)).map((device) => [
          device.id,
          device.serial,
        ]),
      )
      return ok({
        rollout: rolloutOut(summary.rollout),
        stages: summary.stages,
        devices: devices.map((device) => ({
          serial: serials.get(device.deviceId) ?? device.deviceId,
          stage: device.stage,
          status: device.status,
          reason: device.reason,
          updatedAt: device.updatedAt,
        })),
      })
    },
  }),
  ...(['pause', 'resume', 'abort'] as const).map((step) =>
    apiRoute({
      method: 'POST',
      url: `${org}/rollouts/:rollout/${step}`,
      action: 'rollout.manage',
      purposeOfUse: 'HSYSADMIN',
      summary: {
        pause: 'Pauses a running rollout: no device is offered its release until it resumes',
        resume: 'Resumes a paused rollout, accepting the failures its stage has so far',
        abort: 'Ends a rollout for good',
      }[step],
      tag: 'updates',
      params: RolloutParams,
      response: { 200: RolloutOut },
      resolve: (ward, params) => inOrganization(ward, params.organization),
      handle: async ({ ward, params, context }) =>
        ok(
          rolloutOut(
            await ward.rollouts[step](context, params.organization, params.rollout).catch(hide),
          ),
        ),
    }),
  ),

  apiRoute({
    method: 'POST',
    url: `${org}/devices/:serial/wipe`,
    action: 'device.wipe',
    purposeOfUse: 'HSYSADMIN',
    summary:
      'Queues a remote wipe; the device erases itself on its next connection and confirms, signed',
    tag: 'fleet',
    params: DeviceParams,
    response: { 202: CommandOut },
    resolve: (ward, params) => deviceIn(ward, params.organization, params.serial),
    handle: async ({ ward, params, context }) => ({
      status: 202,
      body: commandOut(await ward.fleet.wipeDevice(context, params.organization, params.serial)),
    }),
  }),
  apiRoute({
    method: 'GET',
    url: `${org}/devices/:serial/wipe-certificates`,
    action: 'wipe-certificate.list',
    purposeOfUse: 'HSYSADMIN',
    summary: "The device's wipe certificates with its signed reports, oldest first",
    tag: 'fleet',
    params: DeviceParams,
    response: { 200: Type.Array(WipeCertificateOut) },
    resolve: (ward, params) => deviceIn(ward, params.organization, params.serial),
    handle: async ({ ward, params }) =>
      ok(
        (await ward.fleet.wipeCertificates(params.organization, params.serial)).map(
          wipeCertificateOut,
        ),
      ),
  }),
  apiRoute({
    method: 'POST',
    url: `${org}/devices/:serial/decommission`,
    action: 'device.decommission',
    purposeOfUse: 'HSYSADMIN',
    summary:
      'Decommissions the device for good: certificates revoked, commands cancelled, assignment ended',
    tag: 'fleet',
    params: DeviceParams,
    response: { 200: DeviceOut },
    resolve: (ward, params) => deviceIn(ward, params.organization, params.serial),
    handle: async ({ ward, params, context }) =>
      ok(
        await deviceOut(
          ward,
          await ward.fleet.decommissionDevice(context, params.organization, params.serial),
        ),
      ),
  }),
]

/** The role the policy allowed the request on; every allowed decision names one. */
function byRole(role: Role | undefined): Role {
  if (role === undefined) throw new WardError('ERR_ACCESS_DENIED', 'access not decided')
  return role
}
