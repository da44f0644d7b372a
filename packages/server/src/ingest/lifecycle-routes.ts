import { X509Certificate } from 'node:crypto'

import type { FastifyInstance, FastifyRequest } from 'fastify'

import { WardError } from '@ward/core'

import type { OperationContext } from '../context.js'
import type { Ward } from '../ward.js'
import type { ConnectedDevice } from './device-connections.js'

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/**
 * The device endpoint's lifecycle and rollout routes, all for the device of the connection:
 *
 * - `GET /v1/commands`: its open lifecycle commands, `{ "commands": [{ id, kind, issuedAt }] }`,
 *   handed over again until confirmed;
 * - `POST /v1/commands/<id>/result`: its signed confirmation of a wipe; answers the wipe
 *   certificate's id, the same one when confirmed again;
 * - `GET /v1/rollout`: `{ "update": { rollout, release, version, target } }` when a running
 *   rollout wants it to move to a release (`target`: the TUF target name to install),
 *   `{ "update": null }` otherwise;
 * - `POST /v1/update-status`: `{ release, version, status, reason? }` as the update goes on.
 */
export function registerLifecycleRoutes(
  app: FastifyInstance,
  ward: Ward,
  deviceOf: (request: FastifyRequest) => ConnectedDevice,
): void {
  const contextOf = (request: FastifyRequest, policyRule: string): OperationContext => {
    const device = deviceOf(request)
    return {
      actor: { type: 'device', id: device.deviceId },
      organizationId: device.organizationId,
      purposeOfUse: 'HSYSADMIN',
      policyRule,
      requestId: request.id,
    }
  }

  app.get('/v1/commands', async (request, reply) => {
    const device = deviceOf(request)
    const commands = await ward.fleet.deliverCommands(
      contextOf(request, 'device-own-commands'),
      device.organizationId,
      device.deviceId,
    )
    return reply.status(200).send({
      commands: commands.map((command) => ({
        id: command.id,
        kind: command.kind,
        issuedAt: command.issuedAt,
      })),
    })
  })

  app.post<{ Params: { id: string } }>('/v1/commands/:id/result', async (request, reply) => {
    const device = deviceOf(request)
    const commandId = request.params.id
    if (!uuidPattern.test(commandId)) {
      throw new WardError('ERR_COMMAND_NOT_FOUND', 'no such command for this device')
    }
    const confirmed = await ward.fleet.confirmWipe(
      contextOf(request, 'device-own-commands'),
      device.organizationId,
      device.deviceId,
      commandId,
      request.body,
      new X509Certificate(device.certificate),
    )
    if (confirmed.created) {
      // The device is refused from now on; its connections are cut once it has Ward's answer.
      reply.raw.once('finish', () => {
        ward.fleet.events.emit('trust-changed', device.organizationId, device.deviceId)
      })
    }
    return reply.status(200).send({
      wipeCertificate: confirmed.certificate.id,
      recordedAt: confirmed.certificate.recordedAt,
    })
  })

  app.get('/v1/rollout', async (request, reply) => {
    const device = deviceOf(request)
    const offer = await ward.rollouts.offer(
      contextOf(request, 'device-own-updates'),
      device.organizationId,
      device.deviceId,
    )
    return reply.status(200).send({
      update:
        offer === undefined
          ? null
          : {
              rollout: offer.rolloutId,
              release: offer.releaseId,
              version: offer.version,
              target: offer.target,
            },
    })
  })

  app.post('/v1/update-status', async (request, reply) => {
    const device = deviceOf(request)
    const recorded = await ward.rollouts.report(
      contextOf(request, 'device-own-updates'),
      device.organizationId,
      device.deviceId,
      request.body,
    )
    return reply.status(200).send({ rollout: recorded.rollout.id, status: recorded.status })
  })
}
