import assert from 'node:assert/strict'
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { test } from 'node:test'

import SqliteDatabase from 'better-sqlite3'
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely'
import pg from 'pg'

import { dialects, freshDatabase, temporaryDirectory } from '../../test/support.js'
import { redeemEnrollmentToken } from '../devices/index.js'
import { AuthenticationKeys, LocalKeyFileProvider } from '../keys/index.js'
import { WardMigrations } from '../store/migrations.js'
import { openStore } from '../store/index.js'
import { listManufacturerAuthorities, verifyFactoryIdentity } from './index.js'
import { factorySignatureOver, testFactoryIdentity, testManufacturerCa } from './test-support.js'

/** The newest migration of the schema before enrollment rows were keyed. */
const beforeKeying = '0008-rollouts'

for (const { dialect, skip } of dialects) {
  test(
    `upgrading on ${dialect} keys the enrollment tokens and manufacturer CAs already stored`,
    { skip },
    async () => {
      const scratch = temporaryDirectory()
      const database = await freshDatabase(dialect, scratch.path)
      try {
        // A database as the previous version left it, with a token and a manufacturer CA.
        const db = new Kysely<unknown>({
          dialect:
            dialect === 'sqlite'
              ? new SqliteDialect({
                  database: new SqliteDatabase(database.url.slice('sqlite:'.length)),
                })
              : new PostgresDialect({ pool: new pg.Pool({ connectionString: database.url }) }),
        })
        const schema =
          dialect === 'postgres'
            ? (await sql<{ schema: string }>`select current_schema() as schema`.execute(db)).rows[0]
                ?.schema
            : undefined
        const migrated = await new Migrator({
          db,
          provider: new WardMigrations(dialect),
          ...(schema === undefined ? {} : { migrationTableSchema: schema }),
        }).migrateTo(beforeKeying)
        assert.equal(migrated.error, undefined)

        const organizationId = randomUUID()
        const deviceId = randomUUID()
        const token = `ward_enr_${randomBytes(24).toString('base64url')}`
        const ca = await testManufacturerCa('CN=Upgrade Maker Factory CA')
        const authorityId = randomUUID()
        const now = new Date().toISOString()
        const old = db as unknown as Kysely<Record<string, Record<string, unknown>>>
        await old
          .insertInto('organizations')
          .values({ id: organizationId, slug: 'acme', name: 'Acme', created_at: now })
          .execute()
        await old
          .insertInto('device_models')
          .values({
            id: 'model-1',
            organization_id: organizationId,
            name: 'Pulse oximeter',
            manufacturer: 'Maker',
            policy: '{}',
            created_at: now,
          })
          .execute()
        await old
          .insertInto('devices')
          .values({
            id: deviceId,
            organization_id: organizationId,
            serial: 'PO-3001',
            model_id: 'model-1',
            status: 'provisioned',
            patient_id: null,
            created_at: now,
            updated_at: now,
          })
          .execute()
        await old
          .insertInto('enrollment_tokens')
          .values({
            id: randomUUID(),
            organization_id: organizationId,
            device_id: deviceId,
            token_hash: createHash('sha256').update(token).digest('hex'),
            expires_at: new Date(Date.now() + 86_400_000).toISOString(),
            used_at: null,
            created_at: now,
          })
          .execute()
        await old
          .insertInto('manufacturer_authorities')
          .values({
            id: authorityId,
            organization_id: organizationId,
            name: 'Upgrade Maker',
            subject: ca.certificate.subject,
            subject_key_identifier: null,
            fingerprint_sha256: randomBytes(32).toString('hex'),
            certificate_pem: ca.certificatePem,
            not_before: ca.certificate.notBefore.toISOString(),
            not_after: ca.certificate.notAfter.toISOString(),
            created_at: now,
          })
          .execute()
        await db.destroy()

        // Without the master key the upgrade refuses, saying what it needs; nothing is half done.
        await assert.rejects(openStore({ url: database.url }), {
          code: 'ERR_STORE_UNAVAILABLE',
          message:
            /0010-enrollment-token-digests failed.*keys its stored enrollment tokens under the master key/,
        })

        const provider = LocalKeyFileProvider.create(join(scratch.path, 'master.key'))
        const store = await openStore({ url: database.url, keys: provider })
        try {
          const keys = new AuthenticationKeys(provider)
          const stored = await store.db
            .selectFrom('enrollment_tokens')
            .select('token_hash')
            .executeTakeFirstOrThrow()
          assert.notEqual(stored.token_hash, createHash('sha256').update(token).digest('hex'))
          const device = await store.transaction(async (tx) =>
            redeemEnrollmentToken(tx, await keys.key(tx, organizationId, 'enrollment-token'), {
              organizationId,
              token,
              serial: 'PO-3001',
            }),
          )
          assert.equal(device.id, deviceId)

          const manufacturerKey = await store.transaction((tx) =>
            keys.key(tx, organizationId, 'manufacturer-authority'),
          )
          const [authority] = await listManufacturerAuthorities(
            store.db,
            manufacturerKey,
            organizationId,
          )
          assert.equal(authority?.id, authorityId)
          assert.equal(authority?.authentic, true)
          const factory = await testFactoryIdentity(ca, 'PO-3002')
          const signedBytes = new TextEncoder().encode('a CSR')
          const identity = await verifyFactoryIdentity(store.db, manufacturerKey, {
            organizationId,
            factoryCertificatePem: factory.certificatePem,
            signatureBase64: factorySignatureOver(factory, signedBytes),
            signedBytes,
          })
          assert.equal(identity.manufacturerAuthorityId, authorityId)
        } finally {
          await store.close()
        }
      } finally {
        await database.drop()
        scratch.remove()
      }
    },
  )
}
