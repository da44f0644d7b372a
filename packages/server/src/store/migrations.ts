import type { Kysely, Migration, MigrationProvider } from 'kysely'

import { accessMigrations } from '../access/migrations.js'
import { accessPeopleMigrations } from '../access/people-migrations.js'
import { devicesMigrations } from '../devices/migrations.js'
import { identityMigrations } from '../identity/migrations.js'
import { keysMigrations } from '../keys/migrations.js'
import { recordsMigrations } from '../records/migrations.js'
import { updatesMigrations } from '../updates/migrations.js'
import { rolloutMigrations } from '../updates/rollout-migrations.js'
import type { KeyWrappingProvider } from '../keys/master-key.js'
import type { Dialect } from './store.js'

/**
 * Ward's schema history, oldest first. A migration that has shipped is never edited; a change
 * is a new migration. Each is written once for both dialects, differing only in column types.
 */
function migrations(dialect: Dialect): Record<string, Migration> {
  const bytes = dialect === 'sqlite' ? 'blob' : 'bytea'
  const bigint = dialect === 'sqlite' ? 'integer' : 'bigint'

  return {
    '0001-foundation': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('organizations')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('slug', 'text', (column) => column.notNull().unique())
          .addColumn('name', 'text', (column) => column.notNull())
          .addColumn('created_at', 'text', (column) => column.notNull())
          .execute()

        await db.schema
          .createTable('signing_keys')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('purpose', 'text', (column) => column.notNull())
          .addColumn('algorithm', 'text', (column) => column.notNull())
          .addColumn('public_key', bytes, (column) => column.notNull())
          .addColumn('wrapped_private_key', bytes, (column) => column.notNull())
          .addColumn('provider', 'text', (column) => column.notNull())
          .addColumn('created_at', 'text', (column) => column.notNull())
          .execute()

        await db.schema
          .createTable('audit_logs')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('name', 'text', (column) => column.notNull().unique())
          .addColumn('origin', 'text', (column) => column.notNull())
          .addColumn('organization_id', 'text', (column) =>
            column.references('organizations.id').unique(),
          )
          .addColumn('signing_key_id', 'text', (column) =>
            column.notNull().references('signing_keys.id'),
          )
          .addColumn('size', bigint, (column) => column.notNull())
          .addColumn('frontier', bytes, (column) => column.notNull())
          .addColumn('wrapped_entry_key', bytes, (column) => column.notNull())
          .addColumn('created_at', 'text', (column) => column.notNull())
          .execute()

        await db.schema
          .createTable('audit_entries')
          .addColumn('log_id', 'text', (column) => column.notNull().references('audit_logs.id'))
          .addColumn('idx', bigint, (column) => column.notNull())
          .addColumn('event_id', 'text', (column) => column.notNull())
          .addColumn('recorded_at', 'text', (column) => column.notNull())
          .addColumn('body', bytes, (column) => column.notNull())
          .addColumn('hashes', bytes, (column) => column.notNull())
          .addColumn('mac', bytes, (column) => column.notNull())
          .addPrimaryKeyConstraint('audit_entries_pk', ['log_id', 'idx'])
          .execute()

        await db.schema
          .createTable('audit_checkpoints')
          .addColumn('id', dialect === 'sqlite' ? 'integer' : 'bigserial', (column) =>
            dialect === 'sqlite' ? column.primaryKey().autoIncrement() : column.primaryKey(),
          )
          .addColumn('log_id', 'text', (column) => column.notNull().references('audit_logs.id'))
          .addColumn('size', bigint, (column) => column.notNull())
          .addColumn('root_hash', bytes, (column) => column.notNull())
          .addColumn('note', 'text', (column) => column.notNull())
          .addColumn('signed_at', 'text', (column) => column.notNull())
          .execute()
        await db.schema
          .createIndex('audit_checkpoints_log')
          .on('audit_checkpoints')
          .columns(['log_id', 'id'])
          .execute()
      },
    },
    // Named to run after every domain's first migrations, whatever their numbers.
    '0008-audit-entries-by-time': {
      async up(db: Kysely<unknown>) {
        // The AuditEvent search by date: entries of one log in recorded order, paged by
        // (recorded time, index) with one index seek.
        await db.schema
          .createIndex('audit_entries_recorded')
          .on('audit_entries')
          .columns(['log_id', 'recorded_at', 'idx'])
          .execute()
      },
    },
  }
}

/**
 * Every domain's migrations, in one ordered record. Names sort in the order they must run;
 * a domain's migration module returns only the migrations it has written.
 */
function allMigrations(
  dialect: Dialect,
  keys: KeyWrappingProvider | undefined,
): Record<string, Migration> {
  return {
    ...migrations(dialect),
    ...keysMigrations(dialect),
    ...identityMigrations(dialect, keys),
    ...devicesMigrations(dialect, keys),
    ...recordsMigrations(dialect),
    ...updatesMigrations(dialect),
    ...accessMigrations(dialect),
    ...accessPeopleMigrations(dialect),
    ...rolloutMigrations(dialect),
  }
}

/**
 * Supplies Ward's migrations to Kysely's migrator. `keys`, the master key, is for the
 * migrations that authenticate rows already stored; they refuse to run without it on a
 * database that holds such rows.
 */
export class WardMigrations implements MigrationProvider {
  readonly #dialect: Dialect
  readonly #keys: KeyWrappingProvider | undefined

  constructor(dialect: Dialect, keys?: KeyWrappingProvider) {
    this.#dialect = dialect
    this.#keys = keys
  }

  async getMigrations(): Promise<Record<string, Migration>> {
    return allMigrations(this.#dialect, this.#keys)
  }
}
