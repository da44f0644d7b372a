import { readFileSync } from 'node:fs'
import type { TLSSocket } from 'node:tls'

import type { FastifyInstance, FastifyRequest } from 'fastify'

import { WardError, isWardError } from '@ward/core'

import { FactoryRefusal, type Enrollment, type EnrollmentProof } from '../../fleet.js'
import { findOrganization, slugOfServerName } from '../../tenancy/index.js'
import type { Ward } from '../../ward.js'
import { AddressRateLimit } from '../rate-limit.js'

// Longest PEM accepted for a certificate request, and for a factory certificate chain.
const maxCsrLength = 16_384
const maxChainLength = 65_536

/** What an enrolling device sends, once its shape is checked. */
interface EnrollmentRequest {
  readonly organization: string | undefined
  readonly serial: string
  readonly csr: string
  readonly proof: EnrollmentProof
}

/**
 * Routes a device uses before it holds a certificate, on the API port (the device endpoint
 * wants a client certificate at the handshake, which an enrolling device does not have yet).
 *
 * `POST /v1/enroll` takes `{ organization?, serial, csr, token }` or, for a factory-provisioned
 * device, `factoryCertificate` and `factorySignature` instead of `token`. The organization is
 * the body's `organization`, or else the one the TLS server name `<slug>.<WARD_HOST_NAME>`
 * names. It answers 201 `{ deviceId, certificateChain, notAfter }`. A body of the wrong shape
 * is a 400 naming the field; every refusal after that — unknown organization or device, bad,
 * spent or expired token, bad factory signature, bad CSR — is the same 403
 * `ERR_ENROLLMENT_REFUSED`, so a caller learns nothing about which check failed. The refusal's
 * own code goes to the service log.
 *
 * `GET /v1/device-ca/:organization` answers the PEM certificates of Ward's API certificate,
 * which devices check the device endpoint against. It is public information, for provisioning
 * stations; a device that fetches it itself trusts whatever answered on first use, so devices
 * should be provisioned with it out of band.
 */
/**
 * Refused enrollments one address may have a minute; past that, its attempts are answered 429
 * without being tried. Each refusal is a security alert in the organization's audit log, so
 * this keeps anyone who can reach the API from filling a log with them, while a factory line
 * enrolling many devices from one address is never slowed.
 */
export const refusedEnrollmentsPerMinute = 10

export function enrollmentRoutes(app: FastifyInstance, ward: Ward): void {
  const refusals = new AddressRateLimit(refusedEnrollmentsPerMinute)
  app.post('/v1/enroll', async (request, reply) => {
    try {
      refusals.check(request.ip)
    } catch (error) {
      reply.header('retry-after', String((error as WardError).details['retryAfterSeconds']))
      throw error
    }
    const enrollment = enrollmentRequest(request.body)
    const slug = enrollment.organization ?? serverNameSlug(request, ward.config.hostName)
    let enrolled: Enrollment
    try {
      if (slug === undefined) throw new WardError('ERR_ORGANIZATION_NOT_FOUND', 'no organization')
      enrolled = await ward.fleet.enroll(
        {
          actor: { type: 'device', id: 'enrolling-device' },
          purposeOfUse: 'HSYSADMIN',
          policyRule: 'device-enrollment-proof',
          requestId: request.id,
        },
        slug,
        { serial: enrollment.serial, csrPem: enrollment.csr, ...enrollment.proof },
      )
    } catch (error) {
      if (!isWardError(error) || error.code === 'ERR_STORE_UNAVAILABLE') throw error
      request.log.warn({ code: error.code, address: request.ip }, 'enrollment refused')
      try {
        refusals.take(request.ip)
      } catch {
        // Over the limit now: the next attempt from this address is answered 429.
      }
      // Said only to a caller whose factory signature verified: it holds the factory key.
      if (error instanceof FactoryRefusal) throw error
      throw new WardError('ERR_ENROLLMENT_REFUSED', 'enrollment refused for this device')
    }
    return reply.status(201).send(enrolled)
  })

  app.get<{ Params: { organization: string } }>(
    '/v1/device-ca/:organization',
    async (request, reply) => {
      // The slug is not echoed back: the answer is the same for any name that is not one.
      await findOrganization(ward.store.db, request.params.organization).catch(() => {
        throw new WardError('ERR_ORGANIZATION_NOT_FOUND', 'no such organization')
      })
      return reply
        .type('application/pem-certificate-chain')
        .send(readFileSync(ward.config.http.certFile, 'utf8'))
    },
  )
}

function enrollmentRequest(body: unknown): EnrollmentRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new WardError('ERR_INPUT_INVALID', 'body must be a JSON object')
  }
  const fields = body as Record<string, unknown>
  const text = (field: string, maxLength: number, required = true): string | undefined => {
    const value = fields[field]
    if (value === undefined && !required) return undefined
    if (typeof value !== 'string' || value.length === 0 || value.length > maxLength) {
      throw new WardError(
        'ERR_INPUT_INVALID',
        `${field} must be a string of 1–${maxLength} characters`,
        { details: { field } },
      )
    }
    return value
  }

  const organization = text('organization', 63, false)
  const serial = text('serial', 128) as string
  const csr = text('csr', maxCsrLength) as string
  const token = text('token', 256, false)
  const factoryCertificate = text('factoryCertificate', maxChainLength, false)
  const factorySignature = text('factorySignature', 1024, false)
  if (token !== undefined && factoryCertificate === undefined && factorySignature === undefined) {
    return { organization, serial, csr, proof: { token } }
  }
  if (token === undefined && factoryCertificate !== undefined && factorySignature !== undefined) {
    return { organization, serial, csr, proof: { factoryCertificate, factorySignature } }
  }
  throw new WardError(
    'ERR_INPUT_INVALID',
    'give either token, or factoryCertificate with factorySignature',
    { details: { field: 'token' } },
  )
}

function serverNameSlug(request: FastifyRequest, hostName: string): string | undefined {
  const serverName = (request.raw.socket as TLSSocket).servername
  return typeof serverName === 'string' ? slugOfServerName(serverName, hostName) : undefined
}
