import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'

import { dialects, freshDatabase, temporaryDirectory } from '../../test/support.js'
import type { Organization } from '../tenancy/index.js'
import { currentRootCrl } from './authorities.js'
import {
  issueDeviceCertificate,
  issuingCrl,
  listDeviceCertificates,
  reinstateDeviceCertificates,
  revokeCertificate,
  revokeDeviceCertificates,
  suspendDeviceCertificates,
  type IssuedDeviceCertificate,
  type OrganizationAuthorities,
} from './index.js'
import {
  makeDeviceCsr,
  openIdentityFixture,
  openssl,
  organizationWithAuthorities,
  runOpenssl,
  writeFile,
  type IdentityFixture,
} from './test-support.js'

/** The serial numbers an `openssl crl -text` listing holds, with the reason of each. */
function listed(text: string): Map<string, string> {
  const entries = new Map<string, string>()
  for (const entry of text.split('Serial Number: ').slice(1)) {
    const serial = /^[0-9A-F]+/.exec(entry)?.[0] ?? ''
    const reason = /CRL Reason Code: \n\s+([^\n]+)/.exec(entry)?.[1] ?? ''
    entries.set(serial.toLowerCase().replace(/^00/, ''), reason.trim())
  }
  return entries
}

for (const { dialect, skip } of dialects) {
  describe(`revocation on ${dialect}`, { skip }, () => {
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

    async function issue(deviceId: string, serial: string): Promise<IssuedDeviceCertificate> {
      const device = await makeDeviceCsr(fixture.directory, serial)
      return fixture.store.transaction((tx) =>
        issueDeviceCertificate(tx, fixture.provider, {
          organizationId: organization.id,
          deviceId,
          serial,
          csrPem: device.csrPem,
        }),
      )
    }

    async function crlText(): Promise<{ path: string; text: string }> {
      const crl = await fixture.store.transaction((tx) =>
        issuingCrl(tx, fixture.provider, organization.id),
      )
      const path = writeFile(fixture.directory, `crl-${crl.number}.pem`, crl.pem)
      return {
        path,
        text: await openssl(['crl', '-in', path, '-noout', '-text'], fixture.directory),
      }
    }

    test('lists a revoked certificate on a CRL that openssl uses to reject it', async () => {
      const revoked = await issue(randomUUID(), 'PO-0101')
      const kept = await issue(randomUUID(), 'PO-0102')
      const result = await fixture.store.transaction((tx) =>
        revokeCertificate(tx, {
          organizationId: organization.id,
          serialNumber: revoked.serialNumber.toUpperCase(),
          reason: 'keyCompromise',
        }),
      )
      assert.equal(result.status, 'revoked')
      assert.equal(result.revocationReason, 'keyCompromise')

      const crl = await crlText()
      assert.match(crl.text, /Version 2 \(0x1\)/)
      assert.match(crl.text, /Issuer: DC = test, DC = ward, O = acme, CN = Ward device issuing CA/)
      assert.match(crl.text, /Last Update: .+\n\s+Next Update: .+/)
      assert.match(crl.text, /X509v3 Authority Key Identifier: \n\s+[0-9A-F:]+/)
      assert.equal(listed(crl.text).get(revoked.serialNumber), 'Key Compromise')
      assert.equal(listed(crl.text).has(kept.serialNumber), false)
      const signature = await runOpenssl(
        ['crl', '-in', crl.path, '-noout', '-CAfile', issuingPath],
        fixture.directory,
      )
      assert.match(signature.stderr + signature.stdout, /verify OK/)

      const rootCrl = await currentRootCrl(fixture.store.db, fixture.provider, organization.id)
      const rootCrlPath = writeFile(fixture.directory, 'root-crl.pem', rootCrl.pem)
      for (const [certificate, expected] of [
        [revoked, /certificate revoked/],
        [kept, /: OK/],
      ] as const) {
        const path = writeFile(
          fixture.directory,
          `${certificate.serialNumber}.pem`,
          certificate.certificatePem,
        )
        for (const check of ['-crl_check', '-crl_check_all']) {
          const result = await runOpenssl(
            [
              'verify',
              check,
              '-CAfile',
              rootPath,
              '-untrusted',
              issuingPath,
              '-CRLfile',
              crl.path,
              '-CRLfile',
              rootCrlPath,
              path,
            ],
            fixture.directory,
          )
          assert.match(
            result.stdout + result.stderr,
            expected,
            `${check} ${certificate.deviceSerial}`,
          )
        }
      }
    })

    test('numbers each CRL one more than the last', async () => {
      const numbers: string[] = []
      for (let round = 0; round < 3; round++) {
        const crl = await crlText()
        numbers.push(/X509v3 CRL Number: \n\s+(\d+)/.exec(crl.text)?.[1] ?? '')
      }
      const [first, second, third] = numbers.map(Number) as [number, number, number]
      assert.ok(first >= 1)
      assert.deepEqual([second, third], [first + 1, first + 2])
    })

    test('lists a suspended certificate on hold until it is reinstated', async () => {
      const deviceId = randomUUID()
      const older = await issue(deviceId, 'PO-0103')
      const newer = await issue(deviceId, 'PO-0103')
      const suspended = await fixture.store.transaction((tx) =>
        suspendDeviceCertificates(tx, organization.id, deviceId),
      )
      assert.deepEqual(
        suspended.map((certificate) => certificate.status),
        ['suspended', 'suspended'],
      )
      let entries = listed((await crlText()).text)
      assert.equal(entries.get(older.serialNumber), 'Certificate Hold')
      assert.equal(entries.get(newer.serialNumber), 'Certificate Hold')

      const reinstated = await fixture.store.transaction((tx) =>
        reinstateDeviceCertificates(tx, organization.id, deviceId),
      )
      assert.equal(reinstated.length, 2)
      entries = listed((await crlText()).text)
      assert.equal(entries.has(older.serialNumber), false)
      assert.equal(entries.has(newer.serialNumber), false)
      const statuses = await listDeviceCertificates(fixture.store.db, organization.id, deviceId)
      assert.deepEqual(
        statuses.map((certificate) => certificate.status),
        ['active', 'active'],
      )
    })

    test('revokes every certificate of a device for good, suspended ones too', async () => {
      const deviceId = randomUUID()
      const first = await issue(deviceId, 'PO-0104')
      await fixture.store.transaction((tx) =>
        suspendDeviceCertificates(tx, organization.id, deviceId),
      )
      const second = await issue(deviceId, 'PO-0104')
      const revoked = await fixture.store.transaction((tx) =>
        revokeDeviceCertificates(tx, organization.id, deviceId, 'cessationOfOperation'),
      )
      assert.deepEqual(
        revoked.map((certificate) => certificate.serialNumber).sort(),
        [first.serialNumber, second.serialNumber].sort(),
      )
      const reinstated = await fixture.store.transaction((tx) =>
        reinstateDeviceCertificates(tx, organization.id, deviceId),
      )
      assert.deepEqual(reinstated, [])
      const entries = listed((await crlText()).text)
      assert.equal(entries.get(first.serialNumber), 'Cessation Of Operation')
      assert.equal(entries.get(second.serialNumber), 'Cessation Of Operation')

      const again = await fixture.store.transaction((tx) =>
        revokeCertificate(tx, {
          organizationId: organization.id,
          serialNumber: first.serialNumber,
          reason: 'superseded',
        }),
      )
      assert.equal(again.revocationReason, 'cessationOfOperation')
    })

    test('finds a certificate to revoke only within its own organization', async () => {
      const certificate = await issue(randomUUID(), 'PO-0105')
      const other = await organizationWithAuthorities(fixture.store, fixture.provider, 'other')
      await assert.rejects(
        fixture.store.transaction((tx) =>
          revokeCertificate(tx, {
            organizationId: other.organization.id,
            serialNumber: certificate.serialNumber,
            reason: 'keyCompromise',
          }),
        ),
        { code: 'ERR_NOT_FOUND' },
      )
      const otherCrl = await fixture.store.transaction((tx) =>
        issuingCrl(tx, fixture.provider, other.organization.id),
      )
      const path = writeFile(fixture.directory, 'other-crl.pem', otherCrl.pem)
      const text = await openssl(['crl', '-in', path, '-noout', '-text'], fixture.directory)
      assert.match(text, /No Revoked Certificates/)
      assert.match(text, /O = other, CN = Ward device issuing CA/)
    })

    test('refuses a reason or serial number it does not know', async () => {
      const certificate = await issue(randomUUID(), 'PO-0106')
      for (const [serialNumber, reason] of [
        [certificate.serialNumber, 'certificateHold'],
        [certificate.serialNumber, 'removeFromCRL'],
        ['not-hex', 'keyCompromise'],
      ] as const) {
        await assert.rejects(
          fixture.store.transaction((tx) =>
            revokeCertificate(tx, {
              organizationId: organization.id,
              serialNumber,
              reason: reason as 'keyCompromise',
            }),
          ),
          { code: 'ERR_INPUT_INVALID' },
        )
      }
      await assert.rejects(
        fixture.store.transaction((tx) =>
          revokeCertificate(tx, {
            organizationId: organization.id,
            serialNumber: '0badc0de',
            reason: 'keyCompromise',
          }),
        ),
        { code: 'ERR_NOT_FOUND' },
      )
    })
  })
}
