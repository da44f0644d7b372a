import type { Kysely, Migration } from 'kysely'

import type { Dialect } from '../store/store.js'

/**
 * The records domain's tables (patients, the identity vault, observations). Named 0005 so they
 * run after the keys domain's, whose data keys they reference; a shipped migration is never
 * edited, a change is a new one.
 */
export function recordsMigrations(dialect: Dialect): Record<string, Migration> {
  const bytes = dialect === 'sqlite' ? 'blob' : 'bytea'

  return {
    '0005-records': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('patients')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('pseudonym', 'text', (column) => column.notNull().unique())
          .addColumn('data_key_id', 'text', (column) => column.notNull().references('data_keys.id'))
          .addColumn('created_at', 'text', (column) => column.notNull())
          // The target of the composite keys below, which tie every row to its patient's own
          // organization.
          .addUniqueConstraint('patients_organization_id', ['organization_id', 'id'])
          .execute()
        await db.schema
          .createIndex('patients_organization_created')
          .on('patients')
          .columns(['organization_id', 'created_at'])
          .execute()

        await db.schema
          .createTable('patient_identities')
          .addColumn('patient_id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) => column.notNull())
          .addColumn('sealed_identity', bytes, (column) => column.notNull())
          .addColumn('updated_at', 'text', (column) => column.notNull())
          .addForeignKeyConstraint(
            'patient_identities_patient_fk',
            ['organization_id', 'patient_id'],
            'patients',
            ['organization_id', 'id'],
          )
          .execute()

        await db.schema
          .createTable('observations')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) => column.notNull())
          .addColumn('patient_id', 'text', (column) => column.notNull())
          .addColumn('device_id', 'text', (column) => column.notNull())
          .addColumn('message_id', 'text', (column) => column.notNull())
          .addColumn('code', 'text', (column) => column.notNull())
          .addColumn('effective_at', 'text', (column) => column.notNull())
          .addColumn('received_at', 'text', (column) => column.notNull())
          .addColumn('sealed_resource', bytes, (column) => column.notNull())
          .addForeignKeyConstraint(
            'observations_patient_fk',
            ['organization_id', 'patient_id'],
            'patients',
            ['organization_id', 'id'],
          )
          .addUniqueConstraint('observations_device_message', [
            'organization_id',
            'device_id',
            'message_id',
          ])
          .execute()
        await db.schema
          .createIndex('observations_patient_effective')
          .on('observations')
          .columns(['organization_id', 'patient_id', 'effective_at'])
          .execute()
      },
    },
    // Named to run after every domain's first migrations, whatever their numbers.
    '0008-records-reading-pages': {
      async up(db: Kysely<unknown>) {
        // Readings are paged by (effective time, id): with the id in the index, the next page
        // starts with one index seek, in either direction, and needs no sort. It replaces the
        // index without the id, which it serves in every query that one served.
        await db.schema
          .createIndex('observations_patient_effective_id')
          .on('observations')
          .columns(['organization_id', 'patient_id', 'effective_at', 'id'])
          .execute()
        await db.schema.dropIndex('observations_patient_effective').execute()
      },
    },
  }
}
