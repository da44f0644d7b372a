import type { Kysely, Migration } from 'kysely'

import { AuthenticationKeys, masterKeyNeeded, type KeyWrappingProvider } from '../keys/index.js'
import type { Transaction } from '../store/index.js'
import type { Dialect } from '../store/store.js'
import { enrollmentTokenDigest } from './registry.js'

/**
 * The devices domain's tables (device models, devices, enrollment tokens; then lifecycle
 * commands and wipe certificates). The first starts with 0004 so it runs after the foundation,
 * keys and identity; a shipped migration is never edited, a change is a new one.
 */
export function devicesMigrations(
  _dialect: Dialect,
  keys?: KeyWrappingProvider,
): Record<string, Migration> {
  return {
    '0004-devices': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('device_models')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('name', 'text', (column) => column.notNull())
          .addColumn('manufacturer', 'text', (column) => column.notNull())
          .addColumn('policy', 'text', (column) => column.notNull())
          .addColumn('created_at', 'text', (column) => column.notNull())
          .addUniqueConstraint('device_models_name', ['organization_id', 'name'])
          .execute()

        await db.schema
          .createTable('devices')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('serial', 'text', (column) => column.notNull())
          .addColumn('model_id', 'text', (column) =>
            column.notNull().references('device_models.id'),
          )
          .addColumn('status', 'text', (column) => column.notNull())
          .addColumn('patient_id', 'text')
          .addColumn('created_at', 'text', (column) => column.notNull())
          .addColumn('updated_at', 'text', (column) => column.notNull())
          .addUniqueConstraint('devices_serial', ['organization_id', 'serial'])
          .execute()

        await db.schema
          .createTable('enrollment_tokens')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('device_id', 'text', (column) => column.notNull().references('devices.id'))
          .addColumn('token_hash', 'text', (column) => column.notNull().unique())
          .addColumn('expires_at', 'text', (column) => column.notNull())
          .addColumn('used_at', 'text')
          .addColumn('created_at', 'text', (column) => column.notNull())
          .execute()
      },
    },
    '0007-device-commands': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('device_commands')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('device_id', 'text', (column) => column.notNull().references('devices.id'))
          .addColumn('kind', 'text', (column) => column.notNull())
          .addColumn('status', 'text', (column) => column.notNull())
          .addColumn('issued_at', 'text', (column) => column.notNull())
          .addColumn('delivered_at', 'text')
          .addColumn('deliveries', 'integer', (column) => column.notNull())
          .addColumn('completed_at', 'text')
          .execute()
        await db.schema
          .createIndex('device_commands_device')
          .on('device_commands')
          .columns(['organization_id', 'device_id', 'status'])
          .execute()

        await db.schema
          .createTable('wipe_certificates')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('device_id', 'text', (column) => column.notNull().references('devices.id'))
          .addColumn('command_id', 'text', (column) =>
            column.notNull().unique().references('device_commands.id'),
          )
          .addColumn('queued_readings', 'integer', (column) => column.notNull())
          .addColumn('rejected_readings', 'integer', (column) => column.notNull())
          .addColumn('key_ids', 'text', (column) => column.notNull())
          .addColumn('certificate_serials', 'text', (column) => column.notNull())
          .addColumn('erased_at', 'text', (column) => column.notNull())
          .addColumn('report', 'text', (column) => column.notNull())
          .addColumn('signature', 'text', (column) => column.notNull())
          .addColumn('signing_certificate', 'text', (column) => column.notNull())
          .addColumn('recorded_at', 'text', (column) => column.notNull())
          .execute()
      },
    },
    // Named to run after every domain's first migrations, whatever their numbers.
    '0008-devices-by-patient': {
      async up(db: Kysely<unknown>) {
        // A patient's devices, for the FHIR Device search, in one index range.
        await db.schema
          .createIndex('devices_patient')
          .on('devices')
          .columns(['organization_id', 'patient_id'])
          .execute()
      },
    },
    // After the keys domain's authentication keys (0009). Token digests were plain SHA-256:
    // anyone who could write the database could store the digest of a token of their own and
    // enroll with it. They become keyed digests (see `enrollmentTokenDigest`), computed here
    // from the stored SHA-256, so tokens already issued keep working.
    //
    // Keying the rows found at upgrade trusts them, and that is acceptable: until this
    // migration Ward trusted every token row anyway, so trusting the rows present at this one
    // moment grants nothing that was not already granted, while from here on a row written
    // without the master key is refused. An operator who suspects the database was written
    // before the upgrade issues fresh tokens, which voids the earlier unused ones.
    '0010-enrollment-token-digests': {
      async up(db: Kysely<unknown>) {
        const tx = db as unknown as Transaction
        const rows = await tx
          .selectFrom('enrollment_tokens')
          .select(['id', 'organization_id', 'device_id', 'token_hash', 'expires_at'])
          .execute()
        if (rows.length === 0) return
        if (keys === undefined) throw masterKeyNeeded('enrollment tokens')
        const authenticationKeys = new AuthenticationKeys(keys)
        for (const row of rows) {
          const key = await authenticationKeys.key(tx, row.organization_id, 'enrollment-token')
          await tx
            .updateTable('enrollment_tokens')
            .set({
              token_hash: enrollmentTokenDigest(key, {
                organizationId: row.organization_id,
                deviceId: row.device_id,
                expiresAt: row.expires_at,
                tokenSha256: row.token_hash,
              }),
            })
            .where('id', '=', row.id)
            .execute()
        }
      },
    },
  }
}
