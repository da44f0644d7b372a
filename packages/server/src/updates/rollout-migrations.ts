import type { Kysely, Migration } from 'kysely'

import type { Dialect } from '../store/store.js'

/**
 * The updates domain's rollout tables. Named 0008 so they run after the devices domain's
 * tables they reference; releases are referred to by id and version only, so these tables
 * stand apart from the release repository's own. A shipped migration is never edited.
 */
export function rolloutMigrations(_dialect: Dialect): Record<string, Migration> {
  return {
    '0008-rollouts': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('rollouts')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('release_id', 'text', (column) => column.notNull())
          .addColumn('release_version', 'text', (column) => column.notNull())
          .addColumn('model_ids', 'text', (column) => column.notNull())
          .addColumn('device_ids', 'text')
          .addColumn('percent', 'integer', (column) => column.notNull())
          .addColumn('stages', 'text', (column) => column.notNull())
          .addColumn('failure_threshold_permille', 'integer', (column) => column.notNull())
          .addColumn('report_deadline_seconds', 'integer', (column) => column.notNull())
          .addColumn('state', 'text', (column) => column.notNull())
          .addColumn('stage', 'integer', (column) => column.notNull())
          .addColumn('stage_started_at', 'text', (column) => column.notNull())
          .addColumn('stage_deadline_at', 'text', (column) => column.notNull())
          .addColumn('accepted_failures', 'integer', (column) => column.notNull())
          .addColumn('paused_reason', 'text')
          .addColumn('created_at', 'text', (column) => column.notNull())
          .addColumn('updated_at', 'text', (column) => column.notNull())
          .execute()
        await db.schema
          .createIndex('rollouts_organization_state')
          .on('rollouts')
          .columns(['organization_id', 'state'])
          .execute()

        await db.schema
          .createTable('rollout_devices')
          .addColumn('rollout_id', 'text', (column) => column.notNull().references('rollouts.id'))
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('device_id', 'text', (column) => column.notNull().references('devices.id'))
          .addColumn('stage', 'integer', (column) => column.notNull())
          .addColumn('status', 'text', (column) => column.notNull())
          .addColumn('reason', 'text')
          .addColumn('updated_at', 'text', (column) => column.notNull())
          .addPrimaryKeyConstraint('rollout_devices_pk', ['rollout_id', 'device_id'])
          .execute()
        await db.schema
          .createIndex('rollout_devices_device')
          .on('rollout_devices')
          .columns(['organization_id', 'device_id'])
          .execute()
        await db.schema
          .createIndex('rollout_devices_stage')
          .on('rollout_devices')
          .columns(['rollout_id', 'stage', 'status'])
          .execute()
      },
    },
  }
}
