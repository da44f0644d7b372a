import type { Kysely, Migration } from 'kysely'

import type { Dialect } from '../store/store.js'

/**
 * The identity domain's tables (certificate authorities, device certificates and manufacturer
 * CAs). Names start with 0003 so they run after the foundation and keys; a shipped migration is
 * never edited, a change is a new one.
 */
export function identityMigrations(dialect: Dialect): Record<string, Migration> {
  const bytes = dialect === 'sqlite' ? 'blob' : 'bytea'
  const bigint = dialect === 'sqlite' ? 'integer' : 'bigint'

  return {
    '0003-identity': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('certificate_authorities')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('role', 'text', (column) => column.notNull())
          .addColumn('issuer_id', 'text', (column) =>
            column.references('certificate_authorities.id'),
          )
          .addColumn('subject', 'text', (column) => column.notNull())
          .addColumn('serial_number', 'text', (column) => column.notNull())
          .addColumn('subject_key_identifier', 'text', (column) => column.notNull())
          .addColumn('fingerprint_sha256', 'text', (column) => column.notNull().unique())
          .addColumn('certificate_pem', 'text', (column) => column.notNull())
          .addColumn('not_before', 'text', (column) => column.notNull())
          .addColumn('not_after', 'text', (column) => column.notNull())
          .addColumn('wrapped_private_key', bytes)
          .addColumn('provider', 'text')
          .addColumn('crl_number', bigint, (column) => column.notNull())
          .addColumn('crl_pem', 'text')
          .addColumn('crl_next_update', 'text')
          .addColumn('created_at', 'text', (column) => column.notNull())
          // One root and one issuing CA per organization; rotating either is a later migration.
          .addUniqueConstraint('certificate_authorities_role', ['organization_id', 'role'])
          .execute()

        await db.schema
          .createTable('device_certificates')
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('serial_number', 'text', (column) => column.notNull())
          .addColumn('issuer_id', 'text', (column) =>
            column.notNull().references('certificate_authorities.id'),
          )
          .addColumn('device_id', 'text', (column) => column.notNull())
          .addColumn('device_serial', 'text', (column) => column.notNull())
          .addColumn('fingerprint_sha256', 'text', (column) => column.notNull().unique())
          .addColumn('public_key_sha256', 'text', (column) => column.notNull())
          .addColumn('not_before', 'text', (column) => column.notNull())
          .addColumn('not_after', 'text', (column) => column.notNull())
          .addColumn('certificate_pem', 'text', (column) => column.notNull())
          .addColumn('issued_at', 'text', (column) => column.notNull())
          .addColumn('revoked_at', 'text')
          .addColumn('revocation_reason', 'text')
          .addPrimaryKeyConstraint('device_certificates_pk', ['organization_id', 'serial_number'])
          .execute()
        await db.schema
          .createIndex('device_certificates_device')
          .on('device_certificates')
          .columns(['organization_id', 'device_id'])
          .execute()
        await db.schema
          .createIndex('device_certificates_public_key')
          .on('device_certificates')
          .columns(['organization_id', 'public_key_sha256'])
          .execute()
        await db.schema
          .createIndex('device_certificates_revoked')
          .on('device_certificates')
          .columns(['issuer_id', 'revoked_at'])
          .execute()

        await db.schema
          .createTable('manufacturer_authorities')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('name', 'text', (column) => column.notNull())
          .addColumn('subject', 'text', (column) => column.notNull())
          .addColumn('subject_key_identifier', 'text')
          .addColumn('fingerprint_sha256', 'text', (column) => column.notNull())
          .addColumn('certificate_pem', 'text', (column) => column.notNull())
          .addColumn('not_before', 'text', (column) => column.notNull())
          .addColumn('not_after', 'text', (column) => column.notNull())
          .addColumn('created_at', 'text', (column) => column.notNull())
          .addUniqueConstraint('manufacturer_authorities_certificate', [
            'organization_id',
            'fingerprint_sha256',
          ])
          .execute()
      },
    },
  }
}
