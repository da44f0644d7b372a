import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import tls from 'node:tls'

import { dialects, freshDatabase, temporaryDirectory } from '../../test/support.js'
import type { Organization } from '../tenancy/index.js'
import { issueDeviceCertificateWithValidity } from './device-certificates.js'
import {
  deviceTrust,
  identifyDevice,
  issueDeviceCertificate,
  reinstateDeviceCertificates,
  revokeCertificate,
  suspendDeviceCertificates,
  type DeviceTrust,
} from './index.js'
import {
  makeDeviceCsr,
  openIdentityFixture,
  openssl,
  organizationWithAuthorities,
  type IdentityFixture,
} from './test-support.js'

/** A client's credentials: a certificate chain and its private key, both PEM. */
interface ClientIdentity {
  readonly cert: string
  readonly key: string
}

/** How one handshake ended, as the server saw it. */
type Handshake =
  | { readonly accepted: true; readonly peerCertificate: Uint8Array }
  | { readonly accepted: false; readonly reason: string }

const dayMs = 86_400_000

/** The DER of the first certificate in a PEM chain, as a TLS peer would present it. */
function firstDer(chainPem: string): Uint8Array {
  const [first] = chainPem.split('-----END CERTIFICATE-----')
  return Buffer.from((first ?? '').replace(/-----[A-Z ]+-----|\s+/g, ''), 'base64')
}

