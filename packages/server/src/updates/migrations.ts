import type { Kysely, Migration } from 'kysely'

import type { Dialect } from '../store/store.js'

/**
 * The updates domain's tables: each organization's TUF repository, every version of its
 * metadata, firmware images, releases and the devices' install reports. A shipped migration is
 * never edited; a change is a new one.
 */
export function updatesMigrations(dialect: Dialect): Record<string, Migration> {
  const bytes = dialect === 'sqlite' ? 'blob' : 'bytea'
  const bigint = dialect === 'sqlite' ? 'integer' : 'bigint'
  return {
    '0006-updates': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('update_repositories')
          .addColumn('organization_id', 'text', (column) =>
            column.primaryKey().references('organizations.id'),
          )
          .addColumn('snapshot_key_id', 'text', (column) =>
            column.notNull().references('signing_keys.id'),
          )
          .addColumn('timestamp_key_id', 'text', (column) =>
            column.notNull().references('signing_keys.id'),
          )
          .addColumn('created_at', 'text', (column) => column.notNull())
          .execute()

        await db.schema
          .createTable('update_metadata')
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('role', 'text', (column) => column.notNull())
          .addColumn('version', bigint, (column) => column.notNull())
          .addColumn('body', bytes, (column) => column.notNull())
          .addColumn('expires_at', 'text', (column) => column.notNull())
          .addColumn('created_at', 'text', (column) => column.notNull())
          .addPrimaryKeyConstraint('update_metadata_pk', ['organization_id', 'role', 'version'])
          .execute()

        await db.schema
          .createTable('firmware_images')
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('sha256', 'text', (column) => column.notNull())
          .addColumn('length', bigint, (column) => column.notNull())
          .addColumn('content', bytes, (column) => column.notNull())
          .addColumn('created_at', 'text', (column) => column.notNull())
          .addPrimaryKeyConstraint('firmware_images_pk', ['organization_id', 'sha256'])
          .execute()

        await db.schema
          .createTable('firmware_releases')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('target_name', 'text', (column) => column.notNull())
          .addColumn('version', 'text', (column) => column.notNull())
          .addColumn('min_version', 'text', (column) => column.notNull())
          .addColumn('models', 'text', (column) => column.notNull())
          .addColumn('hardware_revisions', 'text', (column) => column.notNull())
          .addColumn('notes', 'text', (column) => column.notNull())
          .addColumn('image_sha256', 'text', (column) => column.notNull())
          .addColumn('length', bigint, (column) => column.notNull())
          .addColumn('sbom', bytes)
          .addColumn('targets_version', bigint, (column) => column.notNull())
          .addColumn('created_at', 'text', (column) => column.notNull())
          .addUniqueConstraint('firmware_releases_target', ['organization_id', 'target_name'])
          .execute()

        await db.schema
          .createTable('firmware_reports')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('device_id', 'text', (column) => column.notNull().references('devices.id'))
          .addColumn('release_id', 'text', (column) => column.references('firmware_releases.id'))
          .addColumn('target_name', 'text', (column) => column.notNull())
          .addColumn('outcome', 'text', (column) => column.notNull())
          .addColumn('from_version', 'text', (column) => column.notNull())
          .addColumn('reason', 'text')
          .addColumn('reported_at', 'text', (column) => column.notNull())
          .execute()
        await db.schema
          .createIndex('firmware_reports_device')
          .on('firmware_reports')
          .columns(['organization_id', 'device_id', 'reported_at'])
          .execute()
      },
    },
  }
}
