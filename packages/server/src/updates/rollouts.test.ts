import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, beforeEach, describe, test } from 'node:test'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  testConfig,
  type TestDatabase,
} from '../../test/support.js'
import { systemContext } from '../context.js'
import {
  findDevice,
  setDeviceStatus,
  standardDeviceModels,
  type Device,
  type DeviceModel,
} from '../devices/index.js'
import { rolloutJob } from '../jobs/index.js'
import { Rollouts } from '../rollouts.js'
import { Ward, initializeWard } from '../ward.js'
import type { ReleaseCatalog, RolloutDeviceStatus, RolloutRelease } from './index.js'
import { rolloutPosition, stageFor } from './rollout-selection.js'

const operator = systemContext('test')
const device = (id: string) => ({ ...operator, actor: { type: 'device' as const, id } })

describe('rollout selection', () => {
  test('places a device at the same position for the same rollout, and elsewhere for another', () => {
    const rollout = randomUUID()
    const deviceId = randomUUID()
    assert.equal(rolloutPosition(rollout, deviceId), rolloutPosition(rollout, deviceId))
    const positions = Array.from({ length: 20 }, () => rolloutPosition(randomUUID(), deviceId))
    assert.ok(new Set(positions).size === 20, 'other rollouts place the device elsewhere')
  })

  test('spreads devices evenly and keeps every earlier stage in the later ones', () => {
    const rollout = randomUUID()
    const stages = [1, 10, 50, 100]
    const counts = [0, 0, 0, 0]
    let outside = 0
    for (let index = 0; index < 10_000; index++) {
      const stage = stageFor(rolloutPosition(rollout, randomUUID()), 50, stages)
      if (stage === undefined) outside++
      else counts[stage] = (counts[stage] as number) + 1
    }
    // 50 % of the fleet, in slices of 1, 9, 40 and 50 % of that half.
    assert.ok(Math.abs(outside - 5000) < 300, `outside ${outside}`)
    assert.ok(Math.abs((counts[0] as number) - 50) < 40, `stage 0 ${counts[0]}`)
    assert.ok(Math.abs((counts[1] as number) - 450) < 120, `stage 1 ${counts[1]}`)
    assert.ok(Math.abs((counts[3] as number) - 2500) < 250, `stage 3 ${counts[3]}`)
    assert.equal(stageFor(0.004, 100, stages), 0)
    assert.equal(stageFor(0.05, 100, stages), 1)
    assert.equal(stageFor(0.05, 4, stages), undefined)
  })
})