for (const { dialect, skip } of dialects) {
  describe(`device trust at a mutual-TLS handshake on ${dialect}`, { skip }, () => {
    let fixture: IdentityFixture
    let organization: Organization
    let other: Organization
    let serverCertificate: string
    let serverKey: string

    before(async () => {
      const directory = temporaryDirectory()
      fixture = await openIdentityFixture(await freshDatabase(dialect, directory.path), directory)
      ;({ organization } = await organizationWithAuthorities(
        fixture.store,
        fixture.provider,
        'acme',
      ))
      ;({ organization: other } = await organizationWithAuthorities(
        fixture.store,
        fixture.provider,
        'other',
      ))
      const certificatePath = join(fixture.directory, 'server.pem')
      const keyPath = join(fixture.directory, 'server.key')
      await openssl(
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-256',
          '-nodes',
          '-keyout',
          keyPath,
          '-out',
          certificatePath,
          '-days',
          '2',
          '-subj',
          '/CN=acme.ward.test',
          '-addext',
          'subjectAltName=DNS:acme.ward.test',
        ],
        fixture.directory,
      )
      serverCertificate = readFileSync(certificatePath, 'utf8')
      serverKey = readFileSync(keyPath, 'utf8')
    })
    after(() => fixture?.close())

    function trustOf(organizationId: string): Promise<DeviceTrust> {
      return fixture.store.transaction((tx) => deviceTrust(tx, fixture.provider, organizationId))
    }

    async function enroll(
      organizationId: string,
      validity?: { notBefore: Date; notAfter: Date },
    ): Promise<ClientIdentity & { deviceId: string; serialNumber: string }> {
      const deviceId = randomUUID()
      const device = await makeDeviceCsr(fixture.directory, 'PO-0201')
      const request = { organizationId, deviceId, serial: 'PO-0201', csrPem: device.csrPem }
      const issued = await fixture.store.transaction((tx) =>
        validity === undefined
          ? issueDeviceCertificate(tx, fixture.provider, request)
          : issueDeviceCertificateWithValidity(tx, fixture.provider, request, validity),
      )
      return {
        cert: issued.chainPem,
        key: device.keyPem,
        deviceId,
        serialNumber: issued.serialNumber,
      }
    }

    /** Runs one handshake with a server set up from `trust`, as the device endpoint is. */
    async function handshake(trust: DeviceTrust, client?: ClientIdentity): Promise<Handshake> {
      const server = tls.createServer({
        key: serverKey,
        cert: serverCertificate,
        requestCert: true,
        rejectUnauthorized: true,
        ca: trust.ca,
        crl: trust.crl,
        minVersion: 'TLSv1.3',
      })
      const outcome = new Promise<Handshake>((resolve) => {
        server.on('secureConnection', (socket) => {
          resolve({ accepted: true, peerCertificate: socket.getPeerCertificate().raw })
          socket.end('welcome')
        })
        // Node finishes the TLS 1.3 handshake, then drops a client whose certificate failed
        // verification before any application data; the verification code says why. OpenSSL
        // reports the last failure it met: for a chain to an unknown CA, the missing CRL.
        server.on('tlsClientError', (error, socket) => {
          const code = (socket as tls.TLSSocket & { authorizationError?: string })
            .authorizationError
          resolve({ accepted: false, reason: code ?? error.message })
        })
      })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      const socket = tls.connect({
        host: '127.0.0.1',
        port: (server.address() as AddressInfo).port,
        servername: 'acme.ward.test',
        ca: serverCertificate,
        minVersion: 'TLSv1.3',
        ...(client === undefined ? {} : { cert: client.cert, key: client.key }),
      })
      socket.on('error', () => undefined)
      socket.resume()
      try {
        return await outcome
      } finally {
        socket.destroy()
        await new Promise((resolve) => server.close(resolve))
      }
    }

    test('accepts a freshly issued device certificate and identifies its device', async () => {
      const device = await enroll(organization.id)
      const result = await handshake(await trustOf(organization.id), device)
      assert.equal(result.accepted, true, result.accepted ? '' : result.reason)
      const identified = await identifyDevice(
        fixture.store.db,
        organization.id,
        result.peerCertificate,
      )
      assert.equal(identified.deviceId, device.deviceId)
      assert.equal(identified.serialNumber, device.serialNumber)
      assert.ok(Date.parse(identified.notAfter) > Date.now() + 364 * dayMs)
    })

    test('refuses a client that presents no certificate', async () => {
      const result = await handshake(await trustOf(organization.id))
      assert.equal(result.accepted, false)
      assert.match(result.accepted ? '' : result.reason, /peer did not return a certificate/)
    })

    test('refuses a self-signed certificate, even one naming a device of the organization', async () => {
      const keyPath = join(fixture.directory, 'self.key')
      const certificatePath = join(fixture.directory, 'self.pem')
      await openssl(
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-256',
          '-nodes',
          '-keyout',
          keyPath,
          '-out',
          certificatePath,
          '-days',
          '30',
          '-subj',
          '/CN=PO-0201',
          '-addext',
          `subjectAltName=URI:urn:ward:device:${organization.id}:${randomUUID()}`,
          '-addext',
          'extendedKeyUsage=clientAuth',
        ],
        fixture.directory,
      )
      const forged = {
        cert: readFileSync(certificatePath, 'utf8'),
        key: readFileSync(keyPath, 'utf8'),
      }
      const result = await handshake(await trustOf(organization.id), forged)
      assert.equal(result.accepted, false)
      assert.match(
        result.accepted ? '' : result.reason,
        /^(DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_GET_CRL)$/,
      )
      await assert.rejects(
        identifyDevice(fixture.store.db, organization.id, firstDer(forged.cert)),
        {
          code: 'ERR_CERTIFICATE_UNKNOWN',
        },
      )
    })

    test("refuses another organization's device certificate", async () => {
      const stranger = await enroll(other.id)
      const accepted = await handshake(await trustOf(other.id), stranger)
      assert.equal(accepted.accepted, true)
      const result = await handshake(await trustOf(organization.id), stranger)
      assert.equal(result.accepted, false)
      assert.match(
        result.accepted ? '' : result.reason,
        /^(UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_GET_CRL)$/,
      )
      if (accepted.accepted) {
        await assert.rejects(
          identifyDevice(fixture.store.db, organization.id, accepted.peerCertificate),
          { code: 'ERR_CERTIFICATE_UNTRUSTED' },
        )
      }
    })

    test('refuses an expired device certificate', async () => {
      const now = Date.now()
      const expired = await enroll(organization.id, {
        notBefore: new Date(now - 30 * dayMs),
        notAfter: new Date(now - dayMs),
      })
      const result = await handshake(await trustOf(organization.id), expired)
      assert.equal(result.accepted, false)
      assert.match(result.accepted ? '' : result.reason, /^CERT_HAS_EXPIRED$/)
      await assert.rejects(
        identifyDevice(fixture.store.db, organization.id, firstDer(expired.cert)),
        {
          code: 'ERR_CERTIFICATE_EXPIRED',
        },
      )
    })

    test('refuses a revoked device certificate once the endpoint takes fresh trust', async () => {
      const device = await enroll(organization.id)
      const before = await handshake(await trustOf(organization.id), device)
      assert.equal(before.accepted, true)

      await fixture.store.transaction((tx) =>
        revokeCertificate(tx, {
          organizationId: organization.id,
          serialNumber: device.serialNumber,
          reason: 'keyCompromise',
        }),
      )
      const result = await handshake(await trustOf(organization.id), device)
      assert.equal(result.accepted, false)
      assert.match(result.accepted ? '' : result.reason, /^CERT_REVOKED$/)
      if (before.accepted) {
        await assert.rejects(
          identifyDevice(fixture.store.db, organization.id, before.peerCertificate),
          { code: 'ERR_CERTIFICATE_REVOKED' },
        )
      }
    })

    test('refuses a suspended device certificate until the suspension is lifted', async () => {
      const device = await enroll(organization.id)
      await fixture.store.transaction((tx) =>
        suspendDeviceCertificates(tx, organization.id, device.deviceId),
      )
      const suspended = await handshake(await trustOf(organization.id), device)
      assert.equal(suspended.accepted, false)
      assert.match(suspended.accepted ? '' : suspended.reason, /^CERT_REVOKED$/)

      await fixture.store.transaction((tx) =>
        reinstateDeviceCertificates(tx, organization.id, device.deviceId),
      )
      const reinstated = await handshake(await trustOf(organization.id), device)
      assert.equal(reinstated.accepted, true)
      if (reinstated.accepted) {
        await fixture.store.transaction((tx) =>
          suspendDeviceCertificates(tx, organization.id, device.deviceId),
        )
        await assert.rejects(
          identifyDevice(fixture.store.db, organization.id, reinstated.peerCertificate),
          { code: 'ERR_CERTIFICATE_SUSPENDED' },
        )
      }
    })

    test('refuses to identify bytes that are not a certificate', async () => {
      await assert.rejects(
        identifyDevice(fixture.store.db, organization.id, new Uint8Array([0x30, 0x01, 0x00])),
        { code: 'ERR_CERTIFICATE_INVALID' },
      )
    })
  })
}
