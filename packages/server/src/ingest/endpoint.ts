import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import type { SecureContext, TLSSocket } from 'node:tls'

import Fastify, { LogController, type FastifyInstance, type FastifyRequest } from 'fastify'

import { WardError, isWardError, withArticle, type WardErrorCode } from '@ward/core'

import type { OperationContext } from '../context.js'
import { findDevice, findDeviceModel } from '../devices/index.js'
import {
  answerClientError,
  errorSummary,
  frameworkErrorHandler,
  toProblem,
  translateFrameworkError,
} from '../http/problem.js'
import { jsonBodyParser } from '../http/json-body.js'
import { AddressRateLimit } from '../http/rate-limit.js'
import { requestIdOf } from '../http/request-id.js'
import { tls12CipherSuites, tls13CipherSuites } from '../http/tls.js'
import { identifyDevice } from '../identity/index.js'
import type { Logger } from '../logging/index.js'
import { registerUpdateRoutes } from '../updates/index.js'
import type { Ward } from '../ward.js'
import { batchResponse, readingsOf } from './batch.js'
import { DeviceConnections, type ConnectedDevice } from './device-connections.js'
import { registerLifecycleRoutes } from './lifecycle-routes.js'
import { OrganizationTrust, endpointTlsOptions } from './organization-trust.js'
import { ReadingBudget } from './reading-budget.js'

/** The running device endpoint. */
export interface DeviceEndpoint {
  /** `https://host:port` the endpoint listens on. */
  readonly url: string
  readonly port: number
  /**
   * Takes fresh trust for the organization now — its CAs and newly signed CRLs — and closes
   * every open connection of its devices that is no longer allowed. Ward does this by itself
   * when its own fleet changes a device, and within a second for changes made elsewhere.
   */
  refresh(organizationId: string): Promise<void>
  /** Stops accepting connections, lets requests in flight finish, and closes the rest. */
  close(): Promise<void>
}

/** A device allowed to make the request at hand. */
interface AdmittedDevice extends ConnectedDevice {
  readonly maxReadingsPerMinute: number
}

// How often the store is asked whether another Ward process changed a device's trust.
const pollIntervalMs = 1000

// Errors that say the connection's own device may not be served: its connection is closed.
const refusalCodes = new Set<WardErrorCode>([
  'ERR_UNAUTHENTICATED',
  'ERR_ACCESS_DENIED',
  'ERR_CERTIFICATE_UNKNOWN',
  'ERR_CERTIFICATE_UNTRUSTED',
  'ERR_CERTIFICATE_EXPIRED',
  'ERR_CERTIFICATE_REVOKED',
  'ERR_CERTIFICATE_SUSPENDED',
])

/**
 * Starts Ward's device endpoint on `device.host:device.port`: HTTPS with mutual TLS, where the
 * device's certificate is checked at the handshake against the CAs and CRLs of the organization
 * its server name `<slug>.<WARD_HOST_NAME>` names, under Ward's API certificate. TLS 1.3 by
 * default; TLS 1.2 only with ECDHE AEAD suites when configured.
 *
 * Every request is identified by the certificate the connection presented, never by anything
 * the device says, and the device's certificate and status are checked again before it is
 * served. A device that is revoked or suspended loses every open connection at once, whether
 * the change was made by this process or by another one sharing the store.
 *
 * Routes: `POST /v1/observations` (one Observation or a batch Bundle, answered by a FHIR
 * batch-response), `POST /v1/renew`, and the lifecycle and rollout routes of
 * `lifecycle-routes.ts`. Limits: the body size, the readings a batch may hold,
 * each device model's readings per minute and the requests per minute of one address.
 */
