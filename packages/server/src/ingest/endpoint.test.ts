import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { dialects } from '../../test/support.js'
import { systemContext } from '../context.js'
import { issueDeviceCertificateWithValidity } from '../identity/device-certificates.js'
import { makeDeviceCsr, openssl } from '../identity/test-support.js'
import {
  asDevice,
  batchOf,
  createTestOrganization,
  curlDevice,
  enrollTestDevice,
  entryStatuses,
  eventually,
  httpsRequest,
  logged,
  patienceMs,
  postAsDevice,
  run,
  spo2Reading,
  startTestWard,
  type TestDevice,
  type TestOrganization,
  type TestWard,
} from './test-support.js'

const dayMs = 86_400_000

for (const { dialect, skip } of dialects) {
  describe(`device endpoint handshakes and requests on ${dialect}`, { skip }, () => {
    let testWard: TestWard
    let acme: TestOrganization
    let other: TestOrganization
    let device: TestDevice

    before(async () => {
      testWard = await startTestWard(dialect, {
        WARD_DEVICE_TLS_MIN_VERSION: 'TLSv1.2',
        WARD_DEVICE_BODY_LIMIT_BYTES: String(256 * 1024),
      })
      acme = await createTestOrganization(testWard.ward, 'acme')
      other = await createTestOrganization(testWard.ward, 'other')
      device = await enrollTestDevice(testWard, acme)
    })
    after(() => testWard?.close())

    /** The reasons the endpoint logged for refusing handshakes, newest last. */
    const refusals = () =>
      logged(testWard, 'device handshake refused').map((line) => line['reason'])

    /**
     * Runs curl with `extra`'s credentials until the endpoint logs a handshake refused for
     * `reason`. Right after a revocation the handshake may still pass for the moment fresh CRLs
     * take to sign; such a connection is cut or refused with 403, never served.
     */
    async function assertRefusedAtHandshake(extra: string[], reason: RegExp, serverName?: string) {
      await eventually(
        async () => {
          const before = refusals().length
          const cutBefore = logged(testWard, 'device connection refused').length
          const result = await curlDevice(
            testWard,
            serverName ?? acme.serverName,
            '/v1/observations',
            { body: spo2Reading(randomUUID()), extra },
          )
          assert.ok(
            result.status === 0 || result.status === 403,
            `curl got an HTTP answer: ${result.status} ${result.body}`,
          )
          if (result.status !== 0) return false
          assert.notEqual(result.exitCode, 0)
          await eventually(
            () =>
              refusals().length > before ||
              logged(testWard, 'device connection refused').length > cutBefore,
            patienceMs,
            'the refusal is logged',
          )
          return refusals().length > before && reason.test(String(refusals().at(-1)))
        },
        patienceMs,
        `the handshake is refused for ${reason}`,
      )
    }

    test('serves a valid device: 201 for a new reading, 200 for the same message id again', async () => {
      const reading = spo2Reading(randomUUID())
      const first = await curlDevice(testWard, acme.serverName, '/v1/observations', {
        body: reading,
        extra: asDevice(device),
      })
      assert.equal(first.status, 200, first.stderr + first.body)
      const bundle = JSON.parse(first.body) as { resourceType: string; type: string }
      assert.equal(bundle.resourceType, 'Bundle')
      assert.equal(bundle.type, 'batch-response')
      assert.deepEqual(
        (JSON.parse(first.body) as { entry: { response: { status: string } }[] }).entry.map(
          (entry) => entry.response.status,
        ),
        ['201 Created'],
      )

      const again = await curlDevice(testWard, acme.serverName, '/v1/observations', {
        body: batchOf([reading]),
        extra: [...asDevice(device), '--include'],
      })
      assert.equal(again.status, 200)
      assert.match(again.body, /content-type: application\/fhir\+json/i)
      assert.match(again.body, /"status":"200 OK"/)
    })

    test('refuses a client without a certificate at the handshake', async () => {
      await assertRefusedAtHandshake([], /PEER_DID_NOT_RETURN_A_CERTIFICATE|peer did not return/i)
    })

    test('refuses a self-signed certificate naming a device of the organization', async () => {
      const keyPath = join(testWard.directory, 'self-signed.key')
      const certificatePath = join(testWard.directory, 'self-signed.pem')
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
          `/CN=${device.serial}`,
          '-addext',
          `subjectAltName=URI:urn:ward:device:${acme.id}:${device.deviceId}`,
          '-addext',
          'extendedKeyUsage=clientAuth',
        ],
        testWard.directory,
      )
      await assertRefusedAtHandshake(
        ['--cert', certificatePath, '--key', keyPath],
        /^(DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_GET_CRL)$/,
      )
    })

    test("refuses another organization's device certificate", async () => {
      const stranger = await enrollTestDevice(testWard, other)
      const home = await curlDevice(testWard, other.serverName, '/v1/observations', {
        body: spo2Reading(randomUUID()),
        extra: asDevice(stranger),
      })
      assert.equal(home.status, 200, 'served under its own organization')
      await assertRefusedAtHandshake(
        asDevice(stranger),
        /^(UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_GET_CRL)$/,
      )
    })

    test('refuses an expired device certificate', async () => {
      const material = await makeDeviceCsr(testWard.directory, device.serial)
      const now = Date.now()
      const issued = await testWard.ward.store.transaction((tx) =>
        issueDeviceCertificateWithValidity(
          tx,
          testWard.ward.keys,
          {
            organizationId: acme.id,
            deviceId: device.deviceId,
            serial: device.serial,
            csrPem: material.csrPem,
          },
          { notBefore: new Date(now - 30 * dayMs), notAfter: new Date(now - dayMs) },
        ),
      )
      const chainPath = join(testWard.directory, 'expired.pem')
      writeFileSync(chainPath, issued.chainPem)
      await assertRefusedAtHandshake(
        ['--cert', chainPath, '--key', material.keyPath],
        /^CERT_HAS_EXPIRED$/,
      )
    })

    test('refuses a revoked device, at the handshake once fresh CRLs are in place', async () => {
      const revoked = await enrollTestDevice(testWard, acme)
      const served = await postAsDevice(testWard, acme, revoked, spo2Reading(randomUUID()))
      assert.equal(served.status, 200)

      await testWard.ward.fleet.revokeDevice(systemContext('test'), acme.slug, revoked.serial)
      const answered = await postAsDevice(testWard, acme, revoked, spo2Reading(randomUUID())).then(
        (answer) => answer.status,
        () => 0,
      )
      assert.ok(answered === 0 || answered === 403, `a revoked device got ${answered}`)
      await assertRefusedAtHandshake(asDevice(revoked), /^CERT_REVOKED$/)
    })

    test('refuses a suspended device at the handshake, and serves it again once reinstated', async () => {
      const suspended = await enrollTestDevice(testWard, acme)
      await testWard.ward.fleet.suspendDevice(systemContext('test'), acme.slug, suspended.serial)
      await assertRefusedAtHandshake(asDevice(suspended), /^CERT_REVOKED$/)

      await testWard.ward.fleet.reinstateDevice(systemContext('test'), acme.slug, suspended.serial)
      await eventually(
        async () =>
          (await curlDevice(testWard, acme.serverName, '/v1/observations', {
            body: spo2Reading(randomUUID()),
            extra: asDevice(suspended),
          }).then((result) => result.status)) === 200,
        patienceMs,
        'the reinstated device is served',
      )
    })

    test('refuses a connection without a server name, or with one naming no organization', async () => {
      // curl sends no server name when it connects to an IP address.
      const port = testWard.running.devices.port
      const before = refusals().length
      const bare = await run('curl', [
        '--silent',
        '--cacert',
        testWard.serverCaPath,
        ...asDevice(device),
        '--write-out',
        '%{http_code}',
        `https://127.0.0.1:${port}/v1/nothing`,
      ])
      assert.equal(bare.stdout, '000')
      await eventually(() => refusals().length > before, patienceMs, 'the refusal is logged')

      await assertRefusedAtHandshake(
        asDevice(device),
        /ERR_ORGANIZATION_NOT_FOUND/,
        'nobody.ward.test',
      )
    })

    test('refuses TLS 1.1, and TLS 1.2 without ECDHE, when the floor is TLS 1.2', async () => {
      const port = String(testWard.running.devices.port)
      const common = ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', acme.serverName]
      const credentials = ['-cert', device.chainPath, '-key', device.keyPath]

      let before = refusals().length
      const old = await run('openssl', [
        ...common,
        ...credentials,
        '-tls1_1',
        '-cipher',
        'DEFAULT@SECLEVEL=0',
      ])
      assert.notEqual(old.exitCode, 0)
      await eventually(() => refusals().length > before, patienceMs, 'the refusal is logged')
      assert.match(String(refusals().at(-1)), /UNSUPPORTED_PROTOCOL|VERSION/i)

      before = refusals().length
      const staticKeys = await run('openssl', [
        ...common,
        ...credentials,
        '-tls1_2',
        '-cipher',
        'AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA256',
      ])
      assert.notEqual(staticKeys.exitCode, 0)
      await eventually(() => refusals().length > before, patienceMs, 'the refusal is logged')
      assert.match(String(refusals().at(-1)), /NO_SHARED_CIPHER/)
    })

    test('accepts TLS 1.2 with an ECDHE suite when the floor is TLS 1.2', async () => {
      const port = String(testWard.running.devices.port)
      const result = await run(
        'openssl',
        [
          's_client',
          '-connect',
          `127.0.0.1:${port}`,
          '-servername',
          acme.serverName,
          '-CAfile',
          testWard.serverCaPath,
          '-verify_return_error',
          '-cert',
          device.chainPath,
          '-key',
          device.keyPath,
          '-tls1_2',
          '-cipher',
          'ECDHE-ECDSA-AES128-GCM-SHA256',
          '-ign_eof',
        ],
        `GET /v1/nothing HTTP/1.1\r\nHost: ${acme.serverName}\r\nConnection: close\r\n\r\n`,
      )
      assert.equal(result.exitCode, 0, result.stderr)
      assert.match(result.stdout, /Cipher is ECDHE-ECDSA-AES128-GCM-SHA256/)
      assert.match(result.stdout, /HTTP\/1\.1 404/)
      assert.match(result.stdout, /"code":"ERR_NOT_FOUND"/)
    })

    test('offers no session resumption: every connection is verified in full', async () => {
      const port = String(testWard.running.devices.port)
      const session = join(testWard.directory, 'session.pem')
      const common = [
        's_client',
        '-connect',
        `127.0.0.1:${port}`,
        '-servername',
        acme.serverName,
        '-CAfile',
        testWard.serverCaPath,
        '-cert',
        device.chainPath,
        '-key',
        device.keyPath,
        '-ign_eof',
      ]
      const request = `GET /v1/nothing HTTP/1.1\r\nHost: ${acme.serverName}\r\nConnection: close\r\n\r\n`
      const first = await run('openssl', [...common, '-sess_out', session], request)
      assert.equal(first.exitCode, 0, first.stderr)
      const second = await run('openssl', [...common, '-sess_in', session], request)
      assert.match(second.stdout, /^New, /m)
      assert.doesNotMatch(second.stdout, /^Reused, /m)
    })

    test('answers problem details: 413 over the body limit, 400 for what is not JSON', async () => {
      const big = await postAsDevice(testWard, acme, device, {
        ...spo2Reading(randomUUID()),
        note: [{ text: 'x'.repeat(300 * 1024) }],
      })
      assert.equal(big.status, 413)
      assert.match(String(big.headers['content-type']), /application\/problem\+json/)
      assert.equal((big.json() as { code: string }).code, 'ERR_PAYLOAD_TOO_LARGE')

      for (const [body, contentType] of [
        ['{"resourceType": "Observation",', 'application/json'],
        ['', 'application/fhir+json'],
        ['resourceType=Observation', 'text/plain'],
        ['<Observation/>', 'application/xml'],
      ] as const) {
        const answer = await httpsRequest(testWard.running.devices.url, '/v1/observations', {
          serverName: acme.serverName,
          ca: testWard.serverCaPem,
          cert: device.chainPem,
          key: device.keyPem,
          body,
          contentType,
        })
        assert.equal(answer.status, 400, `${contentType}: ${answer.body}`)
        const problem = answer.json() as { code: string; requestId: string }
        assert.equal(problem.code, 'ERR_PAYLOAD_INVALID')
        assert.equal(problem.requestId, answer.headers['x-request-id'])
      }

      const notFhir = await postAsDevice(testWard, acme, device, { resourceType: 'Patient' })
      assert.equal(notFhir.status, 400)
      assert.match((notFhir.json() as { detail: string }).detail, /Observation or a Bundle/)
    })

    test("limits readings per minute to the device model's rate, with Retry-After", async () => {
      const cuff = await enrollTestDevice(testWard, acme, { model: 'Blood pressure cuff' })
      const readings = (count: number) =>
        batchOf(Array.from({ length: count }, () => spo2Reading(randomUUID())))

      const whole = await postAsDevice(testWard, acme, cuff, readings(61))
      assert.equal(whole.status, 413)
      assert.match((whole.json() as { detail: string }).detail, /60 readings a minute/)

      const first = await postAsDevice(testWard, acme, cuff, readings(60))
      assert.equal(first.status, 200)
      // The budget refills at one reading a second, so a batch of two could fit again by the
      // time a loaded machine makes the next request; a second minute's worth cannot fit
      // before a minute has passed.
      const past = await postAsDevice(testWard, acme, cuff, readings(60))
      assert.equal(past.status, 429)
      assert.equal((past.json() as { code: string }).code, 'ERR_RATE_LIMITED')
      assert.ok(Number(past.headers['retry-after']) >= 1)

      const oximeter = await postAsDevice(testWard, acme, device, readings(2))
      assert.equal(oximeter.status, 200, 'the limit is per device')
    })

    test('renews a certificate over mutual TLS; the new one is served', async () => {
      const material = await makeDeviceCsr(testWard.directory, device.serial)
      const answer = await postAsDevice(
        testWard,
        acme,
        device,
        { csr: material.csrPem },
        '/v1/renew',
      )
      assert.equal(answer.status, 201, answer.body)
      const renewal = answer.json() as { deviceId: string; certificateChain: string }
      assert.equal(renewal.deviceId, device.deviceId)

      const renewed = { ...device, chainPem: renewal.certificateChain, keyPem: material.keyPem }
      const served = await postAsDevice(testWard, acme, renewed, spo2Reading(randomUUID()))
      assert.deepEqual(entryStatuses(served), ['201 Created'])
      const old = await postAsDevice(testWard, acme, device, spo2Reading(randomUUID()))
      assert.deepEqual(entryStatuses(old), ['201 Created'], 'the old certificate stays valid')

      const bad = await postAsDevice(testWard, acme, device, { csr: 42 }, '/v1/renew')
      assert.equal(bad.status, 400)

      // Renewing again from the first certificate retires the one issued in between: never
      // more than the presented and the new certificate are valid.
      const third = await makeDeviceCsr(testWard.directory, device.serial)
      const again = await postAsDevice(testWard, acme, device, { csr: third.csrPem }, '/v1/renew')
      assert.equal(again.status, 201, again.body)
      await eventually(
        () =>
          postAsDevice(testWard, acme, renewed, spo2Reading(randomUUID())).then(
            () => false,
            // TLS 1.3 sends the client's rejection after the handshake: a reset or hang-up.
            (error: unknown) =>
              /certificate revoked|socket hang up|ECONNRESET/i.test(String(error)),
          ),
        patienceMs,
        'the certificate issued in between is refused at the handshake',
      )
      const latest = {
        ...device,
        chainPem: (again.json() as { certificateChain: string }).certificateChain,
        keyPem: third.keyPem,
      }
      assert.deepEqual(
        entryStatuses(await postAsDevice(testWard, acme, latest, spo2Reading(randomUUID()))),
        ['201 Created'],
      )
    })

    test('re-enrolling a device retires every certificate it had', async () => {
      const first = await enrollTestDevice(testWard, acme)
      const context = systemContext('test')
      const { token } = await testWard.ward.fleet.issueEnrollmentToken(
        context,
        acme.slug,
        first.serial,
      )
      const material = await makeDeviceCsr(testWard.directory, first.serial)
      const answer = await httpsRequest(testWard.running.url, '/v1/enroll', {
        serverName: acme.serverName,
        ca: testWard.serverCaPem,
        body: { serial: first.serial, csr: material.csrPem, token },
      })
      assert.equal(answer.status, 201, answer.body)
      await assertRefusedAtHandshake(asDevice(first), /^CERT_REVOKED$/)
      const second = {
        ...first,
        chainPem: (answer.json() as { certificateChain: string }).certificateChain,
        keyPem: material.keyPem,
      }
      assert.deepEqual(
        entryStatuses(await postAsDevice(testWard, acme, second, spo2Reading(randomUUID()))),
        ['201 Created'],
      )
    })

    test('refuses every failed enrollment with the same 403, whatever the reason', async () => {
      const context = systemContext('test')
      const serial = `SN-${randomUUID().slice(0, 8)}`
      await testWard.ward.fleet.createDevice(context, acme.slug, { serial, model: 'Weight scale' })
      const { token } = await testWard.ward.fleet.issueEnrollmentToken(context, acme.slug, serial)
      const material = await makeDeviceCsr(testWard.directory, serial)
      const enroll = (body: Record<string, unknown>, serverName = acme.serverName) =>
        httpsRequest(testWard.running.url, '/v1/enroll', {
          serverName,
          ca: testWard.serverCaPem,
          body,
        })

      const refused = [
        await enroll({ serial, csr: material.csrPem, token: `${token.slice(0, -4)}AAAA` }),
        await enroll({ serial: 'SN-unknown', csr: material.csrPem, token }),
        await enroll({ serial, csr: material.csrPem, token }, other.serverName),
        await enroll({ organization: 'nowhere', serial, csr: material.csrPem, token }),
        await enroll({ serial, csr: 'not a certificate request', token }),
      ]
      const accepted = await enroll({ serial, csr: material.csrPem, token })
      assert.equal(accepted.status, 201, accepted.body)
      refused.push(await enroll({ serial, csr: material.csrPem, token }))

      for (const answer of refused) {
        assert.equal(answer.status, 403, answer.body)
        const { requestId, ...problem } = answer.json() as Record<string, unknown>
        assert.ok(typeof requestId === 'string')
        assert.deepEqual(problem, {
          type: 'urn:ward:error:ERR_ENROLLMENT_REFUSED',
          title: 'Forbidden',
          status: 403,
          detail: 'enrollment refused for this device',
          code: 'ERR_ENROLLMENT_REFUSED',
        })
      }
      const missing = await enroll({ serial, token })
      assert.equal(missing.status, 400)
      assert.match((missing.json() as { detail: string }).detail, /^csr /)

      // Refusals in acme's own endpoint land in acme's log as security alerts, naming the
      // device only when the serial is acme's, and never the token.
      const rows = await testWard.ward.store.db
        .selectFrom('audit_entries')
        .innerJoin('audit_logs', 'audit_logs.id', 'audit_entries.log_id')
        .select('audit_entries.body')
        .where('audit_logs.name', '=', acme.slug)
        .execute()
      const bodies = rows.map((row) => Buffer.from(row.body).toString('utf8'))
      const alerts = bodies
        .map((body) => JSON.parse(body) as Record<string, unknown>)
        .filter((event) => (event['subtype'] as { code: string }).code === 'device.enroll')
        .filter((event) => event['outcome'] === '4')
      assert.equal(alerts.length, 4)
      const entities = alerts.map((event) => (event['entity'] as { what: string }[])[0]?.what)
      assert.equal(entities.filter((what) => what === undefined).length, 1)
      for (const body of bodies) assert.ok(!body.includes(token) && !body.includes('SN-unknown'))
    })

    test('answers 429 to an address past its refused enrollments, recording no more alerts', async () => {
      const alerts = async () =>
        (
          await testWard.ward.store.db
            .selectFrom('audit_entries')
            .innerJoin('audit_logs', 'audit_logs.id', 'audit_entries.log_id')
            .select('audit_entries.body')
            .where('audit_logs.name', '=', acme.slug)
            .execute()
        ).filter((row) => Buffer.from(row.body).toString('utf8').includes('"110113"')).length
      const before = await alerts()
      const material = await makeDeviceCsr(testWard.directory, 'SN-flood')
      const statuses: number[] = []
      for (let i = 0; i < 12; i++) {
        const answer = await httpsRequest(testWard.running.url, '/v1/enroll', {
          serverName: acme.serverName,
          ca: testWard.serverCaPem,
          body: { serial: 'SN-flood', csr: material.csrPem, token: `ward_enr_${'A'.repeat(43)}` },
        })
        statuses.push(answer.status)
      }
      assert.equal(statuses.at(-1), 429)
      const refused = statuses.filter((status) => status === 403).length
      assert.ok(refused >= 1 && refused <= 10, statuses.join(','))
      assert.equal((await alerts()) - before, refused)
    })

    test("serves the device CA: the API certificate devices check Ward's server against", async () => {
      const answer = await httpsRequest(testWard.running.url, '/v1/device-ca/acme', {
        serverName: 'localhost',
        ca: testWard.serverCaPem,
      })
      assert.equal(answer.status, 200)
      assert.match(String(answer.headers['content-type']), /application\/pem-certificate-chain/)
      assert.equal(answer.body, readFileSync(testWard.config.http.certFile, 'utf8'))
      const unknown = await httpsRequest(testWard.running.url, '/v1/device-ca/nowhere', {
        serverName: 'localhost',
        ca: testWard.serverCaPem,
      })
      assert.equal(unknown.status, 404)
      assert.doesNotMatch(unknown.body, /nowhere/)
    })

    test('logs requests without PHI: route patterns, statuses and device ids only', () => {
      const requests = logged(testWard, 'request')
      assert.ok(requests.some((line) => line['route'] === '/v1/observations'))
      for (const line of testWard.logLines) {
        assert.doesNotMatch(line, /Testpatient|Fictional|1970-01-01|ward_enr_/)
      }
    })
  })
}
