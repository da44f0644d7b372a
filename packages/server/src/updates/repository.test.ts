import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { isWardError } from '@ward/core'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  testConfig,
  type TestDatabase,
} from '../../test/support.js'
import { systemContext } from '../context.js'
import { findDevice, setDeviceStatus, standardDeviceModels } from '../devices/index.js'
import { Ward, initializeWard } from '../ward.js'
import { findOrganization } from '../tenancy/index.js'
import { generateTufKey } from './offline-signing.js'
import { signSnapshotAndTimestamp } from './repository.js'
import { updateTimestampsJob } from './timestamp-job.js'
import { OfflineSigner, firmwareImage, publish } from './test-support.js'

for (const { dialect, skip } of dialects) {
  describe(`update repositories on ${dialect}`, { skip }, () => {
    let directory: ReturnType<typeof temporaryDirectory>
    let database: TestDatabase
    let ward: Ward
    let offline: OfflineSigner

    before(async () => {
      directory = temporaryDirectory()
      database = await freshDatabase(dialect, directory.path)
      const config = testConfig(join(directory.path, 'home'), database.url, {
        WARD_UPDATES_MAX_IMAGE_BYTES: '65536',
        WARD_UPDATES_TIMESTAMP_LIFETIME_SECONDS: '3600',
      })
      await initializeWard(config, systemContext('test'))
      ward = await Ward.open(config)
      await ward.createOrganization(systemContext('test'), { slug: 'acme', name: 'Acme clinic' })
      offline = new OfflineSigner(await ward.updates.onlineKeys(systemContext('test'), 'acme'))
    })

    after(async () => {
      await ward?.close()
      await database?.drop()
      directory?.remove()
    })

    test('publishes a signed release with its SBOM, auditing each step', async () => {
      const before = (await ward.findAuditLog('acme')).size
      const sbom = new TextEncoder().encode('{"bomFormat":"CycloneDX"}')
      const targets = offline.release({ name: 'fw-1.1.0.bin', image: firmwareImage('a'), sbom })
      const result = await publish(ward, 'acme', offline.bundle({ 1: offline.root(1) }, targets))
      assert.deepEqual(result.rootVersions, [1])
      assert.equal(result.targetsVersion, 1)
      assert.equal(result.snapshotVersion, 1)
      assert.equal(result.timestampVersion, 1)

      const [release] = await ward.updates.listReleases('acme')
      assert.equal(release?.targetName, 'fw-1.1.0.bin')
      assert.equal(release?.version, '1.1.0')
      assert.equal(release?.minVersion, '1.0.0')
      assert.deepEqual(release?.models, ['Pulse oximeter'])
      assert.equal(release?.hasSbom, true)
      assert.deepEqual(await ward.updates.findRelease('acme', release!.id), release)
      // root, targets, release, snapshot, timestamp
      assert.equal((await ward.findAuditLog('acme')).size - before, 5)
    })

    test('refuses targets older than or equal to the published ones, and releases that change', async () => {
      await assert.rejects(
        publish(ward, 'acme', offline.bundle({ 1: offline.root(1) })),
        /1\.root\.json differs from the root version 1 already published|nothing new/,
      )
      const saved = offline.targets
      offline.targets = undefined
      const older = offline.release({ name: 'fw-1.1.0.bin', image: firmwareImage('b') })
      await assert.rejects(
        publish(ward, 'acme', offline.bundle({}, older)),
        /differs from the targets version 1/,
      )
      offline.targets = { ...saved!, signed: { ...saved!.signed, version: 1 } }
      const changed = offline.release({
        name: 'fw-1.2.0.bin',
        image: firmwareImage('c'),
        fields: { version: '1.2.0' },
      })
      const tampered = JSON.parse(new TextDecoder().decode(changed.bytes))
      tampered.signed.targets['fw-1.1.0.bin'].length += 1
      await assert.rejects(
        publish(
          ward,
          'acme',
          offline.bundle(
            {},
            { ...changed, bytes: new TextEncoder().encode(JSON.stringify(tampered)) },
          ),
        ),
        (error: unknown) => isWardError(error, 'ERR_SIGNATURE_INVALID'),
      )
      offline.targets = saved
    })

    test('refuses targets and roots that expire less than 12 hours after publication', async () => {
      const saved = offline.targets
      const soon = offline.release({
        name: 'fw-soon.bin',
        image: firmwareImage('s'),
        fields: { version: '1.9.0' },
        expires: new Date(Date.now() + 2000),
      })
      await assert.rejects(
        publish(ward, 'acme', offline.bundle({}, soon)),
        (error: unknown) =>
          isWardError(error, 'ERR_UPDATE_METADATA_INVALID') &&
          error.details['field'] === 'expires' &&
          /\d+\.targets\.json: expires .* is less than 12 hours ahead/.test(error.message),
      )
      offline.targets = saved
      const elevenHours = new Date(Date.now() + 11 * 3600_000)
      await assert.rejects(
        publish(
          ward,
          'acme',
          offline.bundle({ 2: offline.root(2, offline.rootKeys, elevenHours) }),
        ),
        /2\.root\.json: expires .* is less than 12 hours ahead/,
      )
      const expired = offline.release({
        name: 'fw-expired.bin',
        image: firmwareImage('t'),
        fields: { version: '1.9.1' },
        expires: new Date(Date.now() - 1000),
      })
      await assert.rejects(
        publish(ward, 'acme', offline.bundle({}, expired)),
        /\d+\.targets\.json expired at/,
      )
      offline.targets = saved
    })

    test('records each refused publication as a security alert naming what was refused', async () => {
      const organization = await findOrganization(ward.store.db, 'acme')
      const refusedEvent = async (bundle: Parameters<typeof publish>[2], code: string) => {
        const before = (await ward.findAuditLog('acme')).size
        await assert.rejects(publish(ward, 'acme', bundle), (error: unknown) =>
          isWardError(error, code as never),
        )
        assert.equal((await ward.findAuditLog('acme')).size, before + 1, 'one event, no other')
        const row = await ward.store.db
          .selectFrom('audit_entries')
          .innerJoin('audit_logs', 'audit_logs.id', 'audit_entries.log_id')
          .select('audit_entries.body')
          .where('audit_logs.name', '=', 'acme')
          .orderBy('audit_entries.idx', 'desc')
          .executeTakeFirstOrThrow()
        return JSON.parse(Buffer.from(row.body).toString('utf8')) as Record<string, unknown>
      }

      const rogue = [generateTufKey(), generateTufKey()]
      const rootEvent = await refusedEvent(
        offline.bundle({ 2: offline.root(2, rogue) }),
        'ERR_SIGNATURE_INVALID',
      )
      assert.equal((rootEvent['type'] as { code: string }).code, '110113')
      assert.equal((rootEvent['subtype'] as { code: string }).code, 'update-repository.publish')
      assert.equal(rootEvent['outcome'], '4')
      assert.equal(rootEvent['outcomeDescription'], 'ERR_SIGNATURE_INVALID')
      assert.deepEqual(rootEvent['entity'], [
        { type: 'tuf-metadata', what: '2.root.json', detail: { role: 'root', refused: true } },
      ])
      await assert.rejects(ward.updates.metadataFile(organization.id, '2.root.json'), /no such/)

      const saved = offline.targets
      const tampered = offline.release({
        name: 'fw-1.8.0.bin',
        image: firmwareImage('g'),
        fields: { version: '1.8.0' },
      })
      const sha = offline.targets!.signed.targets['fw-1.8.0.bin']!.hashes.sha256
      offline.images.set(sha, firmwareImage('h'))
      const imageEvent = await refusedEvent(
        offline.bundle({}, tampered),
        'ERR_UPDATE_METADATA_INVALID',
      )
      assert.equal((imageEvent['type'] as { code: string }).code, '110113')
      assert.deepEqual(imageEvent['entity'], [
        { type: 'tuf-metadata', what: tampered.file, detail: { role: 'targets', refused: false } },
        { type: 'firmware-target', what: 'fw-1.8.0.bin', detail: { refused: true } },
      ])
      assert.ok(!JSON.stringify(imageEvent).includes('hashes to'), 'no message or content')
      offline.targets = saved
    })

    test('refuses an image over the size limit and one whose bytes do not match', async () => {
      const saved = offline.targets
      const big = offline.release({
        name: 'fw-big.bin',
        image: firmwareImage('d', 70_000),
        fields: { version: '2.0.0' },
      })
      await assert.rejects(
        publish(ward, 'acme', offline.bundle({}, big)),
        (error: unknown) =>
          isWardError(error, 'ERR_PAYLOAD_TOO_LARGE') &&
          /at most 65536/.test((error as Error).message),
      )
      offline.targets = saved
      const wrong = offline.release({
        name: 'fw-1.3.0.bin',
        image: firmwareImage('e'),
        fields: { version: '1.3.0' },
      })
      const sha = offline.targets!.signed.targets['fw-1.3.0.bin']!.hashes.sha256
      offline.images.set(sha, firmwareImage('f'))
      await assert.rejects(
        publish(ward, 'acme', offline.bundle({}, wrong)),
        /hashes to [0-9a-f]{64} but the signed metadata says/,
      )
      offline.targets = saved
    })

    test('re-signs the timestamp past half its lifetime, and not before', async () => {
      const context = systemContext('test')
      assert.equal(await ward.updates.refreshOnlineMetadata(context), 0)
      const later = new Date(Date.now() + 1900 * 1000)
      assert.equal(await ward.updates.refreshOnlineMetadata(context, later), 1)
      const timestamps = await ward.store.db
        .selectFrom('update_metadata')
        .select(['version', 'expires_at'])
        .where('role', '=', 'timestamp')
        .orderBy('version', 'desc')
        .execute()
      assert.equal(timestamps[0]?.version, 2)
      assert.ok(Date.parse(timestamps[0]!.expires_at) > Date.parse(timestamps[1]!.expires_at))
    })

    test('the scheduled job re-signs a timestamp that is past half its life', async () => {
      const organization = await findOrganization(ward.store.db, 'acme')
      // A timestamp signed 40 minutes ago with a lifetime of an hour has 20 minutes left.
      await ward.store.transaction((tx) =>
        signSnapshotAndTimestamp(
          tx,
          ward.keys,
          ward.config.updates,
          organization.id,
          new Date(Date.now() - 2400 * 1000),
        ),
      )
      const newest = () =>
        ward.store.db
          .selectFrom('update_metadata')
          .select(['version', 'expires_at'])
          .where('role', '=', 'timestamp')
          .orderBy('version', 'desc')
          .executeTakeFirstOrThrow()
      const stale = await newest()
      const job = updateTimestampsJob(ward)
      assert.equal(job.intervalSeconds, 450)
      await job.run()
      const fresh = await newest()
      assert.equal(fresh.version, stale.version + 1)
      assert.ok(Date.parse(fresh.expires_at) - Date.now() > 3500 * 1000)
      await job.run()
      assert.equal((await newest()).version, fresh.version)
    })

    test('refuses a root that changes the targets keys without targets they signed', async () => {
      const saved = offline.targetsKeys
      offline.targetsKeys = [generateTufKey()]
      await assert.rejects(
        publish(ward, 'acme', offline.bundle({ 2: offline.root(2) })),
        /root version 2 changes the targets keys: publish targets signed by the new keys with it/,
      )
      offline.targetsKeys = saved
    })

    test("refuses a root that does not list Ward's online keys", async () => {
      const stranger = new OfflineSigner({
        snapshot: offline.online.timestamp,
        timestamp: offline.online.snapshot,
      })
      stranger.rootKeys = offline.rootKeys
      await assert.rejects(
        publish(ward, 'acme', stranger.bundle({ 2: stranger.root(2) })),
        /the snapshot role must list only Ward's online snapshot key/,
      )
    })

    /** A new organization with one active pulse oximeter, `serial`. */
    async function organizationWithDevice(slug: string, serial: string) {
      const context = systemContext('test')
      const organization = await ward.createOrganization(context, { slug, name: slug })
      await ward.fleet.createDeviceModel(context, slug, standardDeviceModels[0]!)
      await ward.fleet.createDevice(context, slug, { serial, model: standardDeviceModels[0]!.name })
      const device = await ward.store.transaction(async (tx) =>
        setDeviceStatus(tx, await findDevice(tx, organization.id, serial), 'active'),
      )
      return { organization, device }
    }

    test('a release the newest targets no longer list is withdrawn: no rollout takes it, none offers it', async () => {
      const context = systemContext('test')
      const { organization, device } = await organizationWithDevice('withdraws', 'PO-W')
      const signer = new OfflineSigner(await ward.updates.onlineKeys(context, 'withdraws'))
      const first = signer.release({ name: 'fw-1.1.0.bin', image: firmwareImage('w') })
      await publish(ward, 'withdraws', signer.bundle({ 1: signer.root(1) }, first))
      // A rollout of it is under way, and the device has been told, when it is withdrawn.
      const [published] = await ward.updates.listReleases('withdraws')
      await ward.rollouts.create(context, 'withdraws', { releaseId: published!.id })
      const told = await ward.rollouts.offer(context, organization.id, device.id)
      assert.equal(told?.target, 'fw-1.1.0.bin')
      // The offline side signs the next targets without fw-1.1.0.bin.
      delete (signer.targets!.signed.targets as Record<string, unknown>)['fw-1.1.0.bin']
      const second = signer.release({
        name: 'fw-1.2.0.bin',
        image: firmwareImage('x'),
        fields: { version: '1.2.0' },
      })
      await publish(ward, 'withdraws', signer.bundle({}, second))

      const releases = await ward.updates.listReleases('withdraws')
      const withdrawn = releases.find((release) => release.targetName === 'fw-1.1.0.bin')!
      const current = releases.find((release) => release.targetName === 'fw-1.2.0.bin')!
      assert.equal(withdrawn.withdrawn, true)
      assert.equal(current.withdrawn, false)
      assert.equal((await ward.updates.findRelease('withdraws', withdrawn.id)).withdrawn, true)

      assert.equal(await ward.rollouts.offer(context, organization.id, device.id), undefined)

      await assert.rejects(
        ward.rollouts.create(context, 'withdraws', { releaseId: withdrawn.id }),
        (error: unknown) =>
          isWardError(error, 'ERR_RELEASE_WITHDRAWN') &&
          /fw-1\.1\.0\.bin\) was withdrawn: the newest signed targets metadata no longer lists it/.test(
            (error as Error).message,
          ),
      )
      // The current release passes the catalog; the device's model is still in a rollout.
      await assert.rejects(
        ward.rollouts.create(context, 'withdraws', { releaseId: current.id }),
        /still open/,
      )
    })

    test('refuses a rollout of a release no newer than what every targeted device reported running', async () => {
      const context = systemContext('test')
      const { organization, device } = await organizationWithDevice('downgrades', 'PO-1')
      const signer = new OfflineSigner(await ward.updates.onlineKeys(context, 'downgrades'))
      signer.release({ name: 'fw-1.1.0.bin', image: firmwareImage('1') })
      signer.release({
        name: 'fw-1.2.0.bin',
        image: firmwareImage('2'),
        fields: { version: '1.2.0' },
      })
      const targets = signer.release({
        name: 'fw-1.3.0.bin',
        image: firmwareImage('3'),
        fields: { version: '1.3.0' },
      })
      await publish(ward, 'downgrades', signer.bundle({ 1: signer.root(1) }, targets))
      const releases = new Map(
        (await ward.updates.listReleases('downgrades')).map((release) => [
          release.version,
          release.id,
        ]),
      )
      await ward.updates.report(
        { ...context, actor: { type: 'device', id: device.id } },
        organization.id,
        device.id,
        { target: 'fw-1.2.0.bin', outcome: 'installed', fromVersion: '1.0.0' },
      )

      for (const version of ['1.1.0', '1.2.0']) {
        await assert.rejects(
          ward.rollouts.create(context, 'downgrades', { releaseId: releases.get(version)! }),
          (error: unknown) =>
            isWardError(error, 'ERR_INPUT_INVALID') &&
            error.details['field'] === 'release' &&
            new RegExp(
              `release version ${version.replaceAll('.', '\\.')} is not newer than what every ` +
                'targeted device last reported running \\(1\\.2\\.0 at the oldest\\)',
            ).test(error.message),
          version,
        )
      }
      const upgrade = await ward.rollouts.create(context, 'downgrades', {
        releaseId: releases.get('1.3.0')!,
      })
      assert.equal(upgrade.state, 'running')
    })
  })
}
