import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'

import { dialects, freshDatabase, temporaryDirectory } from '../../test/support.js'
import type { Organization } from '../tenancy/index.js'
import {
  deviceUri,
  issueDeviceCertificate,
  listDeviceCertificates,
  parseDeviceUri,
  type OrganizationAuthorities,
} from './index.js'
import {
  makeDeviceCsr,
  openIdentityFixture,
  openssl,
  organizationWithAuthorities,
  writeFile,
  type IdentityFixture,
} from './test-support.js'
import { toPem } from './x509.js'

test('formats and parses the device URI with one function each', () => {
  const organizationId = randomUUID()
  const deviceId = randomUUID()
  const uri = deviceUri(organizationId, deviceId)
  assert.equal(uri, `urn:ward:device:${organizationId}:${deviceId}`)
  assert.deepEqual(parseDeviceUri(uri), { organizationId, deviceId })
  for (const other of [
    `urn:ward:device:${organizationId}`,
    `urn:ward:device:${organizationId}:${deviceId}:x`,
    `urn:ward:device:${organizationId.toUpperCase()}:${deviceId}`,
    `URN:ward:device:${organizationId}:${deviceId}`,
    `urn:ward:patient:${organizationId}:${deviceId}`,
  ]) {
    assert.equal(parseDeviceUri(other), undefined, other)
  }
  assert.throws(() => deviceUri(organizationId, 'PO-0001'), { code: 'ERR_INPUT_INVALID' })
})

