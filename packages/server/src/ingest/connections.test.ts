import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { connect as netConnect } from 'node:net'
import { after, before, describe, test } from 'node:test'

import { dialects } from '../../test/support.js'
import { systemContext } from '../context.js'
import { Ward } from '../ward.js'
import {
  createTestOrganization,
  enrollTestDevice,
  eventually,
  logged,
  openDeviceConnection,
  postAsDevice,
  run,
  spo2Reading,
  startTestWard,
  type DeviceConnection,
  type TestOrganization,
  type TestWard,
} from './test-support.js'

// How long a test waits for a connection the endpoint should cut. The endpoint keeps a silent
// connection for its idle timeout, 30 seconds by default, so a close well within that is not the
// connection idling out; the endpoint takes tens of milliseconds on an idle machine (a second
// when it learns of the change by polling), and the margin is for a loaded one. That the
// endpoint cut it is checked on its own, by its log or the answer it gave.
const closeLimitMs = 20_000

/** Resolves once `connection` closed, or rejects after {@link closeLimitMs}. */
async function closes(connection: DeviceConnection): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still open after ${closeLimitMs} ms`)), closeLimitMs)
  })
  try {
    await Promise.race([connection.closed, late])
  } finally {
    clearTimeout(timer)
  }
}

for (const { dialect, skip } of dialects) {
  describe(`device endpoint connections on ${dialect}`, { skip }, () => {
    let testWard: TestWard
    let acme: TestOrganization

    before(async () => {
      testWard = await startTestWard(dialect)
      acme = await createTestOrganization(testWard.ward, 'acme')
    })
    after(() => testWard?.close())

    /** A freshly enrolled device with a kept-alive connection that has been served once. */
    async function connectedDevice() {
      const device = await enrollTestDevice(testWard, acme)
      const connection = await openDeviceConnection(testWard, acme, device)
      const served = await connection.send(spo2Reading(randomUUID()))
      assert.equal(served.status, 200, served.body)
      const again = await connection.send(spo2Reading(randomUUID()))
      assert.equal(again.status, 200, 'the connection is kept alive')
      return { device, connection }
    }

    /** Whether the endpoint logged cutting connections of device `deviceId`. */
    const cut = (deviceId: string) =>
      logged(testWard, 'device connections closed').some((line) => line['deviceId'] === deviceId)

    /** Waits for `connection` to close, and for the endpoint's log to say it cut it. */
    async function cutByEndpoint(connection: DeviceConnection, deviceId: string): Promise<void> {
      await closes(connection)
      await eventually(() => cut(deviceId), closeLimitMs, 'the endpoint logs cutting it')
    }

    test('refuses TLS 1.2 when the floor is TLS 1.3, the default', async () => {
      const device = await enrollTestDevice(testWard, acme)
      const result = await run('openssl', [
        's_client',
        '-connect',
        `127.0.0.1:${testWard.running.devices.port}`,
        '-servername',
        acme.serverName,
        '-cert',
        device.chainPath,
        '-key',
        device.keyPath,
        '-tls1_2',
      ])
      assert.notEqual(result.exitCode, 0)
      assert.match(result.stdout + result.stderr, /alert protocol version|no protocols available/)
    })

    test('suspending a device closes its open connection at once, and only its own', async () => {
      const { device, connection } = await connectedDevice()
      const bystander = await connectedDevice()

      await testWard.ward.fleet.suspendDevice(systemContext('test'), acme.slug, device.serial)
      await cutByEndpoint(connection, device.deviceId)

      assert.equal(cut(bystander.device.deviceId), false, "another device's connection is not cut")
      const still = await bystander.connection.send(spo2Reading(randomUUID()))
      assert.equal(still.status, 200, "another device's connection stays open")
      bystander.connection.destroy()
    })

    test('revoking a device closes its open connection at once', async () => {
      const { device, connection } = await connectedDevice()
      await testWard.ward.fleet.revokeDevice(systemContext('test'), acme.slug, device.serial)
      await cutByEndpoint(connection, device.deviceId)
    })

    test('a reinstated device connects again, and keeps its connection through later changes', async () => {
      const { device, connection } = await connectedDevice()
      await testWard.ward.fleet.suspendDevice(systemContext('test'), acme.slug, device.serial)
      await cutByEndpoint(connection, device.deviceId)
      await testWard.ward.fleet.reinstateDevice(systemContext('test'), acme.slug, device.serial)
      await testWard.running.devices.refresh(acme.id)

      const back = await openDeviceConnection(testWard, acme, device)
      assert.equal((await back.send(spo2Reading(randomUUID()))).status, 200)
      const other = await enrollTestDevice(testWard, acme)
      await testWard.ward.fleet.suspendDevice(systemContext('test'), acme.slug, other.serial)
      await testWard.running.devices.refresh(acme.id)
      assert.equal((await back.send(spo2Reading(randomUUID()))).status, 200)
      back.destroy()
    })

    test('a change made by another Ward process on the same store closes the connection too', async () => {
      const { device, connection } = await connectedDevice()
      const revoked = await connectedDevice()

      // A second Ward on the same home and database: its fleet's events never reach the
      // endpoint, which learns of the changes by polling the store.
      const elsewhere = await Ward.open(testWard.config)
      try {
        await elsewhere.fleet.suspendDevice(systemContext('test'), acme.slug, device.serial)
        await elsewhere.fleet.revokeDevice(systemContext('test'), acme.slug, revoked.device.serial)
        await cutByEndpoint(connection, device.deviceId)
        await cutByEndpoint(revoked.connection, revoked.device.deviceId)
      } finally {
        await elsewhere.close()
      }

      // The endpoint's handshakes carry the fresh CRLs now, and requests are refused anyway.
      const answer = await postAsDevice(testWard, acme, device, spo2Reading(randomUUID())).then(
        (reply) => reply.status,
        () => 0,
      )
      assert.ok(answer === 0 || answer === 403, `a suspended device got ${answer}`)
    })

    test('a request on a connection that outlived its device is refused and the connection cut', async () => {
      const { device, connection } = await connectedDevice()
      // Straight in the store, as a database administrator might, leaving no trace the
      // endpoint polls for: only the check on every request stands in the way.
      await testWard.ward.store.db
        .updateTable('devices')
        .set({ status: 'decommissioned' })
        .where('id', '=', device.deviceId)
        .execute()
      const refused = await connection.send(spo2Reading(randomUUID()))
      assert.equal(refused.status, 403)
      assert.equal((JSON.parse(refused.body) as { code: string }).code, 'ERR_ACCESS_DENIED')
      assert.match(
        refused.head,
        /\r\nconnection: *close(\r\n|$)/i,
        'the answer ends the connection',
      )
      await closes(connection)
    })
  })
}

/** How long after `since` the connection closed; rejects when it is still open after `limitMs`. */
async function closesWithin(
  connection: DeviceConnection,
  since: number,
  limitMs: number,
): Promise<number> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still open after ${limitMs} ms`)), limitMs)
  })
  try {
    return (await Promise.race([connection.closed, late])) - since
  } finally {
    clearTimeout(timer)
  }
}

