import type { Kysely, Migration } from 'kysely'

import type { Dialect } from '../store/store.js'

/**
 * The keys domain's tables (key-encryption keys, data keys, then authentication keys). Names start with 0002 so they
 * run after the foundation; a shipped migration is never edited, a change is a new one.
 */
export function keysMigrations(dialect: Dialect): Record<string, Migration> {
  const bytes = dialect === 'sqlite' ? 'blob' : 'bytea'

  return {
    '0002-keys': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('key_encryption_keys')
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('version', 'integer', (column) => column.notNull())
          .addColumn('state', 'text', (column) => column.notNull())
          .addColumn('provider', 'text', (column) => column.notNull())
          .addColumn('wrapped_key', bytes)
          .addColumn('created_at', 'text', (column) => column.notNull())
          .addColumn('retired_at', 'text')
          .addPrimaryKeyConstraint('key_encryption_keys_pk', ['organization_id', 'version'])
          .execute()

        await db.schema
          .createTable('data_keys')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('owner_type', 'text', (column) => column.notNull())
          .addColumn('owner_id', 'text', (column) => column.notNull())
          .addColumn('version', 'integer', (column) => column.notNull())
          .addColumn('key_encryption_key_version', 'integer', (column) => column.notNull())
          .addColumn('wrapped_key', bytes, (column) => column.notNull())
          .addColumn('created_at', 'text', (column) => column.notNull())
          .addColumn('rewrapped_at', 'text')
          .addColumn('destroyed_at', 'text')
          .addColumn('destruction_reason', 'text')
          .addForeignKeyConstraint(
            'data_keys_key_encryption_key_fk',
            ['organization_id', 'key_encryption_key_version'],
            'key_encryption_keys',
            ['organization_id', 'version'],
          )
          .addUniqueConstraint('data_keys_owner_version', [
            'organization_id',
            'owner_type',
            'owner_id',
            'version',
          ])
          .execute()
        // The rewrap job looks for an organization's keys still under an older version.
        await db.schema
          .createIndex('data_keys_key_encryption_key')
          .on('data_keys')
          .columns(['organization_id', 'key_encryption_key_version'])
          .execute()
      },
    },
    // Named to run after every domain's first migrations, and before the identity and devices
    // migrations that key their rows with these keys.
    '0009-authentication-keys': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('authentication_keys')
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('purpose', 'text', (column) => column.notNull())
          .addColumn('provider', 'text', (column) => column.notNull())
          .addColumn('wrapped_key', bytes, (column) => column.notNull())
          .addColumn('created_at', 'text', (column) => column.notNull())
          .addPrimaryKeyConstraint('authentication_keys_pk', ['organization_id', 'purpose'])
          .execute()
      },
    },
  }
}
