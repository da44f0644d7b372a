import assert from 'node:assert/strict'
import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'

import { dialects } from '../../test/support.js'
import { systemContext } from '../context.js'
import {
  createTestOrganization,
  httpsRequest,
  startTestWard,
  type TestOrganization,
  type TestWard,
} from '../ingest/test-support.js'
import { certificateRequestDer } from './index.js'
import {
  factorySignatureOver,
  makeDeviceCsr,
  testFactoryIdentity,
  testManufacturerCa,
  testManufacturerCrl,
  type TestFactoryIdentity,
  type TestManufacturerCa,
} from './test-support.js'

const dayMs = 86_400_000
const context = systemContext('test')

/** The audit events of `slug`'s log, parsed, oldest first. */
async function auditEvents(testWard: TestWard, slug: string) {
  const rows = await testWard.ward.store.db
    .selectFrom('audit_entries')
    .innerJoin('audit_logs', 'audit_logs.id', 'audit_entries.log_id')
    .select('audit_entries.body')
    .where('audit_logs.name', '=', slug)
    .orderBy('audit_entries.idx')
    .execute()
  return rows.map(
    (row) =>
      JSON.parse(Buffer.from(row.body).toString('utf8')) as {
        type: { code: string }
        subtype: { code: string }
        outcome: string
        outcomeDescription?: string
        entity: { type: string; what: string; detail?: Record<string, unknown> }[]
      },
  )
}

/** A device `serial` of the organization, not enrolled yet. */
async function provisioned(testWard: TestWard, organization: TestOrganization, serial: string) {
  await testWard.ward.fleet.createDevice(context, organization.slug, {
    serial,
    model: 'Pulse oximeter',
  })
}

/** Enrolls `serial` over HTTPS with its factory identity signing its CSR. */
async function enrollWithFactory(
  testWard: TestWard,
  organization: TestOrganization,
  serial: string,
  factory: TestFactoryIdentity,
) {
  const material = await makeDeviceCsr(testWard.directory, serial)
  return httpsRequest(testWard.running.url, '/v1/enroll', {
    serverName: organization.serverName,
    ca: testWard.serverCaPem,
    body: {
      serial,
      csr: material.csrPem,
      factoryCertificate: factory.certificatePem,
      factorySignature: factorySignatureOver(factory, certificateRequestDer(material.csrPem)),
    },
  })
}

/** A manufacturer registered in the organization under a name of its own. */
async function registeredManufacturer(
  testWard: TestWard,
  organization: TestOrganization,
): Promise<{ name: string; ca: TestManufacturerCa; id: string }> {
  const name = `Maker ${randomUUID().slice(0, 8)}`
  const ca = await testManufacturerCa(`CN=${name} Factory CA`)
  const authority = await testWard.ward.fleet.registerManufacturer(context, organization.slug, {
    name,
    certificatePem: ca.certificatePem,
  })
  return { name, ca, id: authority.id }
}

