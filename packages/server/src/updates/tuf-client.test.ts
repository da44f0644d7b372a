import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, test } from 'node:test'

import { canonicalize as tufJsCanonicalize } from '@tufjs/canonical-json'
import { isTufDate, isWardError, tufCanonicalize, tufKeyId, type WardError } from '@ward/core'
import { FirmwareUpdater, type DeviceClient } from '@ward/device'

import { dialects } from '../../test/support.js'
import { systemContext } from '../context.js'
import { createTestOrganization, startTestWard, type TestWard } from '../ingest/test-support.js'
import { generateTufKey } from './offline-signing.js'
import { signSnapshotAndTimestamp } from './repository.js'
import { listInstallReports } from './updates.js'
import {
  OfflineSigner,
  enrollUpdateDevice,
  firmwareImage,
  publish,
  repositoryWithRoot,
  updaterFor,
} from './test-support.js'
import { metadataBytes, signMetadata, tufSignerFromPem, validSigners } from './tuf-metadata.js'

// The real tuf-js client, in the real device agent, against Ward's own repository over mutual
// TLS. Attacks are made the way a compromised server would make them: by changing what Ward's
// store serves, after Ward itself refused to publish the same thing where it could.

// The device command as shipped: the compiled build that `npm test` makes first.
const deviceCommand = fileURLToPath(new URL('../../../device/dist/main.js', import.meta.url))

function refusedFor(reason: string | RegExp) {
  return (error: unknown) => {
    assert.ok(isWardError(error, 'ERR_UPDATE_REFUSED'), `not a refusal: ${String(error)}`)
    const why = String((error as WardError).details['reason'])
    if (typeof reason === 'string') assert.equal(why, reason, (error as Error).message)
    else assert.match((error as Error).message, reason)
    return true
  }
}

