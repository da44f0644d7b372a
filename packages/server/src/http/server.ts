import { readFileSync, statSync } from 'node:fs'

import { sql } from 'kysely'
import swagger from '@fastify/swagger'
import Fastify, { LogController } from 'fastify'

import { WardError } from '@ward/core'

import { Access, OperatorToken, authenticateRequest } from '../access/index.js'
import type { Logger } from '../logging/index.js'
import { homePaths, type Ward } from '../ward.js'
import { registerApiRoutes, type Authenticate } from './api-route.js'
import { jsonBodyParser } from './json-body.js'
import {
  answerClientError,
  errorSummary,
  frameworkErrorHandler,
  retryAfterOf,
  toProblem,
  translateFrameworkError,
} from './problem.js'
import { AddressRateLimit } from './rate-limit.js'
import { requestIdOf } from './request-id.js'
import { apiRoutes } from './routes/api.js'
import { auditRoutes } from './routes/audit.js'
import { authRoutes } from './routes/auth.js'
import { enrollmentRoutes } from './routes/enrollment.js'
import { registerFhirRoutes } from './routes/fhir.js'
import { tls12CipherSuites, tls13CipherSuites } from './tls.js'

/** What {@link buildServer} can be given besides Ward and its logger. */
export interface ServerOptions {
  /**
   * Turns a request into its principal for the routes under the access policy. The default is
   * Ward's own: a signed-in session (bearer, or cookie with its CSRF token) or an API token.
   */
  readonly authenticate?: Authenticate
}

/**
 * Builds Ward's HTTPS API: TLS 1.3 by default (TLS 1.2 with ECDHE AEAD suites only when
 * configured), a request id on every request and response, JSON log lines without PHI,
 * problem details for every error, a per-address rate limit and a body size limit. `/health`
 * and `/openapi.json` are open, and so are device enrollment and the device CA (see
 * `enrollmentRoutes`); everything under `/audit` needs the operator token; everything under
 * `/v1` other than those goes through the access policy (see `registerApiRoutes`).
 */
export async function buildServer(ward: Ward, logger: Logger, options: ServerOptions = {}) {
  const { http } = ward.config
  const token = OperatorToken.load(homePaths(ward.config.home).operatorToken)
  if ((statSync(http.keyFile).mode & 0o007) !== 0) {
    throw new WardError(
      'ERR_KEY_UNAVAILABLE',
      `the API private key ${http.keyFile} is readable by everyone; restrict it (chmod 600 or 640)`,
      { details: { setting: 'http.keyFile' } },
    )
  }

  const rateLimit = new AddressRateLimit(http.rateLimitPerMinute)
  const app = Fastify({
    https: {
      key: readFileSync(http.keyFile),
      cert: readFileSync(http.certFile),
      minVersion: http.tlsMinVersion,
      ciphers: `${tls13CipherSuites}:${tls12CipherSuites}`,
      honorCipherOrder: true,
      // A connection that has not finished its handshake in half a minute is closed, not held
      // for Node's default two minutes.
      handshakeTimeout: 30_000,
    },
    loggerInstance: logger,
    // Ward writes one line per request itself, with the route pattern rather than the URL.
    logController: new LogController({
      disableRequestLogging: true,
      requestIdLogLabel: 'requestId',
    }),
    bodyLimit: http.bodyLimitBytes,
    requestIdHeader: false,
    genReqId: requestIdOf,
    return503OnClosing: true,
    // Requests Node refuses before Fastify sees them (headers too large, malformed) still get
    // problem details.
    clientErrorHandler: answerClientError,
    frameworkErrors: frameworkErrorHandler(rateLimit),
    // A body field the schema does not allow is an error, not something silently dropped.
    ajv: { customOptions: { removeAdditional: false } },
  })

  // Device agents send every body, enrollment included, as FHIR's JSON media type.
  const json = jsonBodyParser(app)
  app.removeContentTypeParser('application/json')
  for (const type of ['application/json', 'application/fhir+json']) {
    app.addContentTypeParser(type, { parseAs: 'string' }, json)
  }

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
    try {
      rateLimit.take(request.ip)
    } catch (error) {
      reply.header('retry-after', String((error as WardError).details['retryAfterSeconds']))
      throw error
    }
    reply.header('strict-transport-security', 'max-age=63072000')
    reply.header('x-content-type-options', 'nosniff')
    reply.header('cache-control', 'no-store')
  })

  app.addHook('onResponse', async (request, reply) => {
    // The route pattern, never the URL: query strings and ids stay out of the log.
    request.log.info(
      {
        method: request.method,
        route: request.routeOptions.url ?? '(unmatched)',
        status: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime),
      },
      'request',
    )
  })

  app.setErrorHandler(async (error, request, reply) => {
    const translated = translateFrameworkError(error)
    const problem = toProblem(translated, request.id)
    if (problem.status >= 500) {
      request.log.error({ code: problem.code, err: errorSummary(error) }, 'request failed')
    }
    if (problem.status === 401) reply.header('www-authenticate', 'Bearer realm="ward"')
    const retryAfter = retryAfterOf(translated)
    if (retryAfter !== undefined) reply.header('retry-after', retryAfter)
    return reply.status(problem.status).type('application/problem+json').send(problem)
  })

  app.setNotFoundHandler(async (request, reply) => {
    const problem = toProblem(new WardError('ERR_NOT_FOUND', 'no such resource'), request.id)
    return reply.status(404).type('application/problem+json').send(problem)
  })

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Ward API', version: '0.1.0' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  })
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  app.get('/health', async () => {
    // The store answers: a round trip, touching no domain's tables.
    await sql`select 1`.execute(ward.store.db)
    return { status: 'ok' }
  })

  // Authenticated by the enrollment token or factory signature in the body, not the operator.
  await app.register(async (scope) => enrollmentRoutes(scope, ward))

  // People's sign-in, MFA, sessions and API tokens; each route checks its own credential.
  await app.register(async (scope) => authRoutes(scope, ward))

  await app.register(async (scope) => {
    scope.addHook('onRequest', async (request) => {
      const header = request.headers.authorization
      const presented =
        typeof header === 'string'
          ? /^bearer +([A-Za-z0-9_-]{1,200})$/i.exec(header)?.[1]
          : undefined
      if (presented === undefined || !token.matches(presented)) {
        request.log.warn(
          { route: request.routeOptions.url, address: request.ip },
          'audit read refused',
        )
        throw new WardError('ERR_UNAUTHENTICATED', 'a valid bearer token is required')
      }
    })
    auditRoutes(scope, ward)
  })

  const access = new Access(ward)
  const authenticate =
    options.authenticate ?? ((request) => authenticateRequest(request, ward.people))
  await app.register(async (scope) =>
    registerApiRoutes(scope, ward, access, apiRoutes, authenticate),
  )

  // The FHIR API answers errors as OperationOutcome, so it has a scope of its own.
  await app.register(async (scope) =>
    registerFhirRoutes(scope, ward, (routes) =>
      registerApiRoutes(scope, ward, access, routes, authenticate),
    ),
  )

  return app
}