const serial = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`

for (const { dialect, skip } of dialects) {
  describe(`factory enrollment over HTTPS with manufacturer CRLs on ${dialect}`, { skip }, () => {
    let testWard: TestWard
    let acme: TestOrganization

    before(async () => {
      testWard = await startTestWard(dialect)
      acme = await createTestOrganization(testWard.ward, 'acme')
    })
    after(() => testWard?.close())

    test('refuses a factory certificate its manufacturer revoked, saying so, and audits why', async () => {
      const { name, ca, id } = await registeredManufacturer(testWard, acme)
      const revokedSerial = serial('PO')
      const standingSerial = serial('PO')
      await provisioned(testWard, acme, revokedSerial)
      await provisioned(testWard, acme, standingSerial)
      const revoked = await testFactoryIdentity(ca, revokedSerial)
      const standing = await testFactoryIdentity(ca, standingSerial)

      const upload = await testWard.ward.fleet.uploadManufacturerCrl(context, acme.slug, {
        name,
        crl: await testManufacturerCrl(ca, { number: 12, revoked: [revoked.serialNumber] }),
      })
      assert.equal(upload.number, '12')

      const refused = await enrollWithFactory(testWard, acme, revokedSerial, revoked)
      assert.equal(refused.status, 403, refused.body)
      assert.deepEqual(
        {
          code: (refused.json() as { code: string }).code,
          detail: (refused.json() as { detail: string }).detail,
        },
        {
          code: 'ERR_ENROLLMENT_REFUSED',
          detail:
            'enrollment refused for this device: its factory certificate is revoked by its manufacturer',
        },
      )
      const accepted = await enrollWithFactory(testWard, acme, standingSerial, standing)
      assert.equal(accepted.status, 201, accepted.body)

      const events = await auditEvents(testWard, acme.slug)
      const uploaded = events.find((event) => event.subtype.code === 'manufacturer-crl.upload')
      assert.deepEqual(uploaded?.entity, [
        {
          type: 'ManufacturerCA',
          what: id,
          detail: {
            crlNumber: '12',
            thisUpdate: upload.thisUpdate,
            nextUpdate: upload.nextUpdate,
            revokedCertificates: 1,
            stale: false,
          },
        },
      ])
      const enrollments = events.filter((event) => event.subtype.code === 'device.enroll')
      const alert = enrollments.find(
        (event) => event.outcomeDescription === 'factory-certificate-revoked',
      )
      assert.equal(alert?.type.code, '110113')
      assert.equal(alert?.outcome, '4')
      assert.deepEqual(alert?.entity[0]?.detail, {
        proof: 'factory-identity',
        factoryCertificate: revoked.serialNumber,
        crlNumber: '12',
      })
      const enrolled = enrollments.at(-1)
      assert.equal(enrolled?.outcome, '0')
      assert.equal(enrolled?.entity[0]?.detail?.['manufacturerCrl'], 'current')
      assert.equal(enrolled?.entity[0]?.detail?.['factoryCertificate'], standing.serialNumber)
    })

    test('enrolls under a CRL past its nextUpdate by default, recording the warning', async () => {
      const { name, ca } = await registeredManufacturer(testWard, acme)
      await testWard.ward.fleet.uploadManufacturerCrl(context, acme.slug, {
        name,
        crl: await testManufacturerCrl(ca, {
          number: 2,
          thisUpdate: new Date(Date.now() - 9 * dayMs),
          nextUpdate: new Date(Date.now() - 2 * dayMs),
        }),
      })
      const device = serial('PO')
      await provisioned(testWard, acme, device)
      const answer = await enrollWithFactory(
        testWard,
        acme,
        device,
        await testFactoryIdentity(ca, device),
      )
      assert.equal(answer.status, 201, answer.body)
      const enrolled = (await auditEvents(testWard, acme.slug))
        .filter((event) => event.subtype.code === 'device.enroll')
        .at(-1)
      assert.equal(enrolled?.entity[0]?.detail?.['manufacturerCrl'], 'stale')
      assert.equal(enrolled?.entity[0]?.detail?.['crlNumber'], '2')
    })

    test('refuses an enrollment token row written straight into the database', async () => {
      const device = serial('SN')
      await provisioned(testWard, acme, device)
      const token = `ward_enr_${randomBytes(24).toString('base64url')}`
      const deviceId = (await testWard.ward.fleet.listDevices(acme.slug)).find(
        (each) => each.serial === device,
      )?.id
      assert.ok(deviceId)
      const expiresAt = new Date(Date.now() + dayMs).toISOString()
      const sha256 = createHash('sha256').update(token).digest('hex')
      // As tokens were stored before digests were keyed, and keyed under a key of one's own.
      for (const tokenHash of [
        sha256,
        createHmac('sha256', randomBytes(32))
          .update(JSON.stringify(['enrollment-token v1', acme.id, deviceId, expiresAt, sha256]))
          .digest('hex'),
      ]) {
        await testWard.ward.store.db
          .insertInto('enrollment_tokens')
          .values({
            id: randomUUID(),
            organization_id: acme.id,
            device_id: deviceId,
            token_hash: tokenHash,
            expires_at: expiresAt,
            used_at: null,
            created_at: new Date().toISOString(),
          })
          .execute()
        const material = await makeDeviceCsr(testWard.directory, device)
        const answer = await httpsRequest(testWard.running.url, '/v1/enroll', {
          serverName: acme.serverName,
          ca: testWard.serverCaPem,
          body: { serial: device, csr: material.csrPem, token },
        })
        assert.equal(answer.status, 403, answer.body)
        assert.equal((answer.json() as { code: string }).code, 'ERR_ENROLLMENT_REFUSED')
      }

      // A token Ward issued still enrolls, beside the planted rows.
      const issued = await testWard.ward.fleet.issueEnrollmentToken(context, acme.slug, device)
      const material = await makeDeviceCsr(testWard.directory, device)
      const answer = await httpsRequest(testWard.running.url, '/v1/enroll', {
        serverName: acme.serverName,
        ca: testWard.serverCaPem,
        body: { serial: device, csr: material.csrPem, token: issued.token },
      })
      assert.equal(answer.status, 201, answer.body)
    })

    test('refuses a manufacturer CA planted or edited in the database, with a security alert', async () => {
      const planted = await testManufacturerCa('CN=Planted Factory CA')
      const plantedId = randomUUID()
      await testWard.ward.store.db
        .insertInto('manufacturer_authorities')
        .values({
          id: plantedId,
          organization_id: acme.id,
          name: 'Planted',
          subject: planted.certificate.subject,
          subject_key_identifier: null,
          fingerprint_sha256: randomBytes(32).toString('hex'),
          certificate_pem: planted.certificatePem,
          not_before: planted.certificate.notBefore.toISOString(),
          not_after: planted.certificate.notAfter.toISOString(),
          created_at: new Date().toISOString(),
          crl_der: null,
          crl_number: null,
          crl_this_update: null,
          crl_next_update: null,
          crl_uploaded_at: null,
          mac: new Uint8Array(randomBytes(32)),
        })
        .execute()
      const device = serial('PO')
      await provisioned(testWard, acme, device)
      const answer = await enrollWithFactory(
        testWard,
        acme,
        device,
        await testFactoryIdentity(planted, device),
      )
      assert.equal(answer.status, 403, answer.body)
      assert.equal(
        (answer.json() as { detail: string }).detail,
        'enrollment refused for this device',
      )
      const alerts = (await auditEvents(testWard, acme.slug)).filter(
        (event) => event.subtype.code === 'manufacturer-ca.integrity',
      )
      assert.ok(alerts.length >= 1)
      assert.equal(alerts.at(-1)?.type.code, '110113')
      assert.equal(alerts.at(-1)?.outcome, '8')
      assert.deepEqual(alerts.at(-1)?.entity, [{ type: 'ManufacturerCA', what: plantedId }])

      // A registered CA whose row was edited is no longer trusted either, and says so.
      const { ca, id } = await registeredManufacturer(testWard, acme)
      await testWard.ward.store.db
        .updateTable('manufacturer_authorities')
        .set({ name: 'Renamed outside Ward' })
        .where('id', '=', id)
        .execute()
      const second = serial('PO')
      await provisioned(testWard, acme, second)
      const edited = await enrollWithFactory(
        testWard,
        acme,
        second,
        await testFactoryIdentity(ca, second),
      )
      assert.equal(edited.status, 403, edited.body)
      const listed = await testWard.ward.fleet.listManufacturers(context, acme.slug)
      assert.equal(listed.find((authority) => authority.id === id)?.authentic, false)
      const flagged = (await auditEvents(testWard, acme.slug))
        .filter((event) => event.subtype.code === 'manufacturer-ca.integrity')
        .map((event) => event.entity[0]?.what)
      assert.ok(flagged.includes(id))
      await assert.rejects(
        testWard.ward.fleet.uploadManufacturerCrl(context, acme.slug, {
          name: 'Renamed outside Ward',
          crl: await testManufacturerCrl(ca),
        }),
        { code: 'ERR_AUTHORITY_NOT_FOUND' },
      )
    })
  })

  describe(
    `factory enrollment under WARD_DEVICE_MANUFACTURER_CRL=required on ${dialect}`,
    { skip },
    () => {
      let testWard: TestWard
      let acme: TestOrganization

      before(async () => {
        testWard = await startTestWard(dialect, { WARD_DEVICE_MANUFACTURER_CRL: 'required' })
        acme = await createTestOrganization(testWard.ward, 'acme')
      })
      after(() => testWard?.close())

      test('refuses without a CRL or with a stale one, and enrolls under a current one', async () => {
        const { name, ca } = await registeredManufacturer(testWard, acme)
        const device = serial('PO')
        await provisioned(testWard, acme, device)
        const factory = await testFactoryIdentity(ca, device)

        const none = await enrollWithFactory(testWard, acme, device, factory)
        assert.equal(none.status, 403, none.body)
        assert.match((none.json() as { detail: string }).detail, /holds no CRL of its manufacturer/)

        await testWard.ward.fleet.uploadManufacturerCrl(context, acme.slug, {
          name,
          crl: await testManufacturerCrl(ca, {
            number: 1,
            thisUpdate: new Date(Date.now() - 9 * dayMs),
            nextUpdate: new Date(Date.now() - dayMs),
          }),
        })
        const stale = await enrollWithFactory(testWard, acme, device, factory)
        assert.equal(stale.status, 403, stale.body)
        assert.match((stale.json() as { detail: string }).detail, /past its nextUpdate/)

        await testWard.ward.fleet.uploadManufacturerCrl(context, acme.slug, {
          name,
          crl: await testManufacturerCrl(ca, { number: 2 }),
        })
        const current = await enrollWithFactory(testWard, acme, device, factory)
        assert.equal(current.status, 201, current.body)

        const reasons = (await auditEvents(testWard, acme.slug))
          .filter((event) => event.subtype.code === 'device.enroll' && event.outcome === '4')
          .map((event) => event.outcomeDescription)
        assert.deepEqual(reasons, ['manufacturer-crl-missing', 'manufacturer-crl-stale'])
      })
    },
  )
}
