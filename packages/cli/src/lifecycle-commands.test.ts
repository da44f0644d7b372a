import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  testEnvironment,
  type TestDatabase,
} from '../../server/test/support.js'

const repository = fileURLToPath(new URL('../../..', import.meta.url))
// The command as shipped: the compiled build that `npm test` makes before running the tests.
const entry = fileURLToPath(new URL('../dist/main.js', import.meta.url))

for (const { dialect, skip } of dialects) {
  describe(`ward device and rollout lifecycle commands on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let env: Record<string, string>

    const ward = (...args: string[]) => {
      const result = spawnSync(process.execPath, [entry, ...args], {
        cwd: repository,
        env: { PATH: process.env['PATH'] ?? '', ...env },
        encoding: 'utf8',
      })
      return { status: result.status, stdout: result.stdout, stderr: result.stderr }
    }
    const ok = (...args: string[]) => {
      const result = ward(...args)
      assert.equal(result.status, 0, `ward ${args.join(' ')} failed: ${result.stderr}`)
      return result.stdout
    }

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      env = testEnvironment(join(directory.path, 'home'), database.url)
      ok('init')
      ok('org', 'create', 'acme', '--name', 'Acme')
    })
    after(async () => {
      await database.drop()
      directory.remove()
    })

    test('wipe is refused for a device that never connected; decommission retires it', () => {
      ok('device-model', 'add-standard', '--org', 'acme')
      ok('device', 'create', '--org', 'acme', '--serial', 'PO-1', '--model', 'Pulse oximeter')
      const wipe = ward('device', 'wipe', '--org', 'acme', '--serial', 'PO-1')
      assert.equal(wipe.status, 1)
      assert.match(wipe.stderr, /ERR_DEVICE_STATE.*provisioned device cannot be wiped remotely/)
      assert.match(
        ok('device', 'decommission', '--org', 'acme', '--serial', 'PO-1'),
        /device PO-1 decommissioned: certificates revoked, assignment ended/,
      )
      assert.match(ok('device', 'list', '--org', 'acme'), /^PO-1\tdecommissioned\t-\t/m)
      assert.equal(ok('device', 'wipe-certificates', '--org', 'acme', '--serial', 'PO-1'), '')
      const again = ward('device', 'decommission', '--org', 'acme', '--serial', 'PO-1')
      assert.equal(again.status, 1)
      assert.match(again.stderr, /a decommissioned device cannot become decommissioned/)
    })

    test('rollout commands name what is missing', () => {
      assert.equal(ok('rollout', 'list', '--org', 'acme'), '')
      const create = ward('rollout', 'create', '--org', 'acme', '--release', 'fw-1')
      assert.equal(create.status, 1)
      // Rollouts look releases up in the organization's published ones, which have no fw-1.
      assert.match(create.stderr, /ERR_RELEASE_NOT_FOUND: release fw-1 does not exist/)
      const stages = ward(
        'rollout',
        'create',
        '--org',
        'acme',
        '--release',
        'fw-1',
        '--stages',
        '1,x',
      )
      assert.equal(stages.status, 1)
      assert.match(stages.stderr, /--stages must be a number/)
      const show = ward('rollout', 'show', '--org', 'acme', '--rollout', 'nope')
      assert.equal(show.status, 1)
      assert.match(show.stderr, /ERR_ROLLOUT_NOT_FOUND/)
    })
  })
}
