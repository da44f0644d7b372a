import type { Kysely, Migration } from 'kysely'

import type { Dialect } from '../store/store.js'

/**
 * The access domain's people tables: users, role grants, passwords, MFA credentials,
 * sessions, API tokens and sign-in throttles. Named 0006 so they run after the records
 * domain's; a shipped migration is never edited, a change is a new one.
 */
export function accessPeopleMigrations(dialect: Dialect): Record<string, Migration> {
  const bytes = dialect === 'sqlite' ? 'blob' : 'bytea'
  const bigint = dialect === 'sqlite' ? 'integer' : 'bigint'

  return {
    '0006-access-people': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('users')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) => column.references('organizations.id'))
          .addColumn('login_name', 'text', (column) => column.notNull().unique())
          .addColumn('status', 'text', (column) => column.notNull())
          .addColumn('patient_pseudonym', 'text')
          .addColumn('created_at', 'text', (column) => column.notNull())
          .addColumn('updated_at', 'text', (column) => column.notNull())
          .execute()

        await db.schema
          .createTable('user_role_grants')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('user_id', 'text', (column) => column.notNull().references('users.id'))
          .addColumn('organization_id', 'text', (column) => column.references('organizations.id'))
          .addColumn('role', 'text', (column) => column.notNull())
          .addColumn('created_at', 'text', (column) => column.notNull())
          .execute()
        await db.schema
          .createIndex('user_role_grants_user')
          .on('user_role_grants')
          .columns(['user_id', 'role'])
          .execute()

        await db.schema
          .createTable('user_passwords')
          .addColumn('user_id', 'text', (column) => column.primaryKey().references('users.id'))
          .addColumn('password_hash', 'text', (column) => column.notNull())
          .addColumn('updated_at', 'text', (column) => column.notNull())
          .execute()

        await db.schema
          .createTable('user_setup_tokens')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('user_id', 'text', (column) => column.notNull().references('users.id'))
          .addColumn('token_hash', 'text', (column) => column.notNull().unique())
          .addColumn('expires_at', 'text', (column) => column.notNull())
          .addColumn('used_at', 'text')
          .addColumn('created_at', 'text', (column) => column.notNull())
          .execute()

        await db.schema
          .createTable('user_totp_credentials')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('user_id', 'text', (column) => column.notNull().references('users.id'))
          .addColumn('wrapped_secret', bytes, (column) => column.notNull())
          .addColumn('confirmed_at', 'text')
          .addColumn('last_step', bigint)
          .addColumn('created_at', 'text', (column) => column.notNull())
          .execute()
        await db.schema
          .createIndex('user_totp_credentials_user')
          .on('user_totp_credentials')
          .column('user_id')
          .execute()

        await db.schema
          .createTable('user_webauthn_credentials')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('user_id', 'text', (column) => column.notNull().references('users.id'))
          .addColumn('credential_id', 'text', (column) => column.notNull().unique())
          .addColumn('public_key', bytes, (column) => column.notNull())
          .addColumn('sign_count', bigint, (column) => column.notNull())
          .addColumn('transports', 'text', (column) => column.notNull())
          .addColumn('created_at', 'text', (column) => column.notNull())
          .addColumn('last_used_at', 'text')
          .execute()
        await db.schema
          .createIndex('user_webauthn_credentials_user')
          .on('user_webauthn_credentials')
          .column('user_id')
          .execute()

        await db.schema
          .createTable('user_webauthn_challenges')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('session_id', 'text', (column) => column.notNull())
          .addColumn('purpose', 'text', (column) => column.notNull())
          .addColumn('challenge', 'text', (column) => column.notNull())
          .addColumn('expires_at', 'text', (column) => column.notNull())
          .execute()
        await db.schema
          .createIndex('user_webauthn_challenges_session')
          .on('user_webauthn_challenges')
          .columns(['session_id', 'purpose'])
          .execute()

        await db.schema
          .createTable('user_recovery_codes')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('user_id', 'text', (column) => column.notNull().references('users.id'))
          .addColumn('code_hash', 'text', (column) => column.notNull())
          .addColumn('used_at', 'text')
          .addColumn('created_at', 'text', (column) => column.notNull())
          .execute()
        await db.schema
          .createIndex('user_recovery_codes_user')
          .on('user_recovery_codes')
          .columns(['user_id', 'code_hash'])
          .execute()

        await db.schema
          .createTable('user_sessions')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('user_id', 'text', (column) => column.notNull().references('users.id'))
          .addColumn('token_hash', 'text', (column) => column.notNull().unique())
          .addColumn('csrf_hash', 'text', (column) => column.notNull())
          .addColumn('stage', 'text', (column) => column.notNull())
          .addColumn('mfa_verified', 'integer', (column) => column.notNull())
          .addColumn('second_factor_failures', 'integer', (column) => column.notNull())
          .addColumn('created_at', 'text', (column) => column.notNull())
          .addColumn('last_seen_at', 'text', (column) => column.notNull())
          .addColumn('expires_at', 'text', (column) => column.notNull())
          .addColumn('ended_at', 'text')
          .execute()
        await db.schema
          .createIndex('user_sessions_user')
          .on('user_sessions')
          .column('user_id')
          .execute()

        await db.schema
          .createTable('user_api_tokens')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('user_id', 'text', (column) => column.notNull().references('users.id'))
          .addColumn('label', 'text', (column) => column.notNull())
          .addColumn('token_hash', 'text', (column) => column.notNull().unique())
          .addColumn('scopes', 'text', (column) => column.notNull())
          .addColumn('created_at', 'text', (column) => column.notNull())
          .addColumn('expires_at', 'text', (column) => column.notNull())
          .addColumn('revoked_at', 'text')
          .addColumn('last_used_at', 'text')
          .execute()
        await db.schema
          .createIndex('user_api_tokens_user')
          .on('user_api_tokens')
          .column('user_id')
          .execute()

        await db.schema
          .createTable('sign_in_throttles')
          .addColumn('kind', 'text', (column) => column.notNull())
          .addColumn('key_hash', 'text', (column) => column.notNull())
          .addColumn('failures', 'integer', (column) => column.notNull())
          .addColumn('window_start', 'text', (column) => column.notNull())
          .addColumn('blocked_until', 'text')
          .addPrimaryKeyConstraint('sign_in_throttles_pk', ['kind', 'key_hash'])
          .execute()

        await db.schema
          .createTable('sign_in_known_addresses')
          .addColumn('user_id', 'text', (column) => column.notNull().references('users.id'))
          .addColumn('address_hash', 'text', (column) => column.notNull())
          .addColumn('last_success_at', 'text', (column) => column.notNull())
          .addPrimaryKeyConstraint('sign_in_known_addresses_pk', ['user_id', 'address_hash'])
          .execute()
      },
    },
  }
}