export async function startDeviceEndpoint(ward: Ward, logger: Logger): Promise<DeviceEndpoint> {
  const { device: settings, http } = ward.config
  const tls = {
    key: readFileSync(http.keyFile),
    cert: readFileSync(http.certFile),
    minVersion: settings.tlsMinVersion,
    ciphers: `${tls13CipherSuites}:${tls12CipherSuites}`,
  }
  const trust = new OrganizationTrust(ward, tls, (error, organizationId) => {
    logger.error({ organizationId, err: errorSummary(error) }, 'device trust refresh failed')
  })
  const connections = new DeviceConnections()
  const admitted = new WeakMap<FastifyRequest, AdmittedDevice>()
  const admittedSockets = new WeakMap<TLSSocket, AdmittedDevice>()
  const readingLimits = new Map<string, number>()
  const addressLimit = new AddressRateLimit(http.rateLimitPerMinute)
  const budget = new ReadingBudget()

  /** Checks that the certificate names an active device of the organization, now. */
  async function admit(organizationId: string, certificate: Uint8Array): Promise<AdmittedDevice> {
    const db = ward.store.db
    const identified = await identifyDevice(db, organizationId, certificate)
    const device = await findDevice(db, organizationId, identified.deviceId)
    if (device.status !== 'active') {
      throw new WardError(
        'ERR_ACCESS_DENIED',
        `${withArticle(device.status)} device may not connect`,
      )
    }
    let perMinute = readingLimits.get(device.modelId)
    if (perMinute === undefined) {
      // A device model's policy never changes once registered, so its limit can be kept.
      perMinute = (await findDeviceModel(db, organizationId, device.modelId)).policy
        .maxReadingsPerMinute
      readingLimits.set(device.modelId, perMinute)
    }
    return {
      organizationId,
      deviceId: identified.deviceId,
      serialNumber: identified.serialNumber,
      notAfter: identified.notAfter,
      certificate,
      maxReadingsPerMinute: perMinute,
    }
  }

  /** Admits the device at the other end of `socket` and records the connection as its own. */
  async function admitConnection(socket: TLSSocket): Promise<AdmittedDevice> {
    // A connection's certificate cannot change, so it is identified once; its device's status
    // is still read on every request, and a change of trust cuts the connection anyway.
    const known = admittedSockets.get(socket)
    if (known !== undefined) {
      const device = await findDevice(ward.store.db, known.organizationId, known.deviceId)
      if (device.status !== 'active') {
        throw new WardError(
          'ERR_ACCESS_DENIED',
          `${withArticle(device.status)} device may not connect`,
        )
      }
      return known
    }
    const organizationId = trust.organizationOf(socket.servername)
    const certificate = socket.getPeerX509Certificate()
    if (organizationId === undefined || certificate === undefined) {
      throw new WardError('ERR_UNAUTHENTICATED', 'a device certificate is required')
    }
    const device = await admit(organizationId, certificate.raw)
    connections.track(socket, device)
    admittedSockets.set(socket, device)
    return device
  }

  /**
   * Checks the organization's open connections again, or one device's, and cuts those whose
   * device is no longer allowed. A check that cannot be made cuts too.
   */
  async function sweep(organizationId: string, deviceId?: string): Promise<void> {
    await Promise.all(
      connections.byCertificate(organizationId, deviceId).map(async ({ device, sockets }) => {
        try {
          await admit(organizationId, device.certificate)
        } catch (error) {
          for (const socket of sockets) socket.destroy()
          logger.info(
            {
              organizationId,
              deviceId: device.deviceId,
              connections: sockets.length,
              code: isWardError(error) ? error.code : 'ERR_INTERNAL',
            },
            'device connections closed',
          )
        }
      }),
    )
  }

  /** What a change of trust for the organization (or one device) sets off. */
  async function trustChanged(organizationId: string, deviceId?: string): Promise<void> {
    // Connections are cut at once; handshakes still use the old CRLs for the moment it takes
    // to sign new ones, so connections made meanwhile are checked again afterwards.
    await Promise.all([sweep(organizationId, deviceId), trust.refresh(organizationId)])
    await sweep(organizationId, deviceId)
  }

  function reactTo(organizationId: string, deviceId?: string): void {
    trustChanged(organizationId, deviceId).catch((error: unknown) => {
      logger.error({ organizationId, err: errorSummary(error) }, 'device trust refresh failed')
    })
  }

  const app = Fastify({
    https: {
      ...endpointTlsOptions(tls),
      // The context used when a device sends no server name trusts no CA at all (an empty
      // list, unlike an absent one, also leaves out Node's public roots): such a handshake
      // always fails.
      ca: [],
      requestCert: true,
      rejectUnauthorized: true,
      // Anyone may open a connection to this port; one that does not finish its handshake
      // soon is closed rather than held (Node's default is two minutes).
      handshakeTimeout: settings.idleTimeoutSeconds * 1000,
      SNICallback: (serverName, callback) => {
        trust.contextFor(serverName).then(
          (context: SecureContext) => callback(null, context),
          (error: unknown) => {
            const known = isWardError(error, 'ERR_ORGANIZATION_NOT_FOUND')
            if (!known) logger.error({ err: errorSummary(error) }, 'device trust unavailable')
            callback(error instanceof Error ? error : new Error('device trust unavailable'))
          },
        )
      },
    },
    loggerInstance: logger,
    logController: new LogController({
      disableRequestLogging: true,
      requestIdLogLabel: 'requestId',
    }),
    bodyLimit: settings.bodyLimitBytes,
    requestIdHeader: false,
    genReqId: requestIdOf,
    requestTimeout: 60_000,
    return503OnClosing: true,
    clientErrorHandler: answerClientError,
    frameworkErrors: frameworkErrorHandler(addressLimit),
    // Silence on a connection — after its handshake, between requests, in the middle of one —
    // closes it after the idle timeout; the handshake itself has the same limit above.
    connectionTimeout: settings.idleTimeoutSeconds * 1000,
    keepAliveTimeout: settings.idleTimeoutSeconds * 1000,
  })

  // Connections are admitted as soon as the handshake ends, so that one is known as its
  // device's (and can be cut with it) before it sends anything.
  app.server.on('secureConnection', (socket: TLSSocket) => {
    const address = socket.remoteAddress
    admitConnection(socket).catch((error: unknown) => {
      socket.destroy()
      logger.info(
        { address, code: isWardError(error) ? error.code : 'ERR_INTERNAL' },
        'device connection refused',
      )
    })
  })
  app.server.on('tlsClientError', (error, socket: TLSSocket) => {
    const verification = (socket as TLSSocket & { authorizationError?: unknown }).authorizationError
    const reason =
      typeof verification === 'string'
        ? verification
        : ((error as { code?: string }).code ?? error.message)
    // A refused certificate has ended the socket, and its address with it; a handshake that
    // timed out has not, and with this listener in place Node leaves closing it to Ward.
    logger.info(
      {
        reason,
        serverName: typeof socket.servername === 'string' ? socket.servername.slice(0, 253) : null,
      },
      'device handshake refused',
    )
    socket.destroy()
  })

  app.removeContentTypeParser('text/plain')
  app.addContentTypeParser('application/fhir+json', { parseAs: 'string' }, jsonBodyParser(app))

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
    reply.header('x-content-type-options', 'nosniff')
    reply.header('cache-control', 'no-store')
    addressLimit.take(request.ip)
    admitted.set(request, await admitConnection(request.raw.socket as TLSSocket))
  })

  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      {
        method: request.method,
        route: request.routeOptions.url ?? '(unmatched)',
        status: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime),
        deviceId: admitted.get(request)?.deviceId ?? null,
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
    const retryAfter = isWardError(translated) ? translated.details['retryAfterSeconds'] : undefined
    if (typeof retryAfter === 'number') reply.header('retry-after', String(retryAfter))
    else if (problem.status === 503) reply.header('retry-after', '5')
    if (refusalCodes.has(problem.code)) {
      request.log.info({ code: problem.code, address: request.ip }, 'device refused')
      reply.header('connection', 'close')
    }
    return reply.status(problem.status).type('application/problem+json').send(problem)
  })

  app.setNotFoundHandler(async (request, reply) => {
    const problem = toProblem(new WardError('ERR_NOT_FOUND', 'no such resource'), request.id)
    return reply.status(404).type('application/problem+json').send(problem)
  })

  app.post('/v1/observations', async (request, reply) => {
    const device = admittedDevice(admitted, request)
    const readings = readingsOf(request.body, settings.maxBatchReadings)
    budget.take(device.deviceId, readings.length, device.maxReadingsPerMinute)
    const context: OperationContext = {
      actor: { type: 'device', id: device.deviceId },
      organizationId: device.organizationId,
      purposeOfUse: 'TREAT',
      policyRule: 'device-own-patient',
      requestId: request.id,
    }
    const outcomes = await ward.fleet.ingest(
      context,
      device.organizationId,
      device.deviceId,
      readings,
    )
    return reply.status(200).type('application/fhir+json').send(batchResponse(outcomes))
  })

  app.post('/v1/renew', async (request, reply) => {
    const device = admittedDevice(admitted, request)
    const csr = csrOf(request.body)
    const context: OperationContext = {
      actor: { type: 'device', id: device.deviceId },
      organizationId: device.organizationId,
      purposeOfUse: 'HSYSADMIN',
      policyRule: 'device-own-identity',
      requestId: request.id,
    }
    const renewal = await ward.fleet.renew(
      context,
      device.organizationId,
      device.deviceId,
      csr,
      device.serialNumber,
    )
    return reply.status(201).send(renewal)
  })

  // The routes need only the base instance type; this one differs only in its logger's type.
  registerUpdateRoutes(app as unknown as FastifyInstance, ward, (request) =>
    admittedDevice(admitted, request),
  )
  await app.register(async (scope) =>
    registerLifecycleRoutes(scope, ward, (request) => admittedDevice(admitted, request)),
  )

  const onTrustChanged = (organizationId: string, deviceId: string) => {
    reactTo(organizationId, deviceId)
  }
  ward.fleet.events.on('trust-changed', onTrustChanged)

  let polling = false
  let pollFailing = false
  const poller = setInterval(() => {
    if (polling) return
    polling = true
    trust
      .changed()
      .then((organizations) => {
        if (pollFailing) logger.info('device trust polling recovered')
        pollFailing = false
        for (const organizationId of organizations) reactTo(organizationId)
      })
      .catch((error: unknown) => {
        // Once per outage, not once a second.
        if (!pollFailing) logger.error({ err: errorSummary(error) }, 'device trust polling failed')
        pollFailing = true
      })
      .finally(() => {
        polling = false
      })
  }, pollIntervalMs).unref()

  const stop = () => {
    clearInterval(poller)
    ward.fleet.events.off('trust-changed', onTrustChanged)
    trust.close()
  }

  try {
    await app.listen({ host: settings.host, port: settings.port })
  } catch (cause) {
    stop()
    await app.close()
    if ((cause as { code?: string }).code !== 'EADDRINUSE') throw cause
    throw new WardError(
      'ERR_CONFIG_INVALID',
      `${settings.host}:${settings.port} is already in use; set WARD_DEVICE_PORT to a free port`,
      { cause, details: { setting: 'device.port' } },
    )
  }
  const address = app.server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address

  return {
    url: `https://${host}:${address.port}`,
    port: address.port,
    refresh: (organizationId) => trustChanged(organizationId),
    async close() {
      stop()
      // Requests in flight finish; connections idle between requests are closed at once.
      await app.close()
    },
  }
}

function admittedDevice(
  admitted: WeakMap<FastifyRequest, AdmittedDevice>,
  request: FastifyRequest,
): AdmittedDevice {
  const device = admitted.get(request)
  if (device === undefined) {
    throw new WardError('ERR_UNAUTHENTICATED', 'a device certificate is required')
  }
  return device
}

function csrOf(body: unknown): string {
  const csr =
    typeof body === 'object' && body !== null ? (body as Record<string, unknown>)['csr'] : null
  if (typeof csr !== 'string' || csr.length > 16_384) {
    throw new WardError('ERR_INPUT_INVALID', 'body must be {"csr": "<PEM certificate request>"}', {
      details: { field: 'csr' },
    })
  }
  return csr
}
