import { Type, type Static, type TSchema } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'

import { WardError } from '@ward/core'

import {
  credentialRefusal,
  decide,
  isPatientPerson,
  isPurposeOfUse,
  purposesOfUse,
  type Access,
  type AccessDecision,
  type Action,
  type BreakGlassGrant,
  type CareTeam,
  type Principal,
  type PurposeOfUse,
  type Resource,
  type Role,
} from '../access/index.js'
import type { OperationContext } from '../context.js'
import type { Device } from '../devices/index.js'
import type { Patient } from '../records/index.js'
import type { Organization } from '../tenancy/index.js'
import type { Ward } from '../ward.js'

/**
 * Turns a request into the principal it acts as, or undefined when it carries no valid
 * credential. Authentication provides the real one; `buildServer` takes it as an option.
 */
export type Authenticate = (request: FastifyRequest) => Promise<Principal | undefined>

/** An authenticate function that knows nobody: every route under the policy answers 401. */
export const authenticateNobody: Authenticate = async () => undefined

/** What a route's resolver found: the resource for the policy and the records behind it. */
export interface Resolved {
  readonly resource: Resource
  readonly organization?: Organization
  readonly patient?: Patient
  readonly device?: Device
  readonly careTeam?: CareTeam
  readonly grant?: BreakGlassGrant
  /** The name of the audit log a route reads. */
  readonly auditLog?: string
}

/** Everything a route's handler gets once the policy allowed the request. */
export interface RouteCall<P, Q, B> {
  readonly ward: Ward
  readonly access: Access
  readonly params: P
  readonly query: Q
  readonly body: B
  readonly principal: Principal
  readonly decision: AccessDecision
  /** The context for the domain operation and its audit event, `policyRule` included. */
  readonly context: OperationContext
  readonly resolved: Resolved
}

/** A route's answer: status, body and, when not JSON, its media type. */
export interface RouteAnswer {
  readonly status: number
  readonly body: unknown
  readonly contentType?: string
}

/** One route under the policy, as the route table lists it. */
export interface ApiRoute {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  readonly url: string
  readonly action: Action
  /** The purpose of use assumed when the request names none in `x-purpose-of-use`. */
  readonly purposeOfUse: PurposeOfUse
  /**
   * Where a role acts for another purpose than {@link purposeOfUse} by default: the purpose
   * assumed for a principal holding that role in its organization (the first listed that it
   * holds). A purpose named in the header still wins.
   */
  readonly purposeOfUseByRole?: Readonly<Partial<Record<Role, PurposeOfUse>>>
  readonly summary: string
  readonly tag: string
  readonly schema: {
    readonly params?: TSchema
    readonly querystring?: TSchema
    readonly body?: TSchema
    readonly response: Readonly<Record<number, TSchema>>
  }
  /**
   * Finds the resource the request is about; throws {@link hiddenResource} when it is not.
   * Searches find it from the query.
   */
  resolve(ward: Ward, params: unknown, principal: Principal, query: unknown): Promise<Resolved>
  handle(call: RouteCall<unknown, unknown, unknown>): Promise<RouteAnswer>
}

/** Declares a route; the schemas type the resolver's and the handler's arguments. */
export function apiRoute<
  P extends TSchema = TSchema,
  Q extends TSchema = TSchema,
  B extends TSchema = TSchema,
>(spec: {
  method: ApiRoute['method']
  url: string
  action: Action
  purposeOfUse: PurposeOfUse
  purposeOfUseByRole?: Partial<Record<Role, PurposeOfUse>>
  summary: string
  tag: string
  params?: P
  querystring?: Q
  body?: B
  response: Record<number, TSchema>
  resolve: (
    ward: Ward,
    params: Static<P>,
    principal: Principal,
    query: Static<Q>,
  ) => Promise<Resolved>
  handle: (call: RouteCall<Static<P>, Static<Q>, Static<B>>) => Promise<RouteAnswer>
}): ApiRoute {
  return {
    method: spec.method,
    url: spec.url,
    action: spec.action,
    purposeOfUse: spec.purposeOfUse,
    ...(spec.purposeOfUseByRole === undefined
      ? {}
      : { purposeOfUseByRole: spec.purposeOfUseByRole }),
    summary: spec.summary,
    tag: spec.tag,
    schema: {
      ...(spec.params === undefined ? {} : { params: spec.params }),
      ...(spec.querystring === undefined ? {} : { querystring: spec.querystring }),
      ...(spec.body === undefined ? {} : { body: spec.body }),
      response: spec.response,
    },
    resolve: (ward, params, principal, query) =>
      spec.resolve(ward, params as Static<P>, principal, query as Static<Q>),
    handle: (call) => spec.handle(call as RouteCall<Static<P>, Static<Q>, Static<B>>),
  }
}

