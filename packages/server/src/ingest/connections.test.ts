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
  openDeviceConnection,
  postAsDevice,
  run,
  spo2Reading,
  startTestWard,
  type DeviceConnection,
  type TestOrganization,
  type TestWard,
} from './test-support.js'

/**
 * Resolves with how long after `since` the connection closed, or rejects after `limitMs`. The
 * limits the tests pass stay below the five-second keep-alive timeout the endpoint keeps from Node, so a close
 * within them is the endpoint acting, not the connection idling out; they are wider than the
 * tens of milliseconds a close takes so a loaded machine does not fail the test.
 */
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

      const at = Date.now()
      await testWard.ward.fleet.suspendDevice(systemContext('test'), acme.slug, device.serial)
      const elapsed = await closesWithin(connection, at, 3000)
      assert.ok(elapsed < 3000, `closed after ${elapsed} ms`)

      const still = await bystander.connection.send(spo2Reading(randomUUID()))
      assert.equal(still.status, 200, "another device's connection stays open")
      bystander.connection.destroy()
    })

    test('revoking a device closes its open connection at once', async () => {
      const { device, connection } = await connectedDevice()
      const at = Date.now()
      await testWard.ward.fleet.revokeDevice(systemContext('test'), acme.slug, device.serial)
      const elapsed = await closesWithin(connection, at, 3000)
      assert.ok(elapsed < 3000, `closed after ${elapsed} ms`)
    })

    test('a reinstated device connects again, and keeps its connection through later changes', async () => {
      const { device, connection } = await connectedDevice()
      await testWard.ward.fleet.suspendDevice(systemContext('test'), acme.slug, device.serial)
      await closesWithin(connection, Date.now(), 3000)
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
        const at = Date.now()
        await elsewhere.fleet.suspendDevice(systemContext('test'), acme.slug, device.serial)
        await elsewhere.fleet.revokeDevice(systemContext('test'), acme.slug, revoked.device.serial)
        const elapsed = await closesWithin(connection, at, 4500)
        assert.ok(elapsed < 4500, `closed after ${elapsed} ms`)
        await closesWithin(revoked.connection, at, 4500)
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
      await closesWithin(connection, Date.now(), 3000)
    })
  })
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
})
