import assert from 'node:assert/strict'
import { sign } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { dialects, freshDatabase, temporaryDirectory } from '../../test/support.js'
import { AuthenticationKeys } from '../keys/index.js'
import { insertOrganization, type Organization } from '../tenancy/index.js'
import {
  certificateRequestDer,
  listManufacturerAuthorities,
  registerManufacturerAuthority,
  verifyFactoryIdentity,
} from './index.js'
import {
  makeDeviceCsr,
  openIdentityFixture,
  openssl,
  writeFile,
  type IdentityFixture,
} from './test-support.js'

/** A certificate and its key, as files openssl made and their PEM text. */
interface Issued {
  readonly certificatePath: string
  readonly keyPath: string
  readonly certificatePem: string
  readonly keyPem: string
}

const p256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']

for (const { dialect, skip } of dialects) {
  describe(`manufacturer CAs and factory identities on ${dialect}`, { skip }, () => {
    let fixture: IdentityFixture
    let organization: Organization
    let elsewhere: Organization
    let directory: string
    let counter = 0

    before(async () => {
      const scratch = temporaryDirectory()
      fixture = await openIdentityFixture(await freshDatabase(dialect, scratch.path), scratch)
      directory = fixture.directory
      ;[organization, elsewhere] = await fixture.store.transaction(async (tx) => [
        await insertOrganization(tx, { slug: 'acme', name: 'Acme' }),
        await insertOrganization(tx, { slug: 'elsewhere', name: 'Elsewhere' }),
      ])
    })
    after(() => fixture?.close())

    function read(certificatePath: string, keyPath: string): Issued {
      return {
        certificatePath,
        keyPath,
        certificatePem: readFileSync(certificatePath, 'utf8'),
        keyPem: readFileSync(keyPath, 'utf8'),
      }
    }

    /** A self-signed manufacturer CA made by `openssl req -x509`. */
    async function manufacturerCa(
      name: string,
      extensions: readonly string[] = [
        'basicConstraints=critical,CA:TRUE',
        'keyUsage=critical,keyCertSign,cRLSign',
      ],
    ): Promise<Issued> {
      const base = join(directory, `${name}-${counter++}`)
      await openssl(
        [
          'req',
          '-x509',
          ...p256,
          '-nodes',
          '-keyout',
          `${base}.key`,
          '-out',
          `${base}.pem`,
          '-days',
          '3650',
          '-subj',
          `/O=Example Devices/CN=${name}`,
          ...extensions.flatMap((extension) => ['-addext', extension]),
        ],
        directory,
      )
      return read(`${base}.pem`, `${base}.key`)
    }

    /** A certificate for a fresh key, signed by `issuer` with `openssl x509 -req`. */
    async function certify(
      issuer: Issued,
      subject: string,
      extensions: string,
      key: readonly string[] = p256,
    ): Promise<Issued> {
      const base = join(directory, `certified-${counter++}`)
      await openssl(
        [
          'req',
          '-new',
          ...key,
          '-nodes',
          '-keyout',
          `${base}.key`,
          '-out',
          `${base}.csr`,
          '-subj',
          subject,
        ],
        directory,
      )
      const extfile = writeFile(directory, `certified-${counter}.ext`, `${extensions}\n`)
      await openssl(
        [
          'x509',
          '-req',
          '-in',
          `${base}.csr`,
          '-CA',
          issuer.certificatePath,
          '-CAkey',
          issuer.keyPath,
          '-set_serial',
          String(1000 + counter),
          '-days',
          '365',
          '-sha256',
          '-extfile',
          extfile,
          '-out',
          `${base}.pem`,
        ],
        directory,
      )
      return read(`${base}.pem`, `${base}.key`)
    }

    const factoryExtensions = [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'subjectKeyIdentifier=hash',
      'authorityKeyIdentifier=keyid',
    ].join('\n')

    /** Signs `bytes` with the factory key through `openssl dgst -sha256 -sign`, as base64. */
    async function factorySignature(factory: Issued, bytes: Uint8Array): Promise<string> {
      const data = join(directory, `signed-${counter++}.bin`)
      writeFileSync(data, bytes)
      await openssl(
        ['dgst', '-sha256', '-sign', factory.keyPath, '-out', `${data}.sig`, data],
        directory,
      )
      return readFileSync(`${data}.sig`).toString('base64')
    }

    const keys = () => new AuthenticationKeys(fixture.provider)
    const key = (organizationId: string) =>
      fixture.store.transaction((tx) => keys().key(tx, organizationId, 'manufacturer-authority'))

    function register(organizationId: string, ca: Issued, name = 'Example Devices') {
      return fixture.store.transaction(async (tx) =>
        registerManufacturerAuthority(
          tx,
          await keys().key(tx, organizationId, 'manufacturer-authority'),
          { organizationId, certificatePem: ca.certificatePem, name },
        ),
      )
    }

    async function verifyIdentity(
      factoryCertificatePem: string,
      signatureBase64: string,
      signedBytes: Uint8Array,
    ) {
      return verifyFactoryIdentity(fixture.store.db, await key(organization.id), {
        organizationId: organization.id,
        factoryCertificatePem,
        signatureBase64,
        signedBytes,
      })
    }

    const csrBytes = new TextEncoder().encode('the DER bytes of a device CSR')

    test('verifies a factory identity that openssl made under a registered manufacturer CA', async () => {
      const ca = await manufacturerCa('Example Devices Factory CA')
      const registered = await register(organization.id, ca)
      assert.equal(registered.name, 'Example Devices')
      assert.match(registered.subject, /CN=Example Devices Factory CA/)
      assert.deepEqual(
        (
          await listManufacturerAuthorities(
            fixture.store.db,
            await key(organization.id),
            organization.id,
          )
        ).map((row) => row.id),
        [registered.id],
      )

      const factory = await certify(
        ca,
        '/serialNumber=PO-0301/CN=Pulse oximeter',
        factoryExtensions,
      )
      const csr = certificateRequestDer((await makeDeviceCsr(directory, 'PO-0301')).csrPem)
      const identity = await verifyIdentity(
        factory.certificatePem,
        await factorySignature(factory, csr),
        csr,
      )
      assert.equal(identity.deviceSerial, 'PO-0301')
      assert.equal(identity.manufacturerAuthorityId, registered.id)
      assert.equal(identity.manufacturerName, 'Example Devices')

      const byCommonName = await certify(ca, '/CN=PO-0302', factoryExtensions)
      const raw = sign('sha256', csrBytes, { key: byCommonName.keyPem, dsaEncoding: 'ieee-p1363' })
      const second = await verifyIdentity(
        byCommonName.certificatePem,
        raw.toString('base64'),
        csrBytes,
      )
      assert.equal(second.deviceSerial, 'PO-0302')
    })

    test('follows an intermediate CA the factory certificate brings along', async () => {
      const ca = await manufacturerCa('Example Devices Root')
      await register(organization.id, ca)
      const intermediate = await certify(
        ca,
        '/O=Example Devices/CN=Line 3',
        'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign',
      )
      const factory = await certify(intermediate, '/serialNumber=PO-0303', factoryExtensions)
      const signature = await factorySignature(factory, csrBytes)
      const identity = await verifyIdentity(
        factory.certificatePem + intermediate.certificatePem,
        signature,
        csrBytes,
      )
      assert.equal(identity.deviceSerial, 'PO-0303')
      await assert.rejects(verifyIdentity(factory.certificatePem, signature, csrBytes), {
        code: 'ERR_CERTIFICATE_UNTRUSTED',
      })

      const narrow = await manufacturerCa('Narrow Root', [
        'basicConstraints=critical,CA:TRUE,pathlen:0',
        'keyUsage=critical,keyCertSign',
      ])
      await register(organization.id, narrow)
      const below = await certify(
        narrow,
        '/CN=Narrow line',
        'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign',
      )
      const deep = await certify(below, '/CN=PO-0304', factoryExtensions)
      await assert.rejects(
        verifyIdentity(
          deep.certificatePem + below.certificatePem,
          await factorySignature(deep, csrBytes),
          csrBytes,
        ),
        { code: 'ERR_CERTIFICATE_UNTRUSTED', message: /path length 0/ },
      )
    })

    test('refuses to register a certificate that is not a CA, twice, or unreadable', async () => {
      const ca = await manufacturerCa('Example Devices Second CA')
      const leaf = await certify(ca, '/CN=PO-0305', factoryExtensions)
      await assert.rejects(register(organization.id, leaf), {
        code: 'ERR_CERTIFICATE_INVALID',
        message: 'certificate must be a CA certificate (basic constraints CA:true)',
      })
      const noCertSign = await manufacturerCa('No Cert Sign', [
        'basicConstraints=critical,CA:TRUE',
        'keyUsage=critical,digitalSignature',
      ])
      await assert.rejects(register(organization.id, noCertSign), {
        code: 'ERR_CERTIFICATE_INVALID',
        message: 'certificate must be a CA certificate (key usage keyCertSign)',
      })
      await register(organization.id, ca)
      await assert.rejects(register(organization.id, ca), { code: 'ERR_AUTHORITY_EXISTS' })
      await assert.rejects(
        register(organization.id, { ...ca, certificatePem: 'not a certificate' }),
        { code: 'ERR_CERTIFICATE_INVALID' },
      )
      await assert.rejects(register(organization.id, ca, ' '), { code: 'ERR_INPUT_INVALID' })
    })

    test('refuses a factory certificate under a CA this organization did not register', async () => {
      const theirs = await manufacturerCa('Elsewhere Factory CA')
      await register(elsewhere.id, theirs)
      const factory = await certify(theirs, '/serialNumber=PO-0306', factoryExtensions)
      await assert.rejects(
        verifyIdentity(factory.certificatePem, await factorySignature(factory, csrBytes), csrBytes),
        {
          code: 'ERR_CERTIFICATE_UNTRUSTED',
          message: 'factoryCertificate does not chain to a registered manufacturer CA',
        },
      )
    })

    test('refuses a signature that is not the factory key over those bytes', async () => {
      const ca = await manufacturerCa('Example Devices Third CA')
      await register(organization.id, ca)
      const factory = await certify(ca, '/serialNumber=PO-0307', factoryExtensions)
      const signature = await factorySignature(factory, csrBytes)
      await assert.rejects(
        verifyIdentity(factory.certificatePem, signature, new TextEncoder().encode('other bytes')),
        { code: 'ERR_SIGNATURE_INVALID' },
      )
      const impostor = await certify(ca, '/serialNumber=PO-0308', factoryExtensions)
      await assert.rejects(verifyIdentity(impostor.certificatePem, signature, csrBytes), {
        code: 'ERR_SIGNATURE_INVALID',
      })
      await assert.rejects(verifyIdentity(factory.certificatePem, 'not base64!', csrBytes), {
        code: 'ERR_SIGNATURE_INVALID',
      })
    })

    test('refuses an expired, CA or RSA factory certificate', async () => {
      const ca = await manufacturerCa('Example Devices Fourth CA')
      await register(organization.id, ca)

      const base = join(directory, 'expired')
      await openssl(
        [
          'req',
          '-new',
          ...p256,
          '-nodes',
          '-keyout',
          `${base}.key`,
          '-out',
          `${base}.csr`,
          '-subj',
          '/CN=PO-0309',
        ],
        directory,
      )
      writeFile(directory, 'index.txt', '')
      writeFile(directory, 'serial', '1000\n')
      const config = writeFile(
        directory,
        'ca.cnf',
        [
          '[ca]',
          'default_ca = factory',
          '[factory]',
          `database = ${join(directory, 'index.txt')}`,
          `new_certs_dir = ${directory}`,
          `serial = ${join(directory, 'serial')}`,
          'default_md = sha256',
          'policy = any',
          '[any]',
          'commonName = supplied',
          '',
        ].join('\n'),
      )
      const extfile = writeFile(directory, 'expired.ext', `${factoryExtensions}\n`)
      await openssl(
        [
          'ca',
          '-batch',
          '-config',
          config,
          '-cert',
          ca.certificatePath,
          '-keyfile',
          ca.keyPath,
          '-in',
          `${base}.csr`,
          '-out',
          `${base}.pem`,
          '-startdate',
          '20200101000000Z',
          '-enddate',
          '20210101000000Z',
          '-extfile',
          extfile,
          '-notext',
        ],
        directory,
      )
      const expired = read(`${base}.pem`, `${base}.key`)
      await assert.rejects(
        verifyIdentity(expired.certificatePem, await factorySignature(expired, csrBytes), csrBytes),
        { code: 'ERR_CERTIFICATE_EXPIRED' },
      )

      const asCa = await certify(
        ca,
        '/CN=PO-0310',
        'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,digitalSignature',
      )
      await assert.rejects(
        verifyIdentity(asCa.certificatePem, await factorySignature(asCa, csrBytes), csrBytes),
        { code: 'ERR_CERTIFICATE_INVALID', message: 'factoryCertificate must not be a CA' },
      )
      const rsa = await certify(ca, '/CN=PO-0311', factoryExtensions, ['-newkey', 'rsa:2048'])
      await assert.rejects(
        verifyIdentity(rsa.certificatePem, await factorySignature(rsa, csrBytes), csrBytes),
        { code: 'ERR_KEY_ALGORITHM_UNSUPPORTED' },
      )
    })
  })
}