for (const { dialect, skip } of dialects) {
  describe(`device certificates on ${dialect}`, { skip }, () => {
    let fixture: IdentityFixture
    let organization: Organization
    let authorities: OrganizationAuthorities
    let rootPath: string
    let issuingPath: string

    before(async () => {
      const directory = temporaryDirectory()
      fixture = await openIdentityFixture(await freshDatabase(dialect, directory.path), directory)
      ;({ organization, authorities } = await organizationWithAuthorities(
        fixture.store,
        fixture.provider,
        'acme',
      ))
      rootPath = writeFile(fixture.directory, 'root.pem', authorities.root.certificatePem)
      issuingPath = writeFile(fixture.directory, 'issuing.pem', authorities.issuing.certificatePem)
    })
    after(() => fixture?.close())

    function issue(input: {
      deviceId: string
      serial: string
      csrPem: string
      validityDays?: number
    }) {
      return fixture.store.transaction((tx) =>
        issueDeviceCertificate(tx, fixture.provider, { organizationId: organization.id, ...input }),
      )
    }

    test('issues a client-only certificate naming the device, which openssl verifies under the root', async () => {
      const deviceId = randomUUID()
      const device = await makeDeviceCsr(fixture.directory, 'PO-0001')
      const issued = await issue({ deviceId, serial: 'PO-0001', csrPem: device.csrPem })
      const certificate = writeFile(fixture.directory, 'po-0001.pem', issued.certificatePem)

      const verified = await openssl(
        [
          'verify',
          '-CAfile',
          rootPath,
          '-untrusted',
          issuingPath,
          '-purpose',
          'sslclient',
          certificate,
        ],
        fixture.directory,
      )
      assert.match(verified, /: OK/)
      const serverUse = await openssl(
        [
          'verify',
          '-CAfile',
          rootPath,
          '-untrusted',
          issuingPath,
          '-purpose',
          'sslserver',
          certificate,
        ],
        fixture.directory,
      ).catch((error: Error) => error.message)
      assert.match(serverUse, /unsuitable certificate purpose/)

      const text = await openssl(['x509', '-in', certificate, '-noout', '-text'], fixture.directory)
      assert.match(text, /Subject: CN = PO-0001\n/)
      assert.match(text, /Issuer: DC = test, DC = ward, O = acme, CN = Ward device issuing CA/)
      assert.match(
        text,
        new RegExp(
          `Subject Alternative Name: \\n\\s+URI:urn:ward:device:${organization.id}:${deviceId}\\n`,
        ),
      )
      assert.match(text, /Extended Key Usage: \n\s+TLS Web Client Authentication\n/)
      assert.match(text, /Key Usage: critical\n\s+Digital Signature\n/)
      assert.match(text, /Basic Constraints: critical\n\s+CA:FALSE\n/)
      assert.match(text, /ASN1 OID: prime256v1/)
      const authorityKeyId = /Authority Key Identifier: \n\s+([0-9A-F:]+)/.exec(text)?.[1]
      assert.equal(
        authorityKeyId?.replace(/:/g, '').toLowerCase(),
        authorities.issuing.subjectKeyIdentifier,
      )
      const serial = /Serial Number:\n\s+([0-9a-f:]+)/.exec(text)?.[1]?.replace(/:/g, '')
      assert.equal(serial?.replace(/^00/, ''), issued.serialNumber)
      assert.ok(issued.serialNumber.length >= 30 && issued.serialNumber.length <= 32)

      const fingerprint = await openssl(
        ['x509', '-in', certificate, '-noout', '-fingerprint', '-sha256'],
        fixture.directory,
      )
      assert.equal(
        fingerprint.trim().split('=')[1]?.replace(/:/g, '').toLowerCase(),
        issued.fingerprintSha256,
      )
      const days = (Date.parse(issued.notAfter) - Date.parse(issued.notBefore)) / 86_400_000
      assert.ok(days > 365 && days < 365.01, `valid for ${days} days`)
      assert.equal(issued.chainPem, issued.certificatePem + authorities.issuing.certificatePem)
      assert.equal(issued.status, 'active')
      assert.equal(issued.deviceSerial, 'PO-0001')
    })

    test('ignores the subject and extensions a CSR asks for', async () => {
      const deviceId = randomUUID()
      const requested = `${fixture.directory}/greedy`
      await openssl(
        [
          'req',
          '-new',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-256',
          '-nodes',
          '-keyout',
          `${requested}.key`,
          '-out',
          `${requested}.csr`,
          '-subj',
          '/CN=admin/O=Another Org',
          '-addext',
          'basicConstraints=critical,CA:TRUE',
          '-addext',
          'keyUsage=critical,keyCertSign,cRLSign',
          '-addext',
          'extendedKeyUsage=serverAuth,codeSigning',
          '-addext',
          'subjectAltName=DNS:ward.test,URI:urn:ward:device:x:y',
        ],
        fixture.directory,
      )
      const issued = await issue({
        deviceId,
        serial: 'PO-0002',
        csrPem: readFileSync(`${requested}.csr`, 'utf8'),
      })
      const certificate = writeFile(fixture.directory, 'greedy.pem', issued.certificatePem)
      const text = await openssl(['x509', '-in', certificate, '-noout', '-text'], fixture.directory)
      assert.match(text, /Subject: CN = PO-0002\n/)
      assert.match(text, /CA:FALSE/)
      assert.doesNotMatch(text, /Certificate Sign|Server Authentication|Code Signing|DNS:|Another/)
      assert.match(text, new RegExp(`URI:urn:ward:device:${organization.id}:${deviceId}\\n`))
    })

    test('renews by issuing another certificate while the first stays valid', async () => {
      const deviceId = randomUUID()
      const first = await issue({
        deviceId,
        serial: 'PO-0003',
        csrPem: (await makeDeviceCsr(fixture.directory, 'PO-0003')).csrPem,
      })
      const second = await issue({
        deviceId,
        serial: 'PO-0003',
        csrPem: (await makeDeviceCsr(fixture.directory, 'PO-0003')).csrPem,
        validityDays: 30,
      })
      assert.notEqual(first.serialNumber, second.serialNumber)
      const listed = await listDeviceCertificates(fixture.store.db, organization.id, deviceId)
      assert.deepEqual(
        listed.map((certificate) => [certificate.serialNumber, certificate.status]),
        [
          [first.serialNumber, 'active'],
          [second.serialNumber, 'active'],
        ],
      )
      const row = await fixture.store.db
        .selectFrom('device_certificates')
        .selectAll()
        .where('serial_number', '=', second.serialNumber)
        .executeTakeFirstOrThrow()
      assert.equal(row.device_id, deviceId)
      assert.equal(row.fingerprint_sha256, second.fingerprintSha256)
      assert.equal(row.not_after, second.notAfter)
      assert.equal(row.certificate_pem, second.certificatePem)
    })

    test('refuses a CSR whose self-signature does not verify', async () => {
      const device = await makeDeviceCsr(fixture.directory, 'PO-0004')
      const der = Buffer.from(
        device.csrPem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''),
        'base64',
      )
      der[der.length - 1] = (der[der.length - 1] as number) ^ 0x01
      const tampered = toPem(der, 'CERTIFICATE REQUEST')
      await assert.rejects(issue({ deviceId: randomUUID(), serial: 'PO-0004', csrPem: tampered }), {
        code: 'ERR_CSR_SIGNATURE_INVALID',
        message: 'csr signature does not verify',
      })
    })

    test('refuses a CSR for an RSA or P-384 key', async () => {
      const rsa = await makeDeviceCsr(fixture.directory, 'PO-0005', 'rsa')
      await assert.rejects(
        issue({ deviceId: randomUUID(), serial: 'PO-0005', csrPem: rsa.csrPem }),
        {
          code: 'ERR_KEY_ALGORITHM_UNSUPPORTED',
          message: 'csr key must be ECDSA P-256, not rsa',
        },
      )
      const path = `${fixture.directory}/p384`
      await openssl(
        [
          'req',
          '-new',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-384',
          '-nodes',
          '-keyout',
          `${path}.key`,
          '-out',
          `${path}.csr`,
          '-subj',
          '/CN=PO-0005',
        ],
        fixture.directory,
      )
      await assert.rejects(
        issue({
          deviceId: randomUUID(),
          serial: 'PO-0005',
          csrPem: readFileSync(`${path}.csr`, 'utf8'),
        }),
        {
          code: 'ERR_KEY_ALGORITHM_UNSUPPORTED',
          message: 'csr key must be ECDSA P-256, not ec secp384r1',
        },
      )
    })

    test('refuses garbage, a certificate and smuggled bytes in place of a CSR', async () => {
      const device = await makeDeviceCsr(fixture.directory, 'PO-0006')
      const body = device.csrPem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '')
      const padded = Buffer.concat([Buffer.from(body, 'base64'), Buffer.from([0, 0])])
      for (const [csrPem, message] of [
        ['not a csr', 'csr must hold only PEM blocks labelled CERTIFICATE REQUEST'],
        ['', 'csr holds no PEM block labelled CERTIFICATE REQUEST'],
        [
          authorities.issuing.certificatePem,
          'csr must hold only PEM blocks labelled CERTIFICATE REQUEST',
        ],
        [`${device.csrPem}\n${device.csrPem}`, 'csr holds more than 1 PEM blocks'],
        [
          `${device.csrPem}trailing words`,
          'csr must hold only PEM blocks labelled CERTIFICATE REQUEST',
        ],
        [
          '-----BEGIN CERTIFICATE REQUEST-----\nnot*base64\n-----END CERTIFICATE REQUEST-----',
          'csr holds a PEM block that is not valid base64',
        ],
        [
          toPem(padded, 'CERTIFICATE REQUEST'),
          'csr holds a PEM block that is not one DER structure',
        ],
        [
          toPem(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x01]), 'CERTIFICATE REQUEST'),
          'csr is not a PKCS#10 certificate request',
        ],
        ['x'.repeat(70_000), 'csr is longer than 65536 characters'],
      ] as const) {
        await assert.rejects(issue({ deviceId: randomUUID(), serial: 'PO-0006', csrPem }), {
          code: 'ERR_CSR_INVALID',
          message,
        })
      }
    })

    test('refuses a key already certified for another device', async () => {
      const device = await makeDeviceCsr(fixture.directory, 'PO-0007')
      const deviceId = randomUUID()
      await issue({ deviceId, serial: 'PO-0007', csrPem: device.csrPem })
      await issue({ deviceId, serial: 'PO-0007', csrPem: device.csrPem })
      await assert.rejects(
        issue({ deviceId: randomUUID(), serial: 'PO-0008', csrPem: device.csrPem }),
        {
          code: 'ERR_CSR_INVALID',
          message: 'csr key is already certified for another device',
        },
      )
    })

    test('refuses a serial, device id or validity that Ward cannot certify', async () => {
      const device = await makeDeviceCsr(fixture.directory, 'PO-0009')
      for (const [input, field] of [
        [{ deviceId: randomUUID(), serial: 'CN=x, O=y' }, 'serial'],
        [{ deviceId: randomUUID(), serial: '#00' }, 'serial'],
        [{ deviceId: randomUUID(), serial: 'x'.repeat(65) }, 'serial'],
        [{ deviceId: 'PO-0009', serial: 'PO-0009' }, 'deviceId'],
        [{ deviceId: randomUUID(), serial: 'PO-0009', validityDays: 0 }, 'validityDays'],
        [{ deviceId: randomUUID(), serial: 'PO-0009', validityDays: 826 }, 'validityDays'],
        [{ deviceId: randomUUID(), serial: 'PO-0009', validityDays: 1.5 }, 'validityDays'],
      ] as const) {
        await assert.rejects(
          issue({ ...input, csrPem: device.csrPem }),
          (error: { code: string; details: { field: string } }) =>
            error.code === 'ERR_INPUT_INVALID' && error.details.field === field,
        )
      }
    })
  })
}
