import type { Kysely, Migration } from 'kysely'

import { AuthenticationKeys, masterKeyNeeded, type KeyWrappingProvider } from '../keys/index.js'
import type { Transaction } from '../store/index.js'
import type { Dialect } from '../store/store.js'
import { manufacturerAuthorityCode } from './manufacturers.js'

/**
 * The identity domain's tables (certificate authorities, device certificates and manufacturer
 * CAs, then the manufacturers' CRLs and the CA rows' authentication codes). Names start with
 * 0003 so they run after the foundation and keys; a shipped migration is never edited, a
 * change is a new one.
 */
export function identityMigrations(
  dialect: Dialect,
  keys?: KeyWrappingProvider,
): Record<string, Migration> {
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
    // After the keys domain's authentication keys (0009). Manufacturer CA rows gain the
    // manufacturer's CRL and an authentication code over the whole row (see
    // `manufacturerAuthorityCode`); until now anyone who could write the database could add a
    // CA of their own and enroll devices under it.
    //
    // Keying the rows found at upgrade trusts them, and that is acceptable: until this
    // migration Ward trusted every manufacturer row anyway, so trusting the rows present at
    // this one moment grants nothing that was not already granted, while from here on a row
    // written or changed without the master key is refused. An operator who suspects the
    // database was written before the upgrade compares `ward manufacturer list` with the
    // `manufacturer-ca.register` events of the organization's audit log.
    '0010-manufacturer-authority-codes': {
      async up(db: Kysely<unknown>) {
        const tx = db as unknown as Transaction
        // Asked before any change: SQLite runs migrations outside a transaction.
        const stored = await tx.selectFrom('manufacturer_authorities').select('id').execute()
        if (stored.length > 0 && keys === undefined) throw masterKeyNeeded('manufacturer CAs')
        for (const [name, type] of [
          ['crl_der', bytes],
          ['crl_number', 'text'],
          ['crl_this_update', 'text'],
          ['crl_next_update', 'text'],
          ['crl_uploaded_at', 'text'],
          ['mac', bytes],
        ] as const) {
          await db.schema.alterTable('manufacturer_authorities').addColumn(name, type).execute()
        }
        const rows = await tx.selectFrom('manufacturer_authorities').selectAll().execute()
        if (rows.length === 0 || keys === undefined) return
        const authenticationKeys = new AuthenticationKeys(keys)
        for (const row of rows) {
          const key = await authenticationKeys.key(
            tx,
            row.organization_id,
            'manufacturer-authority',
          )
          await tx
            .updateTable('manufacturer_authorities')
            .set({ mac: manufacturerAuthorityCode(key, row) })
            .where('id', '=', row.id)
            .execute()
        }
      },
    },
  }
}
