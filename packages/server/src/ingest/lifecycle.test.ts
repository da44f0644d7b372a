import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import {
  DeviceAgent,
  DeviceClient,
  DurableQueue,
  enroll,
  prepareWipe,
  runCommands,
  watchCommands,
  type Observation,
} from '@ward/device'

import { dialects } from '../../test/support.js'
import { systemContext } from '../context.js'
import { findDevice, findDeviceModel, publicKeyId } from '../devices/index.js'
import type { ReleaseCatalog } from '../updates/index.js'
import {
  createTestOrganization,
  enrollTestDevice,
  eventually,
  httpsRequest,
  logged,
  patienceMs,
  postAsDevice,
  registerTestDevice,
  run,
  spo2Reading,
  startTestWard,
  type TestDevice,
  type TestOrganization,
  type TestWard,
} from './test-support.js'

const operator = systemContext('test')
// The device command as shipped: the compiled build that `npm test` makes first.
const deviceCommand = new URL('../../../device/dist/main.js', import.meta.url).pathname

function reading(percent: number): Observation {
  const observation = spo2Reading('unused', percent)
  delete observation['identifier']
  return observation as Observation
}

for (const { dialect, skip } of dialects) {
  describe(`device lifecycle over the device endpoint on ${dialect}`, { skip }, () => {
    let testWard: TestWard
    let acme: TestOrganization

    before(async () => {
      testWard = await startTestWard(dialect)
      acme = await createTestOrganization(testWard.ward, 'acme')
    })
    after(() => testWard?.close())

    /** The organization's audit events with subtype `operation`. */
    async function events(operation: string): Promise<Record<string, unknown>[]> {
      const rows = await testWard.ward.store.db
        .selectFrom('audit_entries')
        .innerJoin('audit_logs', 'audit_logs.id', 'audit_entries.log_id')
        .select('audit_entries.body')
        .where('audit_logs.name', '=', acme.slug)
        .orderBy('audit_entries.idx')
        .execute()
      return rows
        .map((row) => JSON.parse(Buffer.from(row.body).toString('utf8')) as Record<string, unknown>)
        .filter((event) => (event['subtype'] as { code: string }).code === operation)
    }

    /** True once a fresh connection as `device` is refused, at the handshake or with a 403. */
    async function refused(device: { chainPem: string; keyPem: string }): Promise<boolean> {
      try {
        const answer = await postAsDevice(testWard, acme, device as TestDevice, spo2Reading('x'))
        return answer.status === 403 || answer.status === 401
      } catch {
        return true
      }
    }

    test('a wiped device erases its queue, keys and certificate, Ward records a wipe certificate and refuses it', async () => {
      const { serial, token } = await registerTestDevice(testWard.ward, acme)
      const directory = join(testWard.directory, `agent-${serial}`)
      const client = await enroll({
        url: testWard.running.devices.url,
        enrollmentUrl: testWard.running.url,
        serverName: acme.serverName,
        caPem: testWard.serverCaPem,
        serial,
        token,
        keyDirectory: join(directory, 'identity'),
      })
      const queueDirectory = join(directory, 'queue')
      const queue = await DurableQueue.open(queueDirectory)
      for (const percent of [95, 96, 97]) await queue.enqueue(reading(percent))
      const identityDirectory = join(directory, 'identity')
      const keyFile = readdirSync(identityDirectory).find((name) => name.endsWith('.key'))
      const crtFile = readdirSync(identityDirectory).find((name) => name.endsWith('.crt'))
      const saved = {
        keyPem: readFileSync(join(identityDirectory, keyFile as string), 'utf8'),
        chainPem: readFileSync(join(identityDirectory, crtFile as string), 'utf8'),
      }

      // Nothing to do before the operator asks.
      assert.equal(await runCommands({ client, queueDirectory, queue }), undefined)
      const command = await testWard.ward.fleet.wipeDevice(operator, acme.slug, serial)
      const again = await testWard.ward.fleet.wipeDevice(operator, acme.slug, serial)
      assert.equal(again.id, command.id, 'a repeated wipe request queues no second command')

      const outcome = await runCommands({ client, queueDirectory, queue })
      assert.ok(outcome !== undefined)
      assert.equal(outcome.commandId, command.id)
      assert.equal(outcome.confirmed, true)
      assert.equal(outcome.report.erased.queuedReadings, 3)
      assert.equal(existsSync(queueDirectory), false, 'the queue directory is gone')
      assert.deepEqual(readdirSync(identityDirectory), [], 'no key, certificate or identity left')

      const certificates = await testWard.ward.fleet.wipeCertificates(acme.slug, serial)
      assert.equal(certificates.length, 1)
      const [recorded] = certificates
      assert.equal(recorded?.id, outcome.wipeCertificate)
      assert.equal(recorded?.queuedReadings, 3)
      assert.equal(recorded?.rejectedReadings, 0)
      const deviceCertificate = new X509Certificate(saved.chainPem)
      assert.deepEqual(recorded?.keyIds, [publicKeyId(deviceCertificate)])
      assert.equal(recorded?.certificateSerials.length, 1)
      assert.match(recorded?.signature ?? '', /^[A-Za-z0-9+/=]+$/)

      const device = await findDevice(testWard.ward.store.db, acme.id, serial)
      assert.equal(device.status, 'wiped')
      await eventually(() => refused(saved), patienceMs, 'the wiped device is refused')

      const confirmations = await events('device.wipe.confirm')
      assert.equal(confirmations.length, 1)
      const detail = (confirmations[0]?.['entity'] as { detail: Record<string, unknown> }[])[0]
        ?.detail
      assert.equal(detail?.['queuedReadings'], 3)
      assert.equal(detail?.['command'], command.id)
      assert.equal((await events('device.wipe.request')).length, 2)
      assert.equal((await events('device.wipe.deliver')).length, 1)
      client.close()
    })

    test('a delivering agent watching for commands stops and wipes itself when told', async () => {
      const { serial, token } = await registerTestDevice(testWard.ward, acme)
      const directory = join(testWard.directory, `watch-${serial}`)
      const client = await enroll({
        url: testWard.running.devices.url,
        enrollmentUrl: testWard.running.url,
        serverName: acme.serverName,
        caPem: testWard.serverCaPem,
        serial,
        token,
        keyDirectory: join(directory, 'identity'),
      })
      const queueDirectory = join(directory, 'queue')
      const queue = await DurableQueue.open(queueDirectory)
      const agent = new DeviceAgent({ queue, client, retry: { baseDelayMs: 50, maxDelayMs: 200 } })
      const watch = watchCommands({ client, queue, queueDirectory, agent, intervalMs: 50 })
      agent.start()
      await queue.enqueue(reading(98))
      await agent.drain(AbortSignal.timeout(patienceMs))
      assert.equal(agent.counters.accepted, 1)

      await testWard.ward.fleet.wipeDevice(operator, acme.slug, serial)
      const outcome = await watch.wiped
      assert.equal(outcome.confirmed, true)
      assert.equal(outcome.report.erased.queuedReadings, 0)
      await assert.rejects(queue.enqueue(reading(99)), /closed/, 'the agent stopped for good')
      assert.equal(existsSync(queueDirectory), false)
      assert.deepEqual(readdirSync(join(directory, 'identity')), [])
      assert.equal((await findDevice(testWard.ward.store.db, acme.id, serial)).status, 'wiped')
    })

    test('ward-device send carries out a wipe before it sends anything', async () => {
      const { serial, token } = await registerTestDevice(testWard.ward, acme)
      const directory = join(testWard.directory, `cli-${serial}`)
      const client = await enroll({
        url: testWard.running.devices.url,
        enrollmentUrl: testWard.running.url,
        serverName: acme.serverName,
        caPem: testWard.serverCaPem,
        serial,
        token,
        keyDirectory: directory,
      })
      client.close()
      const queue = await DurableQueue.open(join(directory, 'queue'))
      for (const percent of [93, 94]) await queue.enqueue(reading(percent))
      await queue.close()
      await testWard.ward.fleet.wipeDevice(operator, acme.slug, serial)

      const sent = await run(process.execPath, [deviceCommand, 'send', '--dir', directory])
      assert.equal(sent.exitCode, 0, sent.stderr)
      assert.match(
        sent.stdout,
        /^wiped on command [0-9a-f-]+: erased 2 queued and 0 refused readings, 1 key and 1 certificate; Ward recorded wipe certificate [0-9a-f-]+$/m,
      )
      assert.doesNotMatch(sent.stdout, /accepted/)
      assert.deepEqual(readdirSync(directory), [])
      assert.equal((await findDevice(testWard.ward.store.db, acme.id, serial)).status, 'wiped')
    })

    test('a wipe interrupted after the report was signed is finished from the journal on restart', async () => {
      const { serial, token } = await registerTestDevice(testWard.ward, acme)
      const directory = join(testWard.directory, `crash-${serial}`)
      const identityDirectory = join(directory, 'identity')
      const queueDirectory = join(directory, 'queue')
      const client = await enroll({
        url: testWard.running.devices.url,
        enrollmentUrl: testWard.running.url,
        serverName: acme.serverName,
        caPem: testWard.serverCaPem,
        serial,
        token,
        keyDirectory: identityDirectory,
      })
      const queue = await DurableQueue.open(queueDirectory)
      for (const percent of [91, 92]) await queue.enqueue(reading(percent))
      const command = await testWard.ward.fleet.wipeDevice(operator, acme.slug, serial)

      // The device signs its report and journals it, then loses power.
      const journal = await prepareWipe({ client, queueDirectory, queue }, command.id)
      client.close()
      assert.ok(existsSync(join(identityDirectory, 'wipe.json')))
      assert.ok(readdirSync(identityDirectory).some((name) => name.endsWith('.key')))

      // On restart it finishes that wipe before asking for anything else.
      const restarted = await DeviceClient.open(identityDirectory)
      const outcome = await runCommands({ client: restarted, queueDirectory })
      assert.equal(outcome?.confirmed, true)
      assert.deepEqual(outcome?.report, journal.report)
      assert.equal(outcome?.report.erased.queuedReadings, 2)
      assert.equal(existsSync(queueDirectory), false)
      assert.deepEqual(readdirSync(identityDirectory), [])
      const [certificate] = await testWard.ward.fleet.wipeCertificates(acme.slug, serial)
      assert.equal(certificate?.queuedReadings, 2)
      assert.equal(certificate?.id, outcome?.wipeCertificate)
      restarted.close()
    })

    test('a device that crashed after Ward recorded its wipe erases its key as soon as Ward refuses it', async () => {
      const { serial, token } = await registerTestDevice(testWard.ward, acme)
      const identityDirectory = join(testWard.directory, `late-${serial}`, 'identity')
      const queueDirectory = join(testWard.directory, `late-${serial}`, 'queue')
      const client = await enroll({
        url: testWard.running.devices.url,
        enrollmentUrl: testWard.running.url,
        serverName: acme.serverName,
        caPem: testWard.serverCaPem,
        serial,
        token,
        keyDirectory: identityDirectory,
      })
      const command = await testWard.ward.fleet.wipeDevice(operator, acme.slug, serial)
      const journal = await prepareWipe({ client, queueDirectory }, command.id)
      const answer = await client.request('POST', `/v1/commands/${command.id}/result`, journal)
      assert.equal(answer.status, 200)
      client.close()

      const started = Date.now()
      const restarted = await DeviceClient.open(identityDirectory)
      const outcome = await runCommands({ client: restarted, queueDirectory })
      // A refusal ends the retries within seconds (at worst three resets, with pauses of half
      // a second and a second between them); retries that ignored it would go on for the
      // ten-minute confirmation timeout. The bound sits far from both.
      assert.ok(Date.now() - started < 120_000, 'a refusal ends the retries')
      assert.equal(outcome?.confirmed, false, 'this time Ward refused rather than answered')
      assert.deepEqual(readdirSync(identityDirectory), [])
      assert.equal((await testWard.ward.fleet.wipeCertificates(acme.slug, serial)).length, 1)
      restarted.close()
    })

    test('a wipe command is delivered again until confirmed, and a repeated confirmation changes nothing', async () => {
      const device = await enrollTestDevice(testWard, acme)
      const command = await testWard.ward.fleet.wipeDevice(operator, acme.slug, device.serial)
      const ask = () =>
        httpsRequest(testWard.running.devices.url, '/v1/commands', {
          serverName: acme.serverName,
          ca: testWard.serverCaPem,
          cert: device.chainPem,
          key: device.keyPem,
        })
      const first = await ask()
      const second = await ask()
      assert.equal(first.status, 200)
      assert.deepEqual(first.json(), second.json())
      assert.deepEqual(
        (first.json() as { commands: { id: string; kind: string }[] }).commands.map((c) => [
          c.id,
          c.kind,
        ]),
        [[command.id, 'wipe']],
      )
      const delivered = await testWard.ward.store.db
        .selectFrom('device_commands')
        .select(['deliveries', 'status'])
        .where('id', '=', command.id)
        .executeTakeFirstOrThrow()
      assert.equal(Number(delivered.deliveries), 2)
      assert.equal(delivered.status, 'delivered')
      const deliveries = (await events('device.wipe.deliver')).filter(
        (event) =>
          (event['entity'] as { detail: Record<string, unknown> }[])[0]?.detail['command'] ===
          command.id,
      )
      assert.equal(deliveries.length, 1, 'only the first delivery is audited')

      // A confirmation whose signature is not the device's is refused and changes nothing.
      const forged = await httpsRequest(
        testWard.running.devices.url,
        `/v1/commands/${command.id}/result`,
        {
          serverName: acme.serverName,
          ca: testWard.serverCaPem,
          cert: device.chainPem,
          key: device.keyPem,
          contentType: 'application/json',
          body: {
            report: {
              command: command.id,
              device: device.deviceId,
              erased: {
                queuedReadings: 0,
                rejectedReadings: 0,
                keys: [publicKeyId(new X509Certificate(device.chainPem))],
                certificates: ['01'],
              },
              erasedAt: new Date().toISOString(),
            },
            signature: Buffer.from('not a signature').toString('base64'),
          },
        },
      )
      assert.equal(forged.status, 401)
      assert.equal((forged.json() as { code: string }).code, 'ERR_SIGNATURE_INVALID')
      // Another device of the organization cannot see or answer this device's command.
      const stranger = await enrollTestDevice(testWard, acme)
      const foreign = await httpsRequest(
        testWard.running.devices.url,
        `/v1/commands/${command.id}/result`,
        {
          serverName: acme.serverName,
          ca: testWard.serverCaPem,
          cert: stranger.chainPem,
          key: stranger.keyPem,
          contentType: 'application/json',
          body: { report: {}, signature: '' },
        },
      )
      assert.equal(foreign.status, 404)
      assert.equal((foreign.json() as { code: string }).code, 'ERR_COMMAND_NOT_FOUND')
      const theirs = await httpsRequest(testWard.running.devices.url, '/v1/commands', {
        serverName: acme.serverName,
        ca: testWard.serverCaPem,
        cert: stranger.chainPem,
        key: stranger.keyPem,
      })
      assert.deepEqual(theirs.json(), { commands: [] })

      const alerts = (await events('device.wipe.confirm')).filter(
        (event) => event['outcome'] === '8',
      )
      assert.equal(alerts.length, 1, 'the forged confirmation is audited as a failure')
      assert.equal(alerts[0]?.['outcomeDescription'], 'ERR_SIGNATURE_INVALID')

      // The real agent confirms; the same confirmation again is answered as the first.
      const directory = join(testWard.directory, `sdk-${device.serial}`)
      const { mkdirSync, writeFileSync } = await import('node:fs')
      mkdirSync(directory, { mode: 0o700 })
      writeFileSync(join(directory, 'ca.pem'), testWard.serverCaPem)
      writeFileSync(join(directory, 'device-1.key'), device.keyPem, { mode: 0o600 })
      writeFileSync(join(directory, 'device-1.crt'), device.chainPem)
      writeFileSync(
        join(directory, 'identity.json'),
        JSON.stringify({
          deviceId: device.deviceId,
          serial: device.serial,
          url: testWard.running.devices.url,
          serverName: acme.serverName,
          notAfter: new Date(Date.now() + 86_400_000).toISOString(),
          generation: 1,
        }),
      )
      const client = await DeviceClient.open(directory)
      const outcome = await runCommands({ client, queueDirectory: join(directory, 'queue') })
      assert.equal(outcome?.confirmed, true)

      const certificate = new X509Certificate(device.chainPem)
      const stored = await testWard.ward.store.db
        .selectFrom('wipe_certificates')
        .select(['report', 'signature'])
        .where('command_id', '=', command.id)
        .executeTakeFirstOrThrow()
      const repeated = await testWard.ward.fleet.confirmWipe(
        { ...operator, actor: { type: 'device', id: device.deviceId } },
        acme.id,
        device.deviceId,
        command.id,
        { report: JSON.parse(stored.report), signature: stored.signature },
        certificate,
      )
      assert.equal(repeated.created, false)
      assert.equal(repeated.certificate.id, outcome?.wipeCertificate)
      assert.equal((await testWard.ward.fleet.wipeCertificates(acme.slug, device.serial)).length, 1)
      client.close()
    })

    test('decommissioning revokes the certificate at the handshake and ends the patient assignment', async () => {
      const device = await enrollTestDevice(testWard, acme)
      assert.equal((await postAsDevice(testWard, acme, device, spo2Reading('d-1'))).status, 200)

      const decommissioned = await testWard.ward.fleet.decommissionDevice(
        operator,
        acme.slug,
        device.serial,
      )
      assert.equal(decommissioned.status, 'decommissioned')
      assert.equal(decommissioned.patientId, null)
      const stored = await findDevice(testWard.ward.store.db, acme.id, device.serial)
      assert.equal(stored.patientId, null)

      await eventually(
        async () => {
          const before = logged(testWard, 'device handshake refused').length
          try {
            await postAsDevice(testWard, acme, device, spo2Reading('d-2'))
            return false
          } catch {
            // Until fresh CRLs are in place the connection is cut after the handshake instead.
            await new Promise((resolve) => setTimeout(resolve, 100))
            const refusals = logged(testWard, 'device handshake refused')
            return refusals.length > before && refusals.at(-1)?.['reason'] === 'CERT_REVOKED'
          }
        },
        patienceMs,
        'the handshake refuses the revoked certificate',
      )

      const [event] = (await events('device.decommission')).slice(-1)
      const entity = (event?.['entity'] as Record<string, unknown>[])[0] as {
        what: string
        patient?: string
        detail: Record<string, unknown>
      }
      assert.equal(entity.what, device.deviceId)
      assert.equal(entity.patient, acme.patient.pseudonym)
      assert.equal(entity.detail['assignmentEnded'], true)
      assert.equal(entity.detail['certificatesRevoked'], 1)
      await assert.rejects(
        testWard.ward.fleet.wipeDevice(operator, acme.slug, device.serial),
        (error: { code?: string }) => error.code === 'ERR_DEVICE_STATE',
      )
    })

    test('a device learns its rollout and reports its update status over the device endpoint', async () => {
      const device = await enrollTestDevice(testWard, acme)
      const model = await findDeviceModel(testWard.ward.store.db, acme.id, 'Pulse oximeter')
      const catalog: ReleaseCatalog = {
        findRelease: async (_tx, _organization, releaseId) => ({
          id: releaseId,
          version: '2.1.0',
          targetName: 'oximeter-2.1.0.bin',
          deviceModelIds: [model.id],
        }),
      }
      testWard.ward.rollouts.useReleases(catalog)
      const rollout = await testWard.ward.rollouts.create(operator, acme.slug, {
        releaseId: 'oximeter-fw',
        devices: [device.serial],
        stages: [100],
      })
      const asDevice = {
        serverName: acme.serverName,
        ca: testWard.serverCaPem,
        cert: device.chainPem,
        key: device.keyPem,
      }

      const offered = await httpsRequest(testWard.running.devices.url, '/v1/rollout', asDevice)
      assert.equal(offered.status, 200)
      assert.deepEqual(offered.json(), {
        update: {
          rollout: rollout.id,
          release: 'oximeter-fw',
          version: '2.1.0',
          target: 'oximeter-2.1.0.bin',
        },
      })
      const report = (body: unknown) =>
        httpsRequest(testWard.running.devices.url, '/v1/update-status', {
          ...asDevice,
          contentType: 'application/json',
          body,
        })
      const bad = await report({ release: 'oximeter-fw', version: '2.1.0', status: 'exploded' })
      assert.equal(bad.status, 400)
      assert.match((bad.json() as { detail: string }).detail, /status must be one of/)
      const other = await report({ release: 'oximeter-fw', version: '9.9.9', status: 'installed' })
      assert.equal(other.status, 404)
      assert.equal(
        (await report({ release: 'oximeter-fw', version: '2.1.0', status: 'downloading' })).status,
        200,
      )
      const installed = await report({
        release: 'oximeter-fw',
        version: '2.1.0',
        status: 'installed',
      })
      assert.deepEqual(installed.json(), { rollout: rollout.id, status: 'installed' })

      const summary = await testWard.ward.rollouts.summary(acme.slug, rollout.id)
      assert.equal(summary.rollout.state, 'completed')
      assert.equal(summary.stages[0]?.devices.installed, 1)
      const after = await httpsRequest(testWard.running.devices.url, '/v1/rollout', asDevice)
      assert.deepEqual(after.json(), { update: null })
      assert.equal((await events('rollout.device.status')).length, 2)
    })

    test('lifecycle and rollout paths keep patient identities out of logs and audit events', async () => {
      const rows = await testWard.ward.store.db
        .selectFrom('audit_entries')
        .innerJoin('audit_logs', 'audit_logs.id', 'audit_entries.log_id')
        .select('audit_entries.body')
        .where('audit_logs.name', '=', acme.slug)
        .execute()
      const audit = rows.map((row) => Buffer.from(row.body).toString('utf8')).join('\n')
      const serviceLog = testWard.logLines.join('\n')
      assert.match(audit, /device\.wipe\.confirm/)
      for (const identifier of ['Testpatient', 'Fictional', '1970-01-01']) {
        assert.equal(audit.includes(identifier), false, `${identifier} in an audit event`)
        assert.equal(serviceLog.includes(identifier), false, `${identifier} in the service log`)
      }
    })
  })
}