for (const { dialect, skip } of dialects) {
  describe(`rollouts on ${dialect}`, { skip }, () => {
    const scratch = temporaryDirectory()
    let database: TestDatabase
    let ward: Ward
    let oximeter: DeviceModel
    let scale: DeviceModel
    let oximeters: Device[]
    let clock: Date
    let rollouts: Rollouts
    const slug = 'acme'

    const releases = new Map<string, RolloutRelease>()
    const catalog: ReleaseCatalog = {
      findRelease: async (_tx, _organizationId, releaseId) => {
        const release = releases.get(releaseId)
        if (release === undefined) throw new Error(`no release ${releaseId}`)
        return release
      },
    }
    const advanceClock = (seconds: number) => {
      clock = new Date(clock.getTime() + seconds * 1000)
    }

    before(async () => {
      database = await freshDatabase(dialect, scratch.path)
      const config = testConfig(`${scratch.path}/home`, database.url)
      await initializeWard(config, operator)
      ward = await Ward.open(config)
      const organization = await ward.createOrganization(operator, { slug, name: 'Acme' })
      const models = []
      for (const model of standardDeviceModels.slice(0, 4)) {
        models.push(await ward.fleet.createDeviceModel(operator, slug, model))
      }
      oximeter = models[0] as DeviceModel
      scale = models[3] as DeviceModel
      oximeters = []
      for (let index = 0; index < 200; index++) {
        const serial = `PO-${String(index).padStart(4, '0')}`
        await ward.fleet.createDevice(operator, slug, { serial, model: oximeter.name })
      }
      for (let index = 0; index < 5; index++) {
        await ward.fleet.createDevice(operator, slug, { serial: `SC-${index}`, model: scale.name })
      }
      // As enrollment would: every device active, so that rollouts can reach it.
      await ward.store.transaction(async (tx) => {
        for (const serial of [
          ...Array.from({ length: 200 }, (_, index) => `PO-${String(index).padStart(4, '0')}`),
          ...Array.from({ length: 5 }, (_, index) => `SC-${index}`),
        ]) {
          const found = await findDevice(tx, organization.id, serial)
          const active = await setDeviceStatus(tx, found, 'active')
          if (active.modelId === oximeter.id) oximeters.push(active)
        }
      })
    })
    after(async () => {
      await ward?.close()
      await database?.drop()
      scratch.remove()
    })
    beforeEach(async () => {
      clock = new Date('2026-12-01T08:00:00.000Z')
      rollouts = new Rollouts(ward, { releases: catalog, clock: () => clock })
      // Each test starts with no open rollout.
      for (const open of await rollouts.list(slug)) {
        if (open.state === 'running' || open.state === 'paused') {
          await rollouts.abort(operator, slug, open.id)
        }
      }
    })

    function release(version: string): string {
      const id = `oximeter-fw-${version}`
      releases.set(id, { id, version, targetName: `${id}.bin`, deviceModelIds: [oximeter.id] })
      return id
    }

    async function statuses(rolloutId: string): Promise<Map<string, RolloutDeviceStatus>> {
      const devices = await rollouts.devices(slug, rolloutId)
      return new Map(devices.map((entry) => [entry.deviceId, entry.status]))
    }

    /** Every device of the stage under way that has not settled yet, as the devices see it. */
    async function waitingDevices(rolloutId: string) {
      const summary = await rollouts.summary(slug, rolloutId)
      const stage = summary.rollout.stage
      return (await rollouts.devices(slug, rolloutId)).filter(
        (entry) => entry.stage === stage && ['pending', 'offered'].includes(entry.status),
      )
    }

    async function report(
      deviceId: string,
      releaseId: string,
      version: string,
      status: string,
      reason?: string,
    ) {
      const organization = (await ward.listOrganizations()).find((org) => org.slug === slug)
      return rollouts.report(device(deviceId), organization?.id as string, deviceId, {
        release: releaseId,
        version,
        status,
        ...(reason === undefined ? {} : { reason }),
      })
    }

    async function organizationId(): Promise<string> {
      const organization = (await ward.listOrganizations()).find((org) => org.slug === slug)
      return organization?.id as string
    }

    async function auditOperations(rolloutId: string): Promise<string[]> {
      const rows = await ward.store.db
        .selectFrom('audit_entries')
        .innerJoin('audit_logs', 'audit_logs.id', 'audit_entries.log_id')
        .select('audit_entries.body')
        .where('audit_logs.name', '=', slug)
        .orderBy('audit_entries.idx')
        .execute()
      return rows
        .map((row) => JSON.parse(Buffer.from(row.body).toString('utf8')) as Record<string, unknown>)
        .filter((event) =>
          (event['entity'] as { type: string; what: string }[]).some(
            (entity) => entity.type === 'rollout' && entity.what === rolloutId,
          ),
        )
        .map((event) => (event['subtype'] as { code: string }).code)
    }

    test('takes each stage deterministically and moves on once its devices installed', async () => {
      const version = '1.1.0'
      const releaseId = release(version)
      const rollout = await rollouts.create(operator, slug, {
        releaseId,
        stages: [5, 25, 100],
        reportDeadlineSeconds: 3600,
      })
      assert.equal(rollout.state, 'running')
      assert.equal(rollout.stage, 0)
      assert.deepEqual(rollout.modelIds, [oximeter.id], 'only the models the release fits')

      for (let stage = 0; stage < 3; stage++) {
        const summary = await rollouts.summary(slug, rollout.id)
        assert.equal(summary.rollout.stage, stage)
        const taken = await rollouts.devices(slug, rollout.id)
        // Exactly the devices whose position falls into this stage or an earlier one.
        const expected = oximeters
          .filter((entry) => {
            const first = stageFor(rolloutPosition(rollout.id, entry.id), 100, [5, 25, 100])
            return first !== undefined && first <= stage
          })
          .map((entry) => entry.id)
          .sort()
        assert.deepEqual(taken.map((entry) => entry.deviceId).sort(), expected)

        for (const entry of await waitingDevices(rollout.id)) {
          const offer = await rollouts.offer(
            device(entry.deviceId),
            await organizationId(),
            entry.deviceId,
          )
          assert.deepEqual(offer, {
            rolloutId: rollout.id,
            releaseId,
            version,
            target: `${releaseId}.bin`,
          })
          await report(entry.deviceId, releaseId, version, 'downloading')
          await report(entry.deviceId, releaseId, version, 'installed')
          // Reporting the same status again is harmless.
          await report(entry.deviceId, releaseId, version, 'installed')
        }
        advanceClock(60)
        await rolloutJob(rollouts, 30).run()
      }
      const done = await rollouts.summary(slug, rollout.id)
      assert.equal(done.rollout.state, 'completed')
      assert.equal(
        done.stages.reduce((sum, stage) => sum + stage.devices.installed, 0),
        200,
        'every oximeter installed; no scale was offered',
      )
      const operations = await auditOperations(rollout.id)
      assert.equal(operations[0], 'rollout.create')
      assert.equal(operations.filter((code) => code === 'rollout.stage.start').length, 3)
      assert.equal(operations.filter((code) => code === 'rollout.device.offer').length, 200)
      assert.equal(operations.filter((code) => code === 'rollout.device.status').length, 400)
      assert.equal(operations.at(-1), 'rollout.complete')
    })

    test('a stage with a 30 % failure rate halts the rollout before it spreads', async () => {
      const version = '1.2.0'
      const releaseId = release(version)
      const rollout = await rollouts.create(operator, slug, {
        releaseId,
        stages: [20, 60, 100],
        failureThreshold: 0.2,
      })
      const stageDevices = await waitingDevices(rollout.id)
      assert.ok(stageDevices.length >= 20, `stage 0 took ${stageDevices.length}`)
      // Every third device of ten fails: 30 %, reported in the order the devices come.
      let failed = 0
      for (const [index, entry] of stageDevices.entries()) {
        const failing = index % 10 < 3
        await rollouts.offer(device(entry.deviceId), await organizationId(), entry.deviceId)
        const outcome = failing
          ? await report(entry.deviceId, releaseId, version, 'failed', 'signature-invalid')
          : await report(entry.deviceId, releaseId, version, 'installed')
        if (failing) failed++
        if (outcome.rollout.state === 'paused') break
      }
      const summary = await rollouts.summary(slug, rollout.id)
      assert.equal(summary.rollout.state, 'paused')
      assert.equal(summary.rollout.pausedReason, 'failure-threshold')
      assert.equal(summary.rollout.stage, 0, 'no later stage started')
      assert.ok(failed / stageDevices.length > 0.2)
      const taken = await statuses(rollout.id)
      assert.equal(taken.size, stageDevices.length, 'no device of a later stage was taken in')

      // A paused rollout offers nothing, not even to its stage's devices that were not told yet.
      const untold = [...taken].find(([, status]) => status === 'pending')
      if (untold !== undefined) {
        assert.equal(
          await rollouts.offer(device(untold[0]), await organizationId(), untold[0]),
          undefined,
        )
      }
      advanceClock(7 * 86_400)
      await rolloutJob(rollouts, 30).run()
      assert.equal((await rollouts.summary(slug, rollout.id)).rollout.state, 'paused')
      const operations = await auditOperations(rollout.id)
      assert.equal(operations.filter((code) => code === 'rollout.pause').length, 1)
    })

    test('devices that stop reporting past the deadline halt the rollout', async () => {
      const version = '1.3.0'
      const releaseId = release(version)
      const rollout = await rollouts.create(operator, slug, {
        releaseId,
        stages: [10, 100],
        reportDeadlineSeconds: 600,
      })
      const stageDevices = await waitingDevices(rollout.id)
      const [silent, ...reporting] = stageDevices
      assert.ok(silent !== undefined)
      for (const entry of reporting) {
        await rollouts.offer(device(entry.deviceId), await organizationId(), entry.deviceId)
        await report(entry.deviceId, releaseId, version, 'installed')
      }
      await rollouts.offer(device(silent.deviceId), await organizationId(), silent.deviceId)
      await report(silent.deviceId, releaseId, version, 'downloading')

      advanceClock(599)
      await rolloutJob(rollouts, 30).run()
      assert.equal((await rollouts.summary(slug, rollout.id)).rollout.state, 'running')

      advanceClock(2)
      await rolloutJob(rollouts, 30).run()
      const summary = await rollouts.summary(slug, rollout.id)
      assert.equal(summary.rollout.state, 'paused')
      assert.equal(summary.rollout.pausedReason, 'report-deadline')
      assert.equal(summary.rollout.stage, 0)
      assert.equal((await statuses(rollout.id)).get(silent.deviceId), 'timed-out')

      // The operator resumes: the timed-out device is offered the release again, and the
      // next stage starts once it reports.
      const resumed = await rollouts.resume(operator, slug, rollout.id)
      assert.equal(resumed.state, 'running')
      assert.equal(resumed.stage, 0)
      assert.equal((await statuses(rollout.id)).get(silent.deviceId), 'pending')
      await report(silent.deviceId, releaseId, version, 'installed')
      assert.equal((await statuses(rollout.id)).get(silent.deviceId), 'installed')
      assert.equal((await rollouts.summary(slug, rollout.id)).rollout.stage, 1)
    })

    test('resuming after a deadline offers the timed-out devices of the last stage again', async () => {
      const version = '1.3.5'
      const releaseId = release(version)
      const org = await organizationId()
      const [late, prompt] = oximeters.slice(20, 22) as [Device, Device]
      const rollout = await rollouts.create(operator, slug, {
        releaseId,
        devices: [late.serial, prompt.serial],
        stages: [100],
        reportDeadlineSeconds: 600,
      })
      await rollouts.offer(device(prompt.id), org, prompt.id)
      await report(prompt.id, releaseId, version, 'installed')
      advanceClock(601)
      await rolloutJob(rollouts, 30).run()
      assert.equal(
        (await rollouts.summary(slug, rollout.id)).rollout.pausedReason,
        'report-deadline',
      )
      assert.equal((await statuses(rollout.id)).get(late.id), 'timed-out')

      const resumed = await rollouts.resume(operator, slug, rollout.id)
      assert.equal(
        resumed.state,
        'running',
        'it does not complete while the late device may report',
      )
      assert.equal(Date.parse(resumed.stageDeadlineAt), clock.getTime() + 600_000)
      assert.deepEqual(await rollouts.offer(device(late.id), org, late.id), {
        rolloutId: rollout.id,
        releaseId,
        version,
        target: `${releaseId}.bin`,
      })
      assert.equal((await statuses(rollout.id)).get(late.id), 'offered')

      // Silent past the fresh deadline: it times out and the rollout pauses again.
      advanceClock(601)
      await rolloutJob(rollouts, 30).run()
      let summary = await rollouts.summary(slug, rollout.id)
      assert.equal(summary.rollout.pausedReason, 'report-deadline')
      assert.equal((await statuses(rollout.id)).get(late.id), 'timed-out')

      // Offered once more, it installs, and only then does the rollout complete.
      assert.equal((await rollouts.resume(operator, slug, rollout.id)).state, 'running')
      await rollouts.offer(device(late.id), org, late.id)
      await report(late.id, releaseId, version, 'installed')
      summary = await rollouts.summary(slug, rollout.id)
      assert.equal(summary.rollout.state, 'completed')
      const operations = await auditOperations(rollout.id)
      assert.equal(operations.filter((operation) => operation === 'rollout.device.offer').length, 3)
    })

    test('resuming accepts timed-out devices that are no longer active', async () => {
      const version = '1.3.6'
      const releaseId = release(version)
      const org = await organizationId()
      const [gone, prompt] = oximeters.slice(22, 24) as [Device, Device]
      const rollout = await rollouts.create(operator, slug, {
        releaseId,
        devices: [gone.serial, prompt.serial],
        stages: [100],
        reportDeadlineSeconds: 600,
      })
      await rollouts.offer(device(prompt.id), org, prompt.id)
      await report(prompt.id, releaseId, version, 'installed')
      await ward.store.transaction(async (tx) => {
        await setDeviceStatus(tx, await findDevice(tx, org, gone.serial), 'suspended')
      })
      try {
        advanceClock(601)
        await rolloutJob(rollouts, 30).run()
        assert.equal((await rollouts.summary(slug, rollout.id)).rollout.state, 'paused')
        const resumed = await rollouts.resume(operator, slug, rollout.id)
        assert.equal(resumed.state, 'completed')
        assert.equal((await statuses(rollout.id)).get(gone.id), 'timed-out')
      } finally {
        await ward.store.transaction(async (tx) => {
          await setDeviceStatus(tx, await findDevice(tx, org, gone.serial), 'active')
        })
      }
    })

    test('an operator can pause, resume and abort, and a finished rollout stays finished', async () => {
      const version = '1.4.0'
      const releaseId = release(version)
      const group = oximeters.slice(0, 10).map((entry) => entry.serial)
      const rollout = await rollouts.create(operator, slug, {
        releaseId,
        devices: group,
        stages: [100],
      })
      const taken = await rollouts.devices(slug, rollout.id)
      assert.equal(taken.length, 10, 'a group rollout takes exactly its group')
      const first = taken[0]?.deviceId as string
      const org = await organizationId()

      await assert.rejects(
        rollouts.create(operator, slug, { releaseId: release('1.4.1') }),
        (error: { code?: string }) => error.code === 'ERR_ROLLOUT_STATE',
        'a second open rollout for the same model is refused',
      )

      const paused = await rollouts.pause(operator, slug, rollout.id)
      assert.equal(paused.state, 'paused')
      assert.equal(paused.pausedReason, 'operator')
      assert.equal(await rollouts.offer(device(first), org, first), undefined)
      await assert.rejects(
        rollouts.pause(operator, slug, rollout.id),
        (error: { code?: string }) => error.code === 'ERR_ROLLOUT_STATE',
      )

      const resumed = await rollouts.resume(operator, slug, rollout.id)
      assert.equal(resumed.state, 'running')
      assert.deepEqual(await rollouts.offer(device(first), org, first), {
        rolloutId: rollout.id,
        releaseId,
        version,
        target: `${releaseId}.bin`,
      })

      const aborted = await rollouts.abort(operator, slug, rollout.id)
      assert.equal(aborted.state, 'aborted')
      assert.equal(await rollouts.offer(device(first), org, first), undefined)
      for (const action of ['resume', 'pause', 'abort'] as const) {
        await assert.rejects(
          rollouts[action](operator, slug, rollout.id),
          (error: { code?: string }) => error.code === 'ERR_ROLLOUT_STATE',
        )
      }
      const operations = await auditOperations(rollout.id)
      for (const expected of ['rollout.pause', 'rollout.resume', 'rollout.abort']) {
        assert.ok(operations.includes(expected), `${expected} is audited`)
      }
    })

    test('refuses bad plans, naming what is wrong', async () => {
      const releaseId = release('1.5.0')
      const cases: [Record<string, unknown>, RegExp][] = [
        [{ stages: [10, 5, 100] }, /stages must be 1–10 ascending/],
        [{ stages: [10, 50] }, /ending at 100/],
        [{ percent: 0 }, /percent must be a whole number from 1 to 100/],
        [{ failureThreshold: 1.5 }, /failure threshold/],
        [{ reportDeadlineSeconds: 5 }, /report deadline must be 60–2592000/],
        [{ models: [scale.name] }, /does not fit/],
      ]
      for (const [plan, message] of cases) {
        await assert.rejects(
          rollouts.create(operator, slug, { releaseId, ...plan }),
          (error: { code?: string; message: string }) =>
            error.code === 'ERR_INPUT_INVALID' && message.test(error.message),
          JSON.stringify(plan),
        )
      }
      releases.set('bad-version', {
        id: 'bad-version',
        version: '1.0',
        targetName: 'bad-version.bin',
        deviceModelIds: [oximeter.id],
      })
      await assert.rejects(rollouts.create(operator, slug, { releaseId: 'bad-version' }), /SemVer/)
      assert.equal((await rollouts.list(slug)).filter((r) => r.releaseId === releaseId).length, 0)
    })
  })
}