for (const { dialect, skip } of dialects) {
  describe(`the device agent updating through tuf-js from Ward on ${dialect}`, { skip }, () => {
    let testWard: TestWard
    let offline: OfflineSigner
    let root1: Uint8Array
    let client: DeviceClient
    let slug: string
    let organizationId: string
    let states = 0
    const state = () => {
      const path = join(testWard.directory, `state-${states++}`)
      mkdirSync(path)
      return path
    }
    const db = () => testWard.ward.store.db

    before(async () => {
      testWard = await startTestWard(dialect)
      const repository = await repositoryWithRoot(testWard.ward, 'acme')
      ;({ offline, root1 } = repository)
      slug = repository.organization.slug
      organizationId = repository.organization.id
      const targets = offline.release({
        name: 'oximeter-1.1.0.bin',
        image: firmwareImage('1.1.0'),
        sbom: new TextEncoder().encode('{"bomFormat":"CycloneDX","specVersion":"1.5"}'),
      })
      await publish(testWard.ward, slug, offline.bundle({ 1: root1 }, targets))
      client = await enrollUpdateDevice(testWard, repository.organization, testWard.directory)
    })

    after(async () => {
      client?.close()
      await testWard?.close()
    })

    test('a good update installs into the inactive slot and is reported to Ward', async () => {
      const directory = state()
      const updater = updaterFor(client, directory, root1)
      const available = await updater.check()
      assert.equal(available?.target, 'oximeter-1.1.0.bin')

      const outcome = await updater.update()
      assert.deepEqual(outcome, {
        outcome: 'installed',
        version: '1.1.0',
        target: 'oximeter-1.1.0.bin',
      })
      const slots = await updater.slots()
      assert.equal(slots.active, 'b')
      assert.equal(slots.slots.a?.version, '1.0.0')
      assert.ok(existsSync(join(directory, 'updates', 'slots', 'b.bin')))
      assert.deepEqual(await updater.update(), { outcome: 'up-to-date', version: '1.1.0' })

      const [release] = await testWard.ward.updates.listReleases(slug)
      const reports = await listInstallReports(db(), organizationId, { releaseId: release?.id })
      assert.deepEqual(
        reports.map(({ outcome, fromVersion, target }) => ({ outcome, fromVersion, target })),
        [{ outcome: 'installed', fromVersion: '1.0.0', target: 'oximeter-1.1.0.bin' }],
      )
    })

    test('an image that does not come up healthy is rolled back to the previous slot', async () => {
      const updater = updaterFor(client, state(), root1, { healthy: false })
      const outcome = await updater.update()
      assert.equal(outcome.outcome, 'rolled-back')
      assert.equal(await updater.runningVersion(), '1.0.0')
      assert.equal((await updater.slots()).active, 'a')
      const reports = await db()
        .selectFrom('firmware_reports')
        .select('outcome')
        .where('outcome', '=', 'rolled-back')
        .execute()
      assert.equal(reports.length, 1)
    })

    test('refuses a version not newer than the running one, and one below its minimum', async () => {
      await assert.rejects(
        updaterFor(client, state(), root1, { factoryVersion: '1.1.0' }).install(
          'oximeter-1.1.0.bin',
        ),
        refusedFor('downgrade'),
      )
      await assert.rejects(
        updaterFor(client, state(), root1, { factoryVersion: '0.9.0' }).install(
          'oximeter-1.1.0.bin',
        ),
        refusedFor('below-min-version'),
      )
      assert.equal(
        await updaterFor(client, state(), root1, { factoryVersion: '0.9.0' }).check(),
        undefined,
      )
    })

    test('the simulator installs with ward-device update, and rolls back when told to fail', async () => {
      const rootFile = join(testWard.directory, '1.root.json')
      writeFileSync(rootFile, root1)
      // Ward serves from this very process, so the command must not block it.
      const run = (...extra: string[]) =>
        new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
          execFile(
            process.execPath,
            [
              deviceCommand,
              'update',
              '--dir',
              join(testWard.directory, 'identity'),
              '--root',
              rootFile,
              '--model',
              'Pulse oximeter',
              '--hardware-revision',
              'B',
              ...extra,
            ],
            { encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '' } },
            (error, stdout, stderr) => {
              resolve({ status: error === null ? 0 : Number(error.code), stdout, stderr })
            },
          )
        })
      const failed = await run('--fail-health-check')
      assert.equal(failed.status, 1, failed.stderr)
      assert.equal(failed.stderr, '')
      assert.match(
        failed.stdout,
        /rolled back: version 1\.1\.\d did not come up healthy; still running 1\.0\.0/,
      )
      const installed = await run()
      assert.equal(installed.status, 0, installed.stderr)
      assert.match(installed.stdout, /installed oximeter-1\.1\.\d\.bin; now running 1\.1\.\d/)
    })

    test('an install report with a field Ward does not know is refused, naming it', async () => {
      await assert.rejects(
        client.postJson('/updates/report', {
          target: 'oximeter-1.1.0.bin',
          outcome: 'installed',
          fromVersion: '1.0.0',
          patient: 'x',
        }),
        /patient is not a report field/,
      )
    })

    test('an install report takes a reason code, never free text, and only a known target', async () => {
      const report = (fields: Record<string, unknown>) =>
        client.postJson('/updates/report', {
          target: 'oximeter-1.1.0.bin',
          outcome: 'failed',
          fromVersion: '1.0.0',
          ...fields,
        })
      await assert.rejects(
        report({ reason: 'Patient Alex Testpatient DOB 1970-01-01' }),
        /reason must be a code/,
      )
      await assert.rejects(report({ fromVersion: `1.0.0-${'x'.repeat(40)}` }), /fromVersion must/)
      await assert.rejects(report({ target: 'nothing-published.bin' }), /no release/)
    })

    test('refuses image bytes that do not match the signed hashes', async () => {
      const row = await db().selectFrom('firmware_images').selectAll().executeTakeFirstOrThrow()
      const tampered = new Uint8Array(row.content)
      tampered[10] = (tampered[10] ?? 0) ^ 0xff
      await db().updateTable('firmware_images').set({ content: tampered }).execute()
      try {
        await assert.rejects(updaterFor(client, state(), root1).update(), refusedFor(/hash/i))
      } finally {
        await db().updateTable('firmware_images').set({ content: row.content }).execute()
      }
    })

    test('refuses an image longer than the signed length', async () => {
      const row = await db().selectFrom('firmware_images').selectAll().executeTakeFirstOrThrow()
      const longer = Buffer.concat([Buffer.from(row.content), Buffer.alloc(1024, 7)])
      await db().updateTable('firmware_images').set({ content: longer }).execute()
      try {
        await assert.rejects(
          updaterFor(client, state(), root1).update(),
          refusedFor('DownloadLengthMismatchError'),
        )
      } finally {
        await db().updateTable('firmware_images').set({ content: row.content }).execute()
      }
    })

    test('Ward refuses, and tuf-js refuses, targets signed by a key root does not delegate to', async () => {
      const rogue = generateTufKey()
      const saved = offline.targets
      const bad = offline.release(
        { name: 'rogue-9.9.9.bin', image: firmwareImage('rogue'), fields: { version: '9.9.9' } },
        [rogue],
      )
      offline.targets = saved
      await assert.rejects(
        publish(testWard.ward, slug, offline.bundle({}, bad)),
        (error: unknown) =>
          isWardError(error, 'ERR_SIGNATURE_INVALID') &&
          /0 of the 1 targets/.test((error as Error).message),
      )
      // A compromised server serves it anyway, under a fresh snapshot and timestamp.
      await db()
        .insertInto('update_metadata')
        .values({
          organization_id: organizationId,
          role: 'targets',
          version: 2,
          body: bad.bytes,
          expires_at: '2099-01-01T00:00:00Z',
          created_at: new Date().toISOString(),
        })
        .execute()
      await testWard.ward.store.transaction((tx) =>
        signSnapshotAndTimestamp(
          tx,
          testWard.ward.keys,
          testWard.ward.config.updates,
          organizationId,
          new Date(),
          { targetsVersion: 2 },
        ),
      )
      try {
        await assert.rejects(
          updaterFor(client, state(), root1).check(),
          refusedFor(/targets was signed by 0\/1 keys/),
        )
      } finally {
        await db()
          .deleteFrom('update_metadata')
          .where('role', '=', 'targets')
          .where('version', '=', 2)
          .execute()
        await testWard.ward.store.transaction((tx) =>
          signSnapshotAndTimestamp(
            tx,
            testWard.ward.keys,
            testWard.ward.config.updates,
            organizationId,
            new Date(),
            { targetsVersion: 1 },
          ),
        )
      }
    })

    test('refuses a frozen timestamp that has expired', async () => {
      const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000)
      await testWard.ward.store.transaction((tx) =>
        signSnapshotAndTimestamp(
          tx,
          testWard.ward.keys,
          testWard.ward.config.updates,
          organizationId,
          twoDaysAgo,
        ),
      )
      try {
        await assert.rejects(
          updaterFor(client, state(), root1).check(),
          refusedFor(/ExpiredMetadataError: .*timestamp\.json is expired/),
        )
      } finally {
        await testWard.ward.store.transaction((tx) =>
          signSnapshotAndTimestamp(
            tx,
            testWard.ward.keys,
            testWard.ward.config.updates,
            organizationId,
            new Date(),
          ),
        )
      }
    })

    test('refuses a rollback to older metadata than the device has seen', async () => {
      const directory = state()
      await updaterFor(client, directory, root1).check()
      const newest = await db()
        .selectFrom('update_metadata')
        .selectAll()
        .where('role', '=', 'timestamp')
        .orderBy('version', 'desc')
        .executeTakeFirstOrThrow()
      // The server answers with the timestamp before it.
      await db()
        .deleteFrom('update_metadata')
        .where('role', '=', 'timestamp')
        .where('version', '=', newest.version)
        .execute()
      try {
        await assert.rejects(
          updaterFor(client, directory, root1).check(),
          refusedFor(/BadVersionError: New timestamp version \d+ is less than current version \d+/),
        )
      } finally {
        await db().insertInto('update_metadata').values(newest).execute()
      }
    })

    test('refuses mix-and-match: targets from another snapshot than the one signed', async () => {
      // A second release makes targets version 2 and snapshot n+1 over it.
      const second = offline.release({
        name: 'oximeter-1.2.0.bin',
        image: firmwareImage('1.2.0'),
        fields: { version: '1.2.0' },
      })
      await publish(testWard.ward, slug, offline.bundle({}, second))
      const version1 = await db()
        .selectFrom('update_metadata')
        .select('body')
        .where('role', '=', 'targets')
        .where('version', '=', 1)
        .executeTakeFirstOrThrow()
      const version2 = await db()
        .selectFrom('update_metadata')
        .select('body')
        .where('role', '=', 'targets')
        .where('version', '=', 2)
        .executeTakeFirstOrThrow()
      await db()
        .updateTable('update_metadata')
        .set({ body: version1.body })
        .where('role', '=', 'targets')
        .where('version', '=', 2)
        .execute()
      try {
        await assert.rejects(
          updaterFor(client, state(), root1).check(),
          refusedFor(/Version 1 of targets does not match snapshot version 2/),
        )
      } finally {
        await db()
          .updateTable('update_metadata')
          .set({ body: version2.body })
          .where('role', '=', 'targets')
          .where('version', '=', 2)
          .execute()
      }
      assert.equal((await updaterFor(client, state(), root1).check())?.target, 'oximeter-1.2.0.bin')
    })

    test('Ward refuses, and tuf-js refuses, a root below threshold or signed by rogue keys', async () => {
      const [first] = offline.rootKeys
      const belowThreshold = offline.root(2, [first!])
      await assert.rejects(
        publish(testWard.ward, slug, offline.bundle({ 2: belowThreshold })),
        (error: unknown) =>
          isWardError(error, 'ERR_SIGNATURE_INVALID') &&
          /1 of the 2 root keys/.test((error as Error).message),
      )
      const rogue = new OfflineSigner(offline.online)
      const rogueRoot = rogue.root(2)
      await assert.rejects(
        publish(testWard.ward, slug, offline.bundle({ 2: rogueRoot })),
        (error: unknown) => isWardError(error, 'ERR_SIGNATURE_INVALID'),
      )
      for (const [body, reason] of [
        [belowThreshold, /UnsignedMetadataError: root was signed by 1\/2 keys/],
        [rogueRoot, /UnsignedMetadataError: root was signed by 0\/2 keys/],
      ] as const) {
        await db()
          .insertInto('update_metadata')
          .values({
            organization_id: organizationId,
            role: 'root',
            version: 2,
            body,
            expires_at: '2099-01-01T00:00:00Z',
            created_at: new Date().toISOString(),
          })
          .execute()
        try {
          await assert.rejects(updaterFor(client, state(), root1).check(), refusedFor(reason))
        } finally {
          await db()
            .deleteFrom('update_metadata')
            .where('role', '=', 'root')
            .where('version', '=', 2)
            .execute()
        }
      }
    })

    test("Ward's key ids are the hashes of its keys and its dates are strict", async () => {
      const rows = await db()
        .selectFrom('update_metadata')
        .selectAll()
        .where('organization_id', '=', organizationId)
        .execute()
      assert.ok(rows.length >= 4)
      for (const row of rows) {
        const envelope = JSON.parse(Buffer.from(row.body).toString('utf8')) as {
          signed: {
            expires: string
            keys?: Record<string, { keytype: string; scheme: string; keyval: { public: string } }>
          }
          signatures: { keyid: string }[]
        }
        assert.ok(isTufDate(envelope.signed.expires), envelope.signed.expires)
        // Ward's canonical form is byte for byte what tuf-js verifies signatures over.
        assert.equal(tufCanonicalize(envelope.signed), tufJsCanonicalize(envelope.signed))
        for (const [keyId, key] of Object.entries(envelope.signed.keys ?? {})) {
          assert.equal(keyId, tufKeyId(key))
        }
      }
      // And publication refuses metadata that gets either wrong.
      const root = JSON.parse(new TextDecoder().decode(offline.root(2))) as {
        signed: Record<string, unknown>
      }
      const signers = offline.rootKeys.map((key) => tufSignerFromPem(key.privateKeyPem))
      const withMilliseconds = metadataBytes(
        signMetadata({ ...root.signed, expires: '2099-01-01T00:00:00.000Z' }, signers),
      )
      await assert.rejects(
        publish(testWard.ward, slug, offline.bundle({ 2: withMilliseconds })),
        /expires must be a date written YYYY-MM-DDTHH:MM:SSZ/,
      )
      const keys = root.signed['keys'] as Record<string, unknown>
      const [firstId, firstKey] = Object.entries(keys)[0]!
      const renamed = {
        ...root.signed,
        keys: { ...keys, [firstId]: undefined, ['0'.repeat(64)]: firstKey },
      }
      delete (renamed.keys as Record<string, unknown>)[firstId]
      const wrongIds = metadataBytes(signMetadata(renamed, signers))
      await assert.rejects(
        publish(testWard.ward, slug, offline.bundle({ 2: wrongIds })),
        /has key id 0{64} but its key hashes to/,
      )
    })

    test('root rotation 1 → 2 → 3 works, with every old root still served', async () => {
      // Version 2: a new set of root keys, signed by the old and the new.
      const old = offline.rootKeys
      offline.rootKeys = [generateTufKey(), generateTufKey()]
      const root2 = offline.root(2, [...old.slice(0, 2), ...offline.rootKeys])
      // Version 3: a new targets key as well.
      const previous = offline.rootKeys
      offline.rootKeys = [generateTufKey(), generateTufKey('ecdsa-p256')]
      offline.targetsKeys = [generateTufKey('ecdsa-p256')]
      const root3 = offline.root(3, [...previous, ...offline.rootKeys])
      const third = offline.release({
        name: 'oximeter-1.3.0.bin',
        image: firmwareImage('1.3.0'),
        fields: { version: '1.3.0', minVersion: '1.0.0' },
      })
      const result = await publish(
        testWard.ward,
        slug,
        offline.bundle({ 1: root1, 2: root2, 3: root3 }, third),
      )
      assert.deepEqual(result.rootVersions, [2, 3])

      for (const version of [1, 2, 3]) {
        const answer = await client.download(`/updates/${version}.root.json`, 1 << 20)
        assert.equal(answer.status, 200)
      }
      const updater = updaterFor(client, state(), root1)
      assert.deepEqual(await updater.update(), {
        outcome: 'installed',
        version: '1.3.0',
        target: 'oximeter-1.3.0.bin',
      })
      // The new targets key signed what the device trusted.
      const stored = await db()
        .selectFrom('update_metadata')
        .select('body')
        .where('role', '=', 'targets')
        .orderBy('version', 'desc')
        .executeTakeFirstOrThrow()
      const envelope = JSON.parse(Buffer.from(stored.body).toString('utf8'))
      const root = JSON.parse(new TextDecoder().decode(root3)).signed
      assert.equal(validSigners(envelope, root, 'targets').size, 1)
    })

    test("a device gets only its own organization's repository", async () => {
      const other = await createTestOrganization(testWard.ward, 'other')
      await testWard.ward.updates.onlineKeys(systemContext('test'), 'other')
      const otherClient = await enrollUpdateDevice(
        testWard,
        other,
        join(testWard.directory, 'other'),
      )
      try {
        assert.equal((await otherClient.download('/updates/1.root.json', 1 << 20)).status, 404)
        assert.equal((await otherClient.download('/updates/timestamp.json', 1 << 20)).status, 404)
        const sha = await db()
          .selectFrom('firmware_releases')
          .select(['image_sha256', 'target_name'])
          .executeTakeFirstOrThrow()
        assert.equal(
          (
            await otherClient.download(
              `/updates/targets/${sha.image_sha256}.${sha.target_name}`,
              1 << 20,
            )
          ).status,
          404,
        )
        assert.equal(
          (
            await client.download(
              `/updates/targets/${sha.image_sha256}.${sha.target_name}`,
              1 << 20,
            )
          ).status,
          200,
        )
      } finally {
        otherClient.close()
      }
    })
    test('refuses an image for another hardware revision, or larger than the device takes', async () => {
      const fitting = offline.release({
        name: 'oximeter-rev-a-1.4.0.bin',
        image: firmwareImage('rev-a'),
        fields: { version: '1.4.0', hardwareRevisions: ['A'] },
      })
      await publish(testWard.ward, slug, offline.bundle({}, fitting))
      await assert.rejects(
        updaterFor(client, state(), root1).install('oximeter-rev-a-1.4.0.bin'),
        refusedFor('wrong-model'),
      )
      const revisionA = updaterFor(client, state(), root1, { hardwareRevision: 'A' })
      assert.equal((await revisionA.check())?.target, 'oximeter-rev-a-1.4.0.bin')
      const small = new FirmwareUpdater({
        client,
        stateDirectory: state(),
        trustedRoot: root1,
        model: 'Pulse oximeter',
        hardwareRevision: 'A',
        factoryVersion: '1.0.0',
        maxImageBytes: 1024,
      })
      await assert.rejects(small.install('oximeter-rev-a-1.4.0.bin'), refusedFor('too-large'))
    })
  })
}