/**
 * The one answer for a resource the caller may not know of: one that does not exist, one in
 * another organization, or an organization the caller has no role in. Always the same code and
 * text, so an answer says nothing about which it was.
 */
export function hiddenResource(): WardError {
  return new WardError('ERR_NOT_FOUND', 'no such resource')
}

/** A string schema allowing exactly `values`, described as one `enum`. */
export function oneOf<T extends string>(values: readonly T[]) {
  return Type.Unsafe<T>({ type: 'string', enum: [...values] })
}

/**
 * Turns the first schema violation into `ERR_INPUT_INVALID` naming the field and what it
 * allows. Values are never quoted; a property that is not allowed is named (cut at 64
 * characters), since its name is what the caller must remove.
 */
function schemaError(
  errors: readonly {
    instancePath: string
    keyword: string
    message?: string
    params: Record<string, unknown>
  }[],
  dataVar: string,
): WardError {
  const first = errors[0]
  const field = `${dataVar}${first?.instancePath ?? ''}`
  let rule = first?.message ?? 'is invalid'
  if (first?.keyword === 'additionalProperties') {
    rule = `may not have ${String(first.params['additionalProperty']).slice(0, 64)}`
  } else if (first?.keyword === 'enum') {
    rule = `must be one of ${(first.params['allowedValues'] as unknown[]).join(', ')}`
  }
  return new WardError('ERR_INPUT_INVALID', `${field} ${rule}`, { details: { field } })
}

/** RFC 9457 problem details, as every error answers. */
export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String(),
    requestId: Type.String(),
  },
  { additionalProperties: false },
)

const purposeHeader = 'x-purpose-of-use'

/**
 * Registers the route table under one authorization path:
 *
 * 1. on request, before the body is read: authenticate, or 401 `ERR_UNAUTHENTICATED`;
 * 2. the framework checks params, query and body against the route's schemas (400);
 * 3. before the handler: resolve the resource from the path (a search: from its query; 404
 *    when there is none), read the purpose of use (the header, else the route's default for
 *    the principal's role), gather the policy's facts and ask {@link decide}. `deny.no-grant` for a resource of
 *    an organization answers 404 exactly as a resource that does not exist; any other denial
 *    is 403 `ERR_ACCESS_DENIED` naming the rule;
 * 4. the handler runs with an OperationContext whose `policyRule` is the deciding rule, which
 *    the domain puts into the operation's audit event.
 */
