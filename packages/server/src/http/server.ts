import { randomUUID } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'

import Fastify, { LogController } from 'fastify'

import { WardError } from '@ward/core'

import { OperatorToken } from '../access/api-token.js'
import type { Logger } from '../logging/index.js'
import { homePaths, type Ward } from '../ward.js'
import { toProblem } from './problem.js'
import { AddressRateLimit } from './rate-limit.js'
import { auditRoutes } from './routes/audit.js'
import { tls12CipherSuites, tls13CipherSuites } from './tls.js'

const requestIdPattern = /^[A-Za-z0-9._-]{8,100}$/

/**
 * Builds Ward's HTTPS API: TLS 1.3 by default (TLS 1.2 with ECDHE AEAD suites only when
 * configured), a request id on every request and response, JSON log lines without PHI,
 * problem details for every error, a per-address rate limit and a body size limit. `/health`
 * is open; everything under `/audit` needs the operator token.
 */
export async function buildServer(ward: Ward, logger: Logger) {
  const { http } = ward.config
  const token = OperatorToken.load(homePaths(ward.config.home).operatorToken)
  if ((statSync(http.keyFile).mode & 0o007) !== 0) {
    throw new WardError(
      'ERR_KEY_UNAVAILABLE',
      `the API private key ${http.keyFile} is readable by everyone; restrict it (chmod 600 or 640)`,
      { details: { setting: 'http.keyFile' } },
    )
  }

  const app = Fastify({
    https: {
      key: readFileSync(http.keyFile),
      cert: readFileSync(http.certFile),
      minVersion: http.tlsMinVersion,
      ciphers: `${tls13CipherSuites}:${tls12CipherSuites}`,
      honorCipherOrder: true,
    },
    loggerInstance: logger,
    // Ward writes one line per request itself, with the route pattern rather than the URL.
    logController: new LogController({
      disableRequestLogging: true,
      requestIdLogLabel: 'requestId',
    }),
    bodyLimit: http.bodyLimitBytes,
    requestIdHeader: false,
    // A caller's own id is kept when it looks like one, so traces join up; otherwise Ward's.
    genReqId: (request) => {
      const offered = request.headers['x-request-id']
      return typeof offered === 'string' && requestIdPattern.test(offered) ? offered : randomUUID()
    },
    return503OnClosing: true,
    // Requests Node refuses before Fastify sees them (headers too large, malformed) still get
    // problem details.
    clientErrorHandler: (error, socket) => {
      const tooLarge = (error as { code?: string }).code === 'HPE_HEADER_OVERFLOW'
      const status = tooLarge ? 431 : 400
      const title = tooLarge ? 'Request Header Fields Too Large' : 'Bad Request'
      const body = JSON.stringify({
        type: 'urn:ward:error:ERR_INPUT_INVALID',
        title,
        status,
        detail: tooLarge ? 'request headers are larger than allowed' : 'request is malformed',
        code: 'ERR_INPUT_INVALID',
      })
      if (socket.writable) {
        socket.end(
          `HTTP/1.1 ${status} ${title}\r\ncontent-type: application/problem+json\r\n` +
            `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
        )
      }
    },
  })

  const rateLimit = new AddressRateLimit(http.rateLimitPerMinute)
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
    const ward = translateFrameworkError(error)
    const problem = toProblem(ward, request.id)
    if (problem.status >= 500) {
      request.log.error({ code: problem.code, err: errorSummary(error) }, 'request failed')
    }
    if (problem.status === 401) reply.header('www-authenticate', 'Bearer realm="ward"')
    return reply.status(problem.status).type('application/problem+json').send(problem)
  })

  app.setNotFoundHandler(async (request, reply) => {
    const problem = toProblem(new WardError('ERR_NOT_FOUND', 'no such resource'), request.id)
    return reply.status(404).type('application/problem+json').send(problem)
  })

  app.get('/health', async () => {
    await ward.store.db.selectFrom('audit_logs').select('id').limit(1).execute()
    return { status: 'ok' }
  })

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

  return app
}

function translateFrameworkError(error: unknown): unknown {
  if (error instanceof WardError) return error
  const framework = error as { code?: string; statusCode?: number }
  if (framework.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return new WardError('ERR_PAYLOAD_TOO_LARGE', 'request body is larger than allowed')
  }
  if (framework.statusCode === 429) return new WardError('ERR_RATE_LIMITED', 'too many requests')
  if (
    framework.statusCode !== undefined &&
    framework.statusCode >= 400 &&
    framework.statusCode < 500
  ) {
    return new WardError('ERR_INPUT_INVALID', 'request is malformed')
  }
  return error
}

/**
 * What the service log keeps of an unexpected error: its type, its code (a SQLSTATE, a Node
 * error code) and where it was thrown — not its message, which may quote data.
 */
function errorSummary(error: unknown): Record<string, string> {
  if (error instanceof WardError) return { code: error.code, message: error.message }
  if (!(error instanceof Error)) return { type: typeof error }
  const frames = (error.stack ?? '')
    .split('\n')
    .slice(1, 6)
    .map((line) => line.trim())
  const code = (error as { code?: unknown }).code
  return {
    type: error.name,
    ...(typeof code === 'string' ? { code } : {}),
    stack: frames.join(' | '),
  }
}
