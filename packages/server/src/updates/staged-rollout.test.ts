import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import {
  askRollout,
  enroll,
  followRollout,
  simulatedHealthy,
  type DeviceClient,
} from '@ward/device'

import { dialects } from '../../test/support.js'
import { systemContext } from '../context.js'
import { startTestWard, type TestWard } from '../ingest/test-support.js'
import type { Rollout } from './rollouts.js'
import {
  firmwareImage,
  publish,
  repositoryWithRoot,
  updaterFor,
  type OfflineSigner,
} from './test-support.js'

// Rollouts joined to the signed-update path, end to end: releases signed offline and published
// to the organization's TUF repository, a fleet of enrolled devices each running the real
// update agent (tuf-js over its own mutual-TLS connection, A/B slots), following the rollout
// Ward offers it and reporting its outcome. A share of the fleet fails its health check, as the
// simulator's --fail-rate makes it: always the same devices, by serial.

// The device command as shipped: the compiled build that `npm test` makes first.
const deviceCommand = fileURLToPath(new URL('../../../device/dist/main.js', import.meta.url))
const operator = systemContext('test')
const fleetSize = 20
const failRate = 0.3

interface FleetDevice {
  readonly serial: string
  readonly client: DeviceClient
  readonly directory: string
}

for (const { dialect, skip } of dialects) {
  describe(`a staged rollout of signed releases to a fleet on ${dialect}`, { skip }, () => {
    let testWard: TestWard
    let root1: Uint8Array
    let offline: OfflineSigner
    let slug: string
    const fleet: FleetDevice[] = []
    const releaseIds = new Map<string, string>()

    before(async () => {
      testWard = await startTestWard(dialect)
      const repository = await repositoryWithRoot(testWard.ward, 'acme')
      offline = repository.offline
      root1 = repository.root1
      slug = repository.organization.slug
      for (const version of ['1.1.0', '1.2.0']) {
        const targets = offline.release({
          name: `oximeter-${version}.bin`,
          image: firmwareImage(version),
          fields: { version },
        })
        const published = await publish(
          testWard.ward,
          slug,
          offline.bundle(version === '1.1.0' ? { 1: root1 } : {}, targets),
        )
        const release = published.releases.find((entry) => entry.version === version)
        assert.ok(release, `release ${version} published`)
        releaseIds.set(version, release.id)
      }
      for (let index = 0; index < fleetSize; index++) {
        const serial = `PO-${String(index).padStart(4, '0')}`
        await testWard.ward.fleet.createDevice(operator, slug, { serial, model: 'Pulse oximeter' })
        const { token } = await testWard.ward.fleet.issueEnrollmentToken(operator, slug, serial)
        const directory = join(testWard.directory, serial)
        mkdirSync(directory)
        const client = await enroll({
          url: testWard.running.deviceUrl,
          enrollmentUrl: testWard.running.url,
          serverName: repository.organization.serverName,
          caPem: testWard.serverCaPem,
          serial,
          token,
          keyDirectory: join(directory, 'identity'),
        })
        fleet.push({ serial, client, directory })
      }
    })

    after(async () => {
      for (const device of fleet) device.client.close()
      await testWard?.close()
    })

    const updater = (device: FleetDevice, rate: number) =>
      updaterFor(device.client, device.directory, root1, {
        healthy: simulatedHealthy(device.serial, rate),
      })

    /**
     * Every device follows the rollout once, then the rollout job moves it on, until the
     * rollout stops running. Resolves with the rollout and each device's outcomes.
     */
    async function run(rolloutId: string, rate: number) {
      const outcomes = new Map<string, string[]>()
      let rollout: Rollout | undefined
      for (let round = 0; round < 10; round++) {
        for (const device of fleet) {
          const followed = await followRollout({
            client: device.client,
            updater: updater(device, rate),
          })
          outcomes.set(device.serial, [...(outcomes.get(device.serial) ?? []), followed.outcome])
        }
        await testWard.ward.rollouts.advance(operator)
        rollout = (await testWard.ward.rollouts.summary(slug, rolloutId)).rollout
        if (rollout.state !== 'running') break
      }
      assert.ok(rollout)
      return { rollout, outcomes }
    }

    async function statusBySerial(rolloutId: string): Promise<Map<string, string>> {
      const devices = await testWard.ward.fleet.listDevices(slug)
      const serialOf = new Map(devices.map((device) => [device.id, device.serial]))
      return new Map(
        (await testWard.ward.rollouts.devices(slug, rolloutId)).map((entry) => [
          serialOf.get(entry.deviceId) as string,
          entry.status,
        ]),
      )
    }

    test('a healthy rollout of a published release completes, every device on the new version', async () => {
      const rollout = await testWard.ward.rollouts.create(operator, slug, {
        releaseId: releaseIds.get('1.1.0') as string,
        stages: [10, 50, 100],
      })
      assert.equal(rollout.releaseVersion, '1.1.0')
      const { rollout: done, outcomes } = await run(rollout.id, 0)
      assert.equal(done.state, 'completed')
      assert.equal(done.stage, 2)
      const statuses = await statusBySerial(rollout.id)
      assert.equal(statuses.size, fleetSize)
      for (const device of fleet) {
        assert.equal(statuses.get(device.serial), 'installed', device.serial)
        const slots = await updater(device, 0).slots()
        assert.equal(slots.slots[slots.active]?.version, '1.1.0', device.serial)
        assert.equal(slots.slots[slots.active]?.target, 'oximeter-1.1.0.bin', device.serial)
        // Each device installed once, and asking again after the end changes nothing.
        assert.equal(outcomes.get(device.serial)?.filter((o) => o === 'installed').length, 1)
        assert.equal(
          (await followRollout({ client: device.client, updater: updater(device, 0) })).outcome,
          'no-update',
        )
      }
    })

    test('a rollout whose devices fail their health check halts itself; they stay on the old version', async () => {
      const failing = fleet.filter((device) => !simulatedHealthy(device.serial, failRate))
      // The serials are fixed, so the same seven of twenty fail on every run.
      assert.equal(failing.length, 7)
      const rollout = await testWard.ward.rollouts.create(operator, slug, {
        releaseId: releaseIds.get('1.2.0') as string,
        stages: [10, 50, 100],
        failureThreshold: 0.1,
      })
      const { rollout: halted } = await run(rollout.id, failRate)
      assert.equal(halted.state, 'paused')
      assert.equal(halted.pausedReason, 'failure-threshold')

      const statuses = await statusBySerial(rollout.id)
      let rolledBack = 0
      for (const device of fleet) {
        const status = statuses.get(device.serial)
        const slots = await updater(device, failRate).slots()
        const active = slots.slots[slots.active]
        const inactive = slots.slots[slots.active === 'a' ? 'b' : 'a']
        if (status === undefined || status === 'pending' || status === 'offered') {
          // Not reached before the halt: still on what it ran.
          assert.equal(active?.version, '1.1.0', device.serial)
        } else if (simulatedHealthy(device.serial, failRate)) {
          assert.equal(status, 'installed', device.serial)
          assert.equal(active?.version, '1.2.0', device.serial)
        } else {
          assert.equal(status, 'rolled-back', device.serial)
          // Back on its previous version: the active slot runs 1.1.0, the new image is unused.
          assert.equal(active?.version, '1.1.0', device.serial)
          assert.equal(active?.target, 'oximeter-1.1.0.bin', device.serial)
          assert.equal(inactive?.target, 'oximeter-1.2.0.bin', device.serial)
          rolledBack++
        }
      }
      assert.ok(rolledBack > 0)
      // Halted before every device was reached, or at the last stage once its failures passed
      // the threshold: never completed.
      const summary = await testWard.ward.rollouts.summary(slug, rollout.id)
      const stage = summary.stages[halted.stage]
      assert.ok(stage !== undefined)
      const stageDevices = Object.values(stage.devices).reduce((sum, count) => sum + count, 0)
      assert.ok(
        (stage.devices['rolled-back'] + stage.devices.failed) / stageDevices > 0.1,
        JSON.stringify(summary.stages),
      )
      // A paused rollout offers nothing: devices not reached stay where they are.
      for (const device of fleet) {
        const followed = await followRollout({
          client: device.client,
          updater: updater(device, failRate),
        })
        assert.equal(followed.outcome, 'no-update', device.serial)
      }
      await testWard.ward.rollouts.abort(operator, slug, rollout.id)
    })

    test('rollouts take only published releases for models the organization has; ward-device follows, and a crash between install and report is harmless', async () => {
      await assert.rejects(
        testWard.ward.rollouts.create(operator, slug, { releaseId: 'no-such-release' }),
        (error: { code?: string }) => error.code === 'ERR_RELEASE_NOT_FOUND',
      )
      const foreign = await publish(
        testWard.ward,
        slug,
        offline.bundle(
          {},
          offline.release({
            name: 'pump-2.0.0.bin',
            image: firmwareImage('pump'),
            fields: { version: '2.0.0', models: ['Infusion pump'] },
          }),
        ),
      )
      await assert.rejects(
        testWard.ward.rollouts.create(operator, slug, {
          releaseId: foreign.releases[0]?.id as string,
        }),
        (error: { code?: string; message: string }) =>
          error.code === 'ERR_INPUT_INVALID' && /Infusion pump/.test(error.message),
      )

      const published = await publish(
        testWard.ward,
        slug,
        offline.bundle(
          {},
          offline.release({
            name: 'oximeter-1.3.0.bin',
            image: firmwareImage('1.3.0'),
            fields: { version: '1.3.0' },
          }),
        ),
      )
      const [crashed, commandLine] = fleet.filter((device) =>
        simulatedHealthy(device.serial, failRate),
      ) as [FleetDevice, FleetDevice]
      const rollout = await testWard.ward.rollouts.create(operator, slug, {
        releaseId: published.releases[0]?.id as string,
        devices: [crashed.serial, commandLine.serial],
        stages: [100],
      })

      // The device asked, reported downloading, installed, and stopped before reporting.
      const offer = await askRollout(crashed.client)
      assert.equal(offer?.target, 'oximeter-1.3.0.bin')
      assert.equal(offer?.rollout, rollout.id)
      await crashed.client.postJson('/v1/update-status', {
        release: offer?.release,
        version: '1.3.0',
        status: 'downloading',
      })
      await updater(crashed, 0).install('oximeter-1.3.0.bin')
      // Run again, it reports what its active slot holds instead of installing again.
      const resumed = await followRollout({ client: crashed.client, updater: updater(crashed, 0) })
      assert.equal(resumed.outcome, 'installed')
      assert.equal(resumed.version, '1.3.0')

      const rootFile = join(testWard.directory, '1.root.json')
      writeFileSync(rootFile, root1)
      // Ward serves from this very process, so the command must not block it.
      const follow = () =>
        new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
          execFile(
            process.execPath,
            [
              deviceCommand,
              'update',
              '--follow-rollout',
              '--dir',
              join(commandLine.directory, 'identity'),
              '--root',
              rootFile,
              '--model',
              'Pulse oximeter',
              '--fail-rate',
              String(failRate),
            ],
            { encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '' } },
            (error, stdout, stderr) => {
              resolve({ status: error === null ? 0 : Number(error.code), stdout, stderr })
            },
          )
        })
      const installed = await follow()
      assert.equal(installed.status, 0, installed.stderr)
      assert.match(
        installed.stdout,
        new RegExp(
          `^${commandLine.serial}: rollout ${rollout.id} offered oximeter-1\\.3\\.0\\.bin ` +
            '\\(1\\.3\\.0\\): installed; running 1\\.3\\.0\\n$',
        ),
      )
      const again = await follow()
      assert.equal(again.status, 0, again.stderr)
      assert.match(again.stdout, /no rollout offers this device an update; running 1\.3\.0/)

      const summary = await testWard.ward.rollouts.summary(slug, rollout.id)
      assert.equal(summary.rollout.state, 'completed')
      assert.equal(summary.stages[0]?.devices.installed, 2)
    })
  })
}