export function registerApiRoutes(
  app: FastifyInstance,
  ward: Ward,
  access: Access,
  routes: readonly ApiRoute[],
  authenticate: Authenticate,
): void {
  const principals = new WeakMap<FastifyRequest, Principal>()
  const calls = new WeakMap<
    FastifyRequest,
    Omit<RouteCall<unknown, unknown, unknown>, 'params' | 'query' | 'body'>
  >()

  for (const route of routes) {
    app.route({
      method: route.method,
      url: route.url,
      schema: {
        summary: route.summary,
        tags: [route.tag],
        description: `Action \`${route.action}\`; purpose of use \`${route.purposeOfUse}\` unless the request names another in \`${purposeHeader}\`.`,
        security: [{ bearer: [] }],
        headers: Type.Object({ [purposeHeader]: Type.Optional(oneOf(purposesOfUse)) }),
        ...(route.schema.params === undefined ? {} : { params: route.schema.params }),
        ...(route.schema.querystring === undefined
          ? {}
          : { querystring: route.schema.querystring }),
        ...(route.schema.body === undefined ? {} : { body: route.schema.body }),
        // A route may answer its errors in another shape (the FHIR API: OperationOutcome).
        response: {
          400: ProblemSchema,
          401: ProblemSchema,
          403: ProblemSchema,
          404: ProblemSchema,
          ...route.schema.response,
        },
      },
      schemaErrorFormatter: schemaError,
      onRequest: async (request) => {
        const principal = await authenticate(request)
        if (principal === undefined) {
          throw new WardError('ERR_UNAUTHENTICATED', 'sign in, or present a valid API token')
        }
        // Refused on the credential alone before anything is looked up, so that the answer
        // cannot tell which resources exist.
        const refusal = credentialRefusal(principal, route.action, ward.config.auth.mfa)
        if (refusal !== undefined) throw refused(request, route, principal, refusal)
        principals.set(request, principal)
      },
      preHandler: async (request) => {
        const principal = principals.get(request) as Principal
        const offered = request.headers[purposeHeader]
        const purposeOfUse = offered === undefined ? defaultPurpose(route, principal) : offered
        if (!isPurposeOfUse(purposeOfUse)) {
          throw new WardError(
            'ERR_INPUT_INVALID',
            `${purposeHeader} must be one of ${purposesOfUse.join(', ')}`,
            { details: { field: purposeHeader } },
          )
        }
        const resolved = await route.resolve(ward, request.params, principal, request.query)
        const facts = await access.facts(principal, resolved.resource)
        const decision = decide({
          principal,
          action: route.action,
          resource: resolved.resource,
          purposeOfUse,
          facts,
          mfa: ward.config.auth.mfa,
        })
        if (!decision.allowed) throw refused(request, route, principal, decision, resolved.resource)
        calls.set(request, {
          ward,
          access,
          principal,
          decision,
          resolved,
          context: {
            actor: {
              type: 'user',
              id: principal.userId,
              ...(decision.role === undefined ? {} : { role: decision.role }),
              address: request.ip,
              ...(isPatientPerson(principal) ? { patient: true } : {}),
            },
            requestId: request.id,
            purposeOfUse,
            ...(resolved.resource.organizationId === null
              ? {}
              : { organizationId: resolved.resource.organizationId }),
            policyRule: decision.rule,
          },
        })
      },
      handler: async (request, reply) => {
        const call = calls.get(request)
        // The preHandler always sets it; without it nothing may run.
        if (call === undefined) throw new WardError('ERR_ACCESS_DENIED', 'access not decided')
        const answer = await route.handle({
          ...call,
          params: request.params,
          query: request.query,
          body: request.body,
        })
        if (answer.contentType !== undefined) reply.type(answer.contentType)
        return (reply as FastifyReply).code(answer.status).send(answer.body)
      },
    })
  }
}

/**
 * Logs a refusal in the service log and answers the error for it: `deny.no-grant` on a
 * resource of an organization as not found, any other rule as `ERR_ACCESS_DENIED` naming it.
 */
function refused(
  request: FastifyRequest,
  route: ApiRoute,
  principal: Principal,
  decision: AccessDecision,
  resource?: Resource,
): WardError {
  request.log.warn(
    {
      route: route.url,
      action: route.action,
      rule: decision.rule,
      user: principal.userId,
      credential: principal.credentialId,
    },
    'access denied',
  )
  if (
    decision.rule === 'deny.no-grant' &&
    resource !== undefined &&
    resource.organizationId !== null
  ) {
    return hiddenResource()
  }
  return new WardError(
    'ERR_ACCESS_DENIED',
    `access denied by rule ${decision.rule}${refusalHints[decision.rule] ?? ''}`,
    { details: { rule: decision.rule } },
  )
}

/** What a refused person can do about a refusal, where there is something. */
const refusalHints: Readonly<Record<string, string>> = {
  'deny.mfa-required':
    ': a privileged role acts only after a second factor; enroll one (/auth/mfa/totp or ' +
    '/auth/mfa/webauthn) or give yours at sign-in (API tokens never pass one)',
}

/** The purpose of use a request naming none is taken to have. */
function defaultPurpose(route: ApiRoute, principal: Principal): PurposeOfUse {
  const byRole = route.purposeOfUseByRole
  if (byRole === undefined) return route.purposeOfUse
  for (const [role, purpose] of Object.entries(byRole) as [Role, PurposeOfUse][]) {
    const holds = principal.grants.some(
      (grant) => grant.role === role && grant.organizationId === principal.organizationId,
    )
    if (holds) return purpose
  }
  return route.purposeOfUse
}
