import type { FastifyInstance, FastifyRequest } from 'fastify'

import type { OperationContext } from '../context.js'
import type { Ward } from '../ward.js'

/** The device a request on the device endpoint was admitted as. */
export interface RequestingDevice {
  readonly organizationId: string
  readonly deviceId: string
}

/**
 * The update routes of the mutual-TLS device endpoint. Every file is served from the
 * repository of the organization the device's certificate belongs to, never another's:
 *
 * - `GET /updates/<n>.root.json`, `/updates/<n>.snapshot.json`, `/updates/<n>.targets.json`,
 *   `/updates/timestamp.json`: TUF metadata under consistent snapshots;
 * - `GET /updates/targets/<sha256>.<name>`: a firmware image;
 * - `POST /updates/report`: the device's install report.
 */
export function registerUpdateRoutes(
  app: FastifyInstance,
  ward: Ward,
  deviceOf: (request: FastifyRequest) => RequestingDevice,
): void {
  app.get<{ Params: { file: string } }>('/updates/:file', async (request, reply) => {
    const device = deviceOf(request)
    const body = await ward.updates.metadataFile(device.organizationId, request.params.file)
    return reply.type('application/json').send(Buffer.from(body))
  })

  app.get<{ Params: { file: string } }>('/updates/targets/:file', async (request, reply) => {
    const device = deviceOf(request)
    const body = await ward.updates.targetFile(device.organizationId, request.params.file)
    return reply.type('application/octet-stream').send(Buffer.from(body))
  })

  app.post('/updates/report', async (request, reply) => {
    const device = deviceOf(request)
    const context: OperationContext = {
      actor: { type: 'device', id: device.deviceId, address: request.ip },
      organizationId: device.organizationId,
      purposeOfUse: 'HSYSADMIN',
      policyRule: 'device-own-updates',
      requestId: request.id,
    }
    const recorded = await ward.updates.report(
      context,
      device.organizationId,
      device.deviceId,
      request.body,
    )
    return reply.status(201).send(recorded)
  })
}
