import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'

import { dialects, freshDatabase, temporaryDirectory } from '../../test/support.js'
import { AuthenticationKeys } from '../keys/index.js'
import { insertOrganization, type Organization } from '../tenancy/index.js'
import {
  listManufacturerAuthorities,
  maxManufacturerCrlBytes,
  registerManufacturerAuthority,
  uploadManufacturerCrl,
  verifyFactoryIdentity,
} from './index.js'
import {
  factorySignatureOver,
  openIdentityFixture,
  testFactoryIdentity,
  testManufacturerCa,
  testManufacturerCrl,
  type IdentityFixture,
  type TestFactoryIdentity,
  type TestManufacturerCa,
} from './test-support.js'
import { toPem, x509 } from './x509.js'

const dayMs = 86_400_000
const signedBytes = new TextEncoder().encode('the DER bytes of a device CSR')

for (const { dialect, skip } of dialects) {
  describe(`manufacturer CRLs and authenticated manufacturer rows on ${dialect}`, { skip }, () => {
    let fixture: IdentityFixture
    let organization: Organization
    let keys: AuthenticationKeys

    before(async () => {
      const scratch = temporaryDirectory()
      fixture = await openIdentityFixture(await freshDatabase(dialect, scratch.path), scratch)
      keys = new AuthenticationKeys(fixture.provider)
      organization = await fixture.store.transaction((tx) =>
        insertOrganization(tx, { slug: 'acme', name: 'Acme' }),
      )
    })
    after(() => fixture?.close())

    const key = () =>
      fixture.store.transaction((tx) => keys.key(tx, organization.id, 'manufacturer-authority'))

    /** A fresh manufacturer, registered under a name of its own. */
    async function manufacturer(
      options: { crlSign?: boolean } = {},
    ): Promise<{ name: string; ca: TestManufacturerCa }> {
      const name = `Maker ${randomUUID().slice(0, 8)}`
      const ca = await testManufacturerCa(`CN=${name} Factory CA`, options)
      await fixture.store.transaction(async (tx) =>
        registerManufacturerAuthority(
          tx,
          await keys.key(tx, organization.id, 'manufacturer-authority'),
          {
            organizationId: organization.id,
            certificatePem: ca.certificatePem,
            name,
          },
        ),
      )
      return { name, ca }
    }

    async function upload(name: string, crl: string | Uint8Array) {
      return fixture.store.transaction(async (tx) =>
        uploadManufacturerCrl(tx, await keys.key(tx, organization.id, 'manufacturer-authority'), {
          organizationId: organization.id,
          name,
          crl,
        }),
      )
    }

    async function verify(factory: TestFactoryIdentity) {
      return verifyFactoryIdentity(fixture.store.db, await key(), {
        organizationId: organization.id,
        factoryCertificatePem: factory.certificatePem,
        signatureBase64: factorySignatureOver(factory, signedBytes),
        signedBytes,
      })
    }

    async function listed(name: string) {
      const all = await listManufacturerAuthorities(fixture.store.db, await key(), organization.id)
      return all.filter((authority) => authority.name === name)
    }

    test('stores a CRL its manufacturer CA signed, and refuses the factory certificates it lists', async () => {
      const { name, ca } = await manufacturer()
      const revoked = await testFactoryIdentity(ca, 'PO-1001')
      const standing = await testFactoryIdentity(ca, 'PO-1002')
      assert.equal((await verify(revoked)).revocation.status, 'none')

      const crl = await testManufacturerCrl(ca, { number: 7, revoked: [revoked.serialNumber] })
      const stored = await upload(name, crl)
      assert.equal(stored.number, '7')
      assert.equal(stored.entries, 1)
      assert.equal(stored.stale, false)
      assert.equal(stored.authorities.length, 1)
      const [authority] = await listed(name)
      assert.equal(authority?.authentic, true)
      assert.equal(authority?.crl?.number, '7')

      await assert.rejects(verify(revoked), {
        code: 'ERR_CERTIFICATE_REVOKED',
        message: `factoryCertificate is revoked by its manufacturer (serial ${revoked.serialNumber} is on CRL number 7)`,
      })
      const check = await verify(standing)
      assert.equal(check.deviceSerial, 'PO-1002')
      assert.deepEqual(check.revocation, {
        status: 'current',
        crlNumber: '7',
        nextUpdate: stored.nextUpdate,
        certificateSerial: standing.serialNumber,
      })

      // The same CRL again, as a retried upload sends it, and DER as well as PEM.
      assert.equal((await upload(name, crl)).number, '7')
      const der = new x509.X509Crl(crl).rawData
      assert.equal((await upload(name, new Uint8Array(der))).number, '7')
      // A newer CRL that no longer lists it (the manufacturer lifted a hold) replaces it.
      await upload(name, await testManufacturerCrl(ca, { number: 8 }))
      assert.equal((await verify(revoked)).revocation.crlNumber, '8')
    })

    test('refuses a CRL another key signed, even under the manufacturer CA name', async () => {
      const { name, ca } = await manufacturer()
      const impostor = await testManufacturerCa(ca.certificate.subject)
      await assert.rejects(upload(name, await testManufacturerCrl(impostor, { number: 1 })), {
        code: 'ERR_SIGNATURE_INVALID',
        message: `crl is not signed by a registered CA of manufacturer ${name} (its issuer is ${ca.certificate.subject})`,
      })
      const other = await manufacturer()
      await assert.rejects(upload(name, await testManufacturerCrl(other.ca, { number: 1 })), {
        code: 'ERR_SIGNATURE_INVALID',
      })
      // Its own key, but under another issuer name.
      await assert.rejects(
        upload(name, await testManufacturerCrl(ca, { number: 1, issuer: 'CN=Someone Else' })),
        { code: 'ERR_SIGNATURE_INVALID' },
      )
      await assert.rejects(upload('No Such Maker', await testManufacturerCrl(ca)), {
        code: 'ERR_AUTHORITY_NOT_FOUND',
      })
      assert.equal((await listed(name))[0]?.crl, null)
    })

    test('refuses a CRL number below the stored one, naming both', async () => {
      const { name, ca } = await manufacturer()
      await upload(name, await testManufacturerCrl(ca, { number: 5 }))
      await assert.rejects(upload(name, await testManufacturerCrl(ca, { number: 4 })), {
        code: 'ERR_CRL_ROLLBACK',
        message:
          "crl number 4 is lower than the stored CRL's number 5: refusing a rollback to an older CRL",
      })
      assert.equal((await listed(name))[0]?.crl?.number, '5')

      // The same CRL again is fine; another one under the same number is not newer.
      const six = await testManufacturerCrl(ca, { number: 6, revoked: ['01'] })
      await upload(name, six)
      await upload(name, six)
      await assert.rejects(upload(name, await testManufacturerCrl(ca, { number: 6 })), {
        code: 'ERR_CRL_ROLLBACK',
        message: /is the stored CRL's number, but the CRL differs/,
      })
    })

    test('refuses a CRL of a CA whose key usage does not allow signing CRLs, saying so', async () => {
      const { name, ca } = await manufacturer({ crlSign: false })
      await assert.rejects(upload(name, await testManufacturerCrl(ca)), {
        code: 'ERR_SIGNATURE_INVALID',
        message: /may not sign CRLs: its key usage lacks cRLSign/,
      })
    })

    test('refuses a CRL whose thisUpdate is in the future', async () => {
      const { name, ca } = await manufacturer()
      // CRL times have whole seconds.
      const thisUpdate = new Date(Math.floor(Date.now() / 1000) * 1000 + dayMs)
      await assert.rejects(upload(name, await testManufacturerCrl(ca, { thisUpdate })), {
        code: 'ERR_CRL_INVALID',
        message: new RegExp(`^crl thisUpdate ${thisUpdate.toISOString()} is in the future`),
      })
    })

    test('refuses garbage, other PEM, and CRLs that are not complete or carry no number', async () => {
      const { name, ca } = await manufacturer()
      const refusals: [string | Uint8Array, RegExp][] = [
        [new Uint8Array(randomBytes(300)), /^crl is not one DER structure$/],
        [toPem(randomBytes(300), 'X509 CRL'), /^crl holds a PEM block that is not one DER/],
        [ca.certificatePem, /^crl must hold only PEM blocks labelled X509 CRL$/],
        [toPem(ca.certificate.rawData, 'X509 CRL'), /^crl is not an X.509 CRL$/],
        ['', /^crl holds no PEM block labelled X509 CRL$/],
        [
          await testManufacturerCrl(ca, { bare: true }),
          /^crl carries no CRL number \(RFC 5280, 5\.2\.3\)$/,
        ],
        [
          await testManufacturerCrl(ca, {
            extensions: [new x509.Extension('2.5.29.27', true, new Uint8Array([2, 1, 1]))],
          }),
          /^crl is a delta CRL/,
        ],
        [
          await testManufacturerCrl(ca, {
            extensions: [new x509.Extension('2.5.29.28', true, new Uint8Array([0x30, 0]))],
          }),
          /^crl has an issuing distribution point/,
        ],
        [
          await testManufacturerCrl(ca, {
            extensions: [new x509.Extension('1.3.6.1.4.1.99999.1', true, new Uint8Array([5, 0]))],
          }),
          /^crl has a critical extension Ward does not know \(1\.3\.6\.1\.4\.1\.99999\.1\)$/,
        ],
      ]
      for (const [crl, message] of refusals) {
        await assert.rejects(upload(name, crl), { code: 'ERR_CRL_INVALID', message })
      }
      assert.equal((await listed(name))[0]?.crl, null)
    })

    test('takes a CRL of thousands of entries, and refuses one larger than the limit', async () => {
      const { name, ca } = await manufacturer()
      const serial = () => `1${randomBytes(15).toString('hex')}`
      const many = await testManufacturerCrl(ca, {
        number: 1,
        revoked: Array.from({ length: 3000 }, serial),
      })
      assert.equal((await upload(name, many)).entries, 3000)

      // Real entries, signed by the manufacturer CA, each with a large non-critical extension,
      // until the CRL passes the limit.
      const padding = new x509.Extension('1.3.6.1.4.1.99999.2', false, new Uint8Array(2048))
      const crl = await testManufacturerCrl(ca, {
        number: 2,
        revoked: Array.from({ length: 300 }, serial),
        entryExtensions: [padding],
      })
      assert.ok(new x509.X509Crl(crl).rawData.byteLength > maxManufacturerCrlBytes)
      await assert.rejects(upload(name, crl), {
        code: 'ERR_PAYLOAD_TOO_LARGE',
        message: 'crl is larger than 512 KiB of DER',
      })
      await assert.rejects(upload(name, new Uint8Array(maxManufacturerCrlBytes + 1)), {
        code: 'ERR_PAYLOAD_TOO_LARGE',
      })
      assert.equal((await listed(name))[0]?.crl?.number, '1')
    })

    test('stores a CRL already past its nextUpdate, and says the check was stale', async () => {
      const { name, ca } = await manufacturer()
      const crl = await testManufacturerCrl(ca, {
        number: 3,
        thisUpdate: new Date(Date.now() - 10 * dayMs),
        nextUpdate: new Date(Date.now() - 3 * dayMs),
      })
      assert.equal((await upload(name, crl)).stale, true)
      const check = await verify(await testFactoryIdentity(ca, 'PO-1010'))
      assert.equal(check.revocation.status, 'stale')
    })

    test('never trusts a manufacturer row written or changed in the database', async () => {
      const planted = await testManufacturerCa('CN=Planted CA')
      const plantedId = randomUUID()
      const row = {
        id: plantedId,
        organization_id: organization.id,
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
      }
      await fixture.store.db
        .insertInto('manufacturer_authorities')
        .values({ ...row, mac: null })
        .execute()
      const plantedFactory = await testFactoryIdentity(planted, 'PO-1020')
      await assert.rejects(verify(plantedFactory), { code: 'ERR_CERTIFICATE_UNTRUSTED' })
      assert.equal((await listed('Planted'))[0]?.authentic, false)
      await assert.rejects(upload('Planted', await testManufacturerCrl(planted)), {
        code: 'ERR_AUTHORITY_NOT_FOUND',
        message: /1 failed its integrity check/,
      })

      // A real row's code copied onto the planted one does not make it trusted.
      const { name, ca } = await manufacturer()
      const real = await fixture.store.db
        .selectFrom('manufacturer_authorities')
        .selectAll()
        .where('name', '=', name)
        .executeTakeFirstOrThrow()
      await fixture.store.db
        .updateTable('manufacturer_authorities')
        .set({ mac: real.mac })
        .where('id', '=', plantedId)
        .execute()
      await assert.rejects(verify(plantedFactory), { code: 'ERR_CERTIFICATE_UNTRUSTED' })

      // Swapping a registered row's certificate for the attacker's breaks its check.
      await fixture.store.db
        .updateTable('manufacturer_authorities')
        .set({ certificate_pem: planted.certificatePem, subject: planted.certificate.subject })
        .where('id', '=', real.id)
        .execute()
      await assert.rejects(verify(plantedFactory), { code: 'ERR_CERTIFICATE_UNTRUSTED' })
      await assert.rejects(verify(await testFactoryIdentity(ca, 'PO-1021')), {
        code: 'ERR_CERTIFICATE_UNTRUSTED',
      })
      assert.equal((await listed(name))[0]?.authentic, false)

      // So does removing the CRL of a row that has one.
      const second = await manufacturer()
      const revoked = await testFactoryIdentity(second.ca, 'PO-1022')
      await upload(
        second.name,
        await testManufacturerCrl(second.ca, { revoked: [revoked.serialNumber] }),
      )
      await fixture.store.db
        .updateTable('manufacturer_authorities')
        .set({ crl_der: null, crl_number: null })
        .where('name', '=', second.name)
        .execute()
      await assert.rejects(verify(revoked), { code: 'ERR_CERTIFICATE_UNTRUSTED' })
      assert.equal((await listed(second.name))[0]?.authentic, false)
    })
  })
}
