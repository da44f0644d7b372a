import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { AccessFixture, type Answer } from '../../test/access-fixture.js'
import { dialects } from '../../test/support.js'
import { systemContext } from '../context.js'
import { findDevice, setDeviceStatus } from '../devices/index.js'
import { OfflineSigner, firmwareImage, publish } from '../updates/test-support.js'

const json = (answer: Answer) => answer.json as Record<string, unknown>

/**
 * What the people, rollout and device-lifecycle routes answer and change, beyond who may call
 * them (the authorization matrix): a real release published in alpha's repository, a staged
 * rollout of it moved through its states, a wipe queued, a device decommissioned, and an
 * organization's people managed by its admin.
 */
for (const { dialect, skip } of dialects) {
  describe(`people, rollout and lifecycle routes on ${dialect}`, { skip }, () => {
    const fixture = new AccessFixture()
    const org = '/v1/organizations/alpha'
    const active: string[] = []

    before(async () => {
      await fixture.start(dialect)
      const ward = fixture.running.ward
      const system = systemContext('test')
      const offline = new OfflineSigner(await ward.updates.onlineKeys(system, 'alpha'))
      const targets = offline.release({ name: 'oximeter-1.1.0.bin', image: firmwareImage('r') })
      await publish(ward, 'alpha', offline.bundle({ 1: offline.root(1) }, targets))
      for (let index = 0; index < 2; index++) {
        const serial = await fixture.device('alpha')
        await ward.store.transaction(async (tx) =>
          setDeviceStatus(tx, await findDevice(tx, fixture.alpha.id, serial), 'active'),
        )
        active.push(serial)
      }
    })
    after(async () => {
      await fixture.stop()
    })

    test('a published release is rolled out, read with per-device status, paused, resumed and aborted', async () => {
      const releases = await fixture.call('GET', `${org}/releases`, 'device-engineer')
      assert.equal(releases.status, 200, releases.text)
      const [release] = releases.json as Record<string, unknown>[]
      assert.equal(release?.['version'], '1.1.0')
      assert.deepEqual(release?.['models'], ['Pulse oximeter'])

      const unknown = await fixture.call('POST', `${org}/rollouts`, 'device-engineer', {
        release: 'no-such-release',
      })
      assert.equal(unknown.status, 400)
      assert.match(String(json(unknown)['detail']), /release/)

      const created = await fixture.call('POST', `${org}/rollouts`, 'device-engineer', {
        release: release?.['id'],
        stages: [100],
      })
      assert.equal(created.status, 201, created.text)
      assert.equal(json(created)['state'], 'running')
      assert.equal(json(created)['releaseVersion'], '1.1.0')
      const path = `${org}/rollouts/${json(created)['id'] as string}`

      // Support reads the rollout and each device's place in it.
      const shown = await fixture.call('GET', path, 'support')
      assert.equal(shown.status, 200, shown.text)
      const devices = json(shown)['devices'] as Record<string, unknown>[]
      for (const serial of active) {
        assert.ok(devices.some((device) => device['serial'] === serial && device['stage'] === 0))
      }
      assert.ok(devices.every((device) => device['status'] === 'pending'))
      assert.equal((await fixture.call('POST', `${path}/pause`, 'support')).status, 403)

      const paused = await fixture.call('POST', `${path}/pause`, 'device-engineer')
      assert.equal(json(paused)['state'], 'paused')
      assert.equal(json(paused)['pausedReason'], 'operator')
      const resumed = await fixture.call('POST', `${path}/resume`, 'org-admin')
      assert.equal(json(resumed)['state'], 'running')
      const again = await fixture.call('POST', `${path}/resume`, 'org-admin')
      assert.equal(again.status, 409)
      assert.equal(json(again)['code'], 'ERR_ROLLOUT_STATE')
      const aborted = await fixture.call('POST', `${path}/abort`, 'device-engineer')
      assert.equal(json(aborted)['state'], 'aborted')

      const listed = await fixture.call('GET', `${org}/rollouts`, 'support')
      assert.deepEqual(
        (listed.json as Record<string, unknown>[]).map((rollout) => rollout['state']),
        ['aborted'],
      )
      const missing = await fixture.call(
        'GET',
        `${org}/rollouts/00000000-0000-4000-8000-000000000000`,
        'support',
      )
      assert.equal(missing.status, 404)
      assert.equal(json(missing)['detail'], 'no such resource')

      const events = await fixture.auditEvents('alpha')
      const create = events.find((event) => event['subtype']?.code === 'rollout.create')
      assert.equal(create?.['policy']?.rule, 'device-engineer.device-engineering')
    })

    test('a wipe is queued once for an active device; a device is decommissioned for good', async () => {
      const serial = active[0] ?? ''
      const wipe = await fixture.call('POST', `${org}/devices/${serial}/wipe`, 'security-officer')
      assert.equal(wipe.status, 202, wipe.text)
      assert.equal(json(wipe)['kind'], 'wipe')
      assert.equal(json(wipe)['status'], 'pending')
      const twice = await fixture.call('POST', `${org}/devices/${serial}/wipe`, 'org-admin')
      assert.equal(json(twice)['id'], json(wipe)['id'])
      const certificates = await fixture.call(
        'GET',
        `${org}/devices/${serial}/wipe-certificates`,
        'device-engineer',
      )
      assert.deepEqual(certificates.json, [])

      const fresh = await fixture.device('alpha', fixture.own)
      const gone = await fixture.call('POST', `${org}/devices/${fresh}/decommission`, 'org-admin')
      assert.equal(gone.status, 200, gone.text)
      assert.equal(json(gone)['status'], 'decommissioned')
      assert.equal(json(gone)['patient'], null)
      const suspend = await fixture.call('POST', `${org}/devices/${fresh}/suspension`, 'org-admin')
      assert.equal(suspend.status, 409)
    })

    test("an org admin manages their organization's people and cannot mint a platform operator", async () => {
      const people = `${org}/people`
      const mint = await fixture.call('POST', people, 'org-admin', {
        login: 'would.be.operator',
        roles: ['platform-operator'],
      })
      assert.equal(mint.status, 403)
      assert.match(String(json(mint)['detail']), /may not grant the role platform-operator/)
      const badRole = await fixture.call('POST', people, 'org-admin', {
        login: 'someone',
        roles: ['superuser'],
      })
      assert.equal(badRole.status, 400)

      const created = await fixture.call('POST', people, 'org-admin', {
        login: 'Nurse.Kim',
        roles: ['care-coordinator'],
      })
      assert.equal(created.status, 201, created.text)
      const token = json(created)['setupToken'] as string
      assert.match(token, /^ward_setup_/)
      const person = json(created)['person'] as Record<string, unknown>
      assert.equal(person['login'], 'nurse.kim')
      const path = `${people}/${person['id'] as string}`

      const patient = await fixture.call('PUT', `${path}/roles/patient`, 'org-admin', {
        patient: fixture.own.pseudonym,
      })
      assert.equal(patient.status, 200, patient.text)
      assert.deepEqual(json(patient)['roles'], ['care-coordinator', 'patient'])
      assert.equal(json(patient)['patient'], fixture.own.pseudonym)
      const foreignPatient = await fixture.call('PUT', `${path}/roles/patient`, 'org-admin', {
        patient: fixture.betaPatient.pseudonym,
      })
      assert.equal(foreignPatient.status, 400)
      const revoked = await fixture.call('DELETE', `${path}/roles/care-coordinator`, 'org-admin')
      assert.deepEqual(json(revoked)['roles'], ['patient'])

      const reissued = await fixture.call('POST', `${path}/setup-tokens`, 'org-admin')
      assert.equal(reissued.status, 201)
      assert.notEqual(json(reissued)['setupToken'], token)
      const disabled = await fixture.call('POST', `${path}/disablement`, 'org-admin')
      assert.equal(json(disabled)['status'], 'disabled')

      // Beta's people are not alpha's admin's to see, nor alpha's person under beta's path.
      const foreign = await fixture.call(
        'POST',
        `/v1/organizations/beta/people/${person['id'] as string}/disablement`,
        'org-admin',
      )
      assert.equal(foreign.status, 404)
      const unknown = await fixture.call(
        'POST',
        `${people}/00000000-0000-4000-8000-000000000000/disablement`,
        'org-admin',
      )
      assert.equal(unknown.status, 404)
      assert.deepEqual(
        Object.keys(json(foreign)).sort(),
        Object.keys(json(unknown)).sort(),
        'the same answer for another organization and none',
      )

      const listed = await fixture.call('GET', people, 'org-admin')
      assert.ok(
        (listed.json as Record<string, unknown>[]).some((entry) => entry['login'] === 'nurse.kim'),
      )
      assert.equal(listed.text.includes('ward_setup_'), false)
      const logs = fixture.logLines.join('\n')
      assert.equal(logs.includes(token), false)
      assert.equal(logs.includes(json(reissued)['setupToken'] as string), false)
      const audit = await fixture.allAuditText()
      assert.equal(audit.includes(token), false)
      assert.match(audit, /user\.role\.grant/)
    })
  })
}
