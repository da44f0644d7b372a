import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import {
  Ward,
  findDevice,
  initializeWard,
  setDeviceStatus,
  standardDeviceModels,
  systemContext,
} from '@ward/server'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  testConfig,
  type TestDatabase,
} from '../../server/test/support.js'
import { rolloutCommand } from './rollout-commands.js'

const operator = systemContext('test')

for (const { dialect, skip } of dialects) {
  describe(`ward rollout commands on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let ward: Ward

    const run = (subcommand: string, values: Record<string, string>) =>
      rolloutCommand(ward, operator, subcommand, { org: 'acme', ...values }, (value, flag) => {
        if (value === undefined) throw new Error(`missing ${flag}`)
        return value
      })

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      const config = testConfig(join(directory.path, 'home'), database.url)
      await initializeWard(config, operator)
      ward = await Ward.open(config)
      const organization = await ward.createOrganization(operator, { slug: 'acme', name: 'Acme' })
      const model = await ward.fleet.createDeviceModel(
        operator,
        'acme',
        standardDeviceModels[0] as (typeof standardDeviceModels)[number],
      )
      for (const serial of ['PO-0001', 'PO-0002']) {
        await ward.fleet.createDevice(operator, 'acme', { serial, model: model.name })
        await ward.store.transaction(async (tx) => {
          await setDeviceStatus(tx, await findDevice(tx, organization.id, serial), 'active')
        })
      }
      ward.rollouts.useReleases({
        findRelease: async (_tx, _organizationId, releaseId) => ({
          id: releaseId,
          version: '1.1.0',
          targetName: `${releaseId}.bin`,
          deviceModelIds: [model.id],
        }),
      })
    })
    after(async () => {
      await ward?.close()
      await database?.drop()
      directory?.remove()
    })

    test('rollout devices names each device by its serial, then its id', async () => {
      const created = await run('create', { release: 'fw-1', stages: '100' })
      const rolloutId = /created rollout (\S+)/.exec(created?.[0] ?? '')?.[1] as string
      const lines = (await run('devices', { rollout: rolloutId })) ?? []
      const devices = await ward.fleet.listDevices('acme')
      assert.equal(lines.length, 2)
      for (const device of devices) {
        assert.ok(
          lines.some((line) => line.startsWith(`${device.serial}\t${device.id}\tstage 1\tpending`)),
          `${device.serial} in ${lines.join(' | ')}`,
        )
      }
    })
  })
}
