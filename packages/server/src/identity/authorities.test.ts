import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'

import { dialects, freshDatabase, temporaryDirectory } from '../../test/support.js'
import { insertOrganization } from '../tenancy/index.js'
import { loadAuthoritySigner } from './authorities.js'
import {
  createOrganizationAuthorities,
  deviceTrust,
  findOrganizationAuthorities,
  issueDeviceCertificate,
} from './index.js'
import {
  makeDeviceCsr,
  openIdentityFixture,
  openssl,
  organizationWithAuthorities,
  writeFile,
  type IdentityFixture,
} from './test-support.js'

const yearMs = 365 * 24 * 3600 * 1000

for (const { dialect, skip } of dialects) {
  describe(`organization authorities on ${dialect}`, { skip }, () => {
    let fixture: IdentityFixture

    before(async () => {
      const directory = temporaryDirectory()
      fixture = await openIdentityFixture(await freshDatabase(dialect, directory.path), directory)
    })
    after(() => fixture?.close())

    test('creates a root and an issuing CA that openssl chains, with the constraints of each', async () => {
      const { authorities } = await organizationWithAuthorities(
        fixture.store,
        fixture.provider,
        'acme',
      )
      const root = writeFile(fixture.directory, 'acme-root.pem', authorities.root.certificatePem)
      const issuing = writeFile(
        fixture.directory,
        'acme-issuing.pem',
        authorities.issuing.certificatePem,
      )
      const verified = await openssl(['verify', '-CAfile', root, issuing], fixture.directory)
      assert.match(verified, /: OK/)

      const rootText = await openssl(['x509', '-in', root, '-noout', '-text'], fixture.directory)
      assert.match(rootText, /Basic Constraints: critical\s+CA:TRUE, pathlen:1/)
      assert.match(rootText, /Key Usage: critical\s+Certificate Sign, CRL Sign\n/)
      assert.match(rootText, /ASN1 OID: prime256v1/)
      assert.match(rootText, /Signature Algorithm: ecdsa-with-SHA256/)
      assert.match(rootText, /Subject: DC = test, DC = ward, O = acme, CN = Ward device root CA/)

      const issuingText = await openssl(
        ['x509', '-in', issuing, '-noout', '-text'],
        fixture.directory,
      )
      assert.match(issuingText, /Basic Constraints: critical\s+CA:TRUE, pathlen:0/)
      assert.match(issuingText, /Key Usage: critical\s+Certificate Sign, CRL Sign\n/)
      assert.match(issuingText, /Issuer: DC = test, DC = ward, O = acme, CN = Ward device root CA/)
      const rootKeyId = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(rootText)?.[1]
      const authorityKeyId = /Authority Key Identifier:\s+([0-9A-F:]+)/.exec(issuingText)?.[1]
      assert.ok(rootKeyId !== undefined)
      assert.equal(authorityKeyId, rootKeyId)
      assert.equal(rootKeyId.replace(/:/g, '').toLowerCase(), authorities.root.subjectKeyIdentifier)

      const rootYears =
        (Date.parse(authorities.root.notAfter) - Date.parse(authorities.root.notBefore)) / yearMs
      const issuingYears =
        (Date.parse(authorities.issuing.notAfter) - Date.parse(authorities.issuing.notBefore)) /
        yearMs
      assert.ok(rootYears > 19.9 && rootYears < 20.1, `root lasts ${rootYears} years`)
      assert.ok(issuingYears > 4.9 && issuingYears < 5.1, `issuing lasts ${issuingYears} years`)
      assert.equal(authorities.issuing.issuerId, authorities.root.id)
      assert.equal(authorities.root.keyOnline, true)
    })

    test('stores each CA private key only wrapped, bound to that CA', async () => {
      const { organization, authorities } = await organizationWithAuthorities(
        fixture.store,
        fixture.provider,
        'wrapped',
      )
      const rows = await fixture.store.db
        .selectFrom('certificate_authorities')
        .selectAll()
        .where('organization_id', '=', organization.id)
        .execute()
      assert.equal(rows.length, 2)
      for (const row of rows) {
        assert.equal(row.provider, 'local-file')
        assert.ok(row.wrapped_private_key !== null && row.wrapped_private_key.length > 100)
        const text = JSON.stringify(row)
        assert.doesNotMatch(text, /PRIVATE KEY/)
      }

      const root = rows.find((row) => row.role === 'root')
      await fixture.store.db
        .updateTable('certificate_authorities')
        .set({ wrapped_private_key: root?.wrapped_private_key ?? null })
        .where('id', '=', authorities.issuing.id)
        .execute()
      const device = await makeDeviceCsr(fixture.directory, 'PO-0001')
      await assert.rejects(
        fixture.store.transaction((tx) =>
          issueDeviceCertificate(tx, fixture.provider, {
            organizationId: organization.id,
            deviceId: randomUUID(),
            serial: 'PO-0001',
            csrPem: device.csrPem,
          }),
        ),
        { code: 'ERR_KEY_INVALID' },
      )
    })

    test('refuses a second set of authorities for one organization', async () => {
      const { organization } = await organizationWithAuthorities(
        fixture.store,
        fixture.provider,
        'twice',
      )
      await assert.rejects(
        fixture.store.transaction((tx) =>
          createOrganizationAuthorities(tx, fixture.provider, {
            organizationId: organization.id,
            slug: 'twice',
            hostName: 'ward.test',
          }),
        ),
        { code: 'ERR_AUTHORITY_EXISTS' },
      )
    })

    test('refuses a slug or host name that does not belong in a name', async () => {
      const organization = await fixture.store.transaction((tx) =>
        insertOrganization(tx, { slug: 'names', name: 'Names' }),
      )
      for (const [slug, hostName, field] of [
        ['Names, O=evil', 'ward.test', 'slug'],
        ['names', 'ward.test, CN=evil', 'hostName'],
      ] as const) {
        await assert.rejects(
          fixture.store.transaction((tx) =>
            createOrganizationAuthorities(tx, fixture.provider, {
              organizationId: organization.id,
              slug,
              hostName,
            }),
          ),
          (error: { code: string; details: { field: string } }) =>
            error.code === 'ERR_INPUT_INVALID' && error.details.field === field,
        )
      }
    })

    test('answers ERR_AUTHORITY_NOT_FOUND for an organization without authorities', async () => {
      const organization = await fixture.store.transaction((tx) =>
        insertOrganization(tx, { slug: 'bare', name: 'Bare' }),
      )
      await assert.rejects(findOrganizationAuthorities(fixture.store.db, organization.id), {
        code: 'ERR_AUTHORITY_NOT_FOUND',
      })
      const device = await makeDeviceCsr(fixture.directory, 'PO-0002')
      await assert.rejects(
        fixture.store.transaction((tx) =>
          issueDeviceCertificate(tx, fixture.provider, {
            organizationId: organization.id,
            deviceId: randomUUID(),
            serial: 'PO-0002',
            csrPem: device.csrPem,
          }),
        ),
        { code: 'ERR_AUTHORITY_NOT_FOUND' },
      )
    })

    test('keeps serving device trust with the root key offline, and refuses to sign with it', async () => {
      const { organization, authorities } = await organizationWithAuthorities(
        fixture.store,
        fixture.provider,
        'offline',
      )
      await fixture.store.db
        .updateTable('certificate_authorities')
        .set({ wrapped_private_key: null, provider: null })
        .where('id', '=', authorities.root.id)
        .execute()

      const trust = await fixture.store.transaction((tx) =>
        deviceTrust(tx, fixture.provider, organization.id),
      )
      assert.equal(trust.crl.length, 2)
      const found = await findOrganizationAuthorities(fixture.store.db, organization.id)
      assert.equal(found.root.keyOnline, false)
      await assert.rejects(
        loadAuthoritySigner(fixture.store.db, fixture.provider, organization.id, 'root'),
        { code: 'ERR_KEY_UNAVAILABLE' },
      )
    })
  })
}