describe('device endpoint idle connections', () => {
  let testWard: TestWard
  let acme: TestOrganization

  before(async () => {
    testWard = await startTestWard('sqlite', { WARD_DEVICE_IDLE_TIMEOUT_SECONDS: '1' })
    acme = await createTestOrganization(testWard.ward, 'acme')
  })
  after(() => testWard?.close())

  // Without the idle timeout Node holds such connections for two minutes (a handshake) or a
  // minute (a request's headers); ten seconds leaves room for a loaded machine.
  test('a connection that never starts its handshake is closed after the idle timeout', async () => {
    const socket = netConnect({ host: '127.0.0.1', port: testWard.running.devices.port })
    socket.on('error', () => undefined)
    const opened = Date.now()
    await new Promise<void>((resolve) => socket.once('close', () => resolve()))
    const elapsed = Date.now() - opened
    assert.ok(elapsed >= 900 && elapsed < 10_000, `closed after ${elapsed} ms`)
  })

  test('a device connection silent after its handshake is closed after the idle timeout', async () => {
    const device = await enrollTestDevice(testWard, acme)
    const connection = await openDeviceConnection(testWard, acme, device)
    const opened = Date.now()
    const elapsed = await closesWithin(connection, opened, 10_000)
    assert.ok(elapsed >= 900, `closed after ${elapsed} ms`)
  })

  test('a device connection silent between requests, or within one, is closed after the idle timeout', async () => {
    const device = await enrollTestDevice(testWard, acme)
    const served = await openDeviceConnection(testWard, acme, device)
    assert.equal((await served.send(spo2Reading(randomUUID()))).status, 200)
    const answered = Date.now()
    assert.ok((await closesWithin(served, answered, 10_000)) >= 900)

    const halfSent = await openDeviceConnection(testWard, acme, device)
    halfSent.write(
      `POST /v1/observations HTTP/1.1\r\nhost: ${acme.serverName}\r\n` +
        'content-type: application/fhir+json\r\ncontent-length: 100\r\n\r\n{',
    )
    const started = Date.now()
    assert.ok((await closesWithin(halfSent, started, 10_000)) >= 900)
  })
})
