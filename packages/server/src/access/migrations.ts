import type { Kysely, Migration } from 'kysely'

import type { Dialect } from '../store/store.js'

/**
 * The access domain's tables: care teams, their members and patients, and break-glass grants
 * with their review. Named 0100 so they run after every domain they point at (organizations,
 * patients); a shipped migration is never edited, a change is a new one.
 */
export function accessMigrations(dialect: Dialect): Record<string, Migration> {
  const bytes = dialect === 'sqlite' ? 'blob' : 'bytea'

  return {
    '0100-access-policy': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('care_teams')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) =>
            column.notNull().references('organizations.id'),
          )
          .addColumn('name', 'text', (column) => column.notNull())
          .addColumn('created_at', 'text', (column) => column.notNull())
          .addUniqueConstraint('care_teams_name', ['organization_id', 'name'])
          .addUniqueConstraint('care_teams_organization_id', ['organization_id', 'id'])
          .execute()

        await db.schema
          .createTable('care_team_members')
          .addColumn('care_team_id', 'text', (column) => column.notNull())
          .addColumn('organization_id', 'text', (column) => column.notNull())
          .addColumn('user_id', 'text', (column) => column.notNull())
          .addColumn('added_at', 'text', (column) => column.notNull())
          .addPrimaryKeyConstraint('care_team_members_pk', ['care_team_id', 'user_id'])
          .addForeignKeyConstraint(
            'care_team_members_team_fk',
            ['organization_id', 'care_team_id'],
            'care_teams',
            ['organization_id', 'id'],
          )
          .execute()
        await db.schema
          .createIndex('care_team_members_user')
          .on('care_team_members')
          .columns(['organization_id', 'user_id'])
          .execute()

        await db.schema
          .createTable('care_team_patients')
          .addColumn('care_team_id', 'text', (column) => column.notNull())
          .addColumn('organization_id', 'text', (column) => column.notNull())
          .addColumn('patient_id', 'text', (column) => column.notNull())
          .addColumn('patient_pseudonym', 'text', (column) => column.notNull())
          .addColumn('added_at', 'text', (column) => column.notNull())
          .addPrimaryKeyConstraint('care_team_patients_pk', ['care_team_id', 'patient_id'])
          .addForeignKeyConstraint(
            'care_team_patients_team_fk',
            ['organization_id', 'care_team_id'],
            'care_teams',
            ['organization_id', 'id'],
          )
          .addForeignKeyConstraint(
            'care_team_patients_patient_fk',
            ['organization_id', 'patient_id'],
            'patients',
            ['organization_id', 'id'],
          )
          .execute()
        await db.schema
          .createIndex('care_team_patients_pseudonym')
          .on('care_team_patients')
          .columns(['organization_id', 'patient_pseudonym'])
          .execute()

        await db.schema
          .createTable('break_glass_grants')
          .addColumn('id', 'text', (column) => column.primaryKey())
          .addColumn('organization_id', 'text', (column) => column.notNull())
          .addColumn('user_id', 'text', (column) => column.notNull())
          .addColumn('patient_id', 'text', (column) => column.notNull())
          .addColumn('patient_pseudonym', 'text', (column) => column.notNull())
          .addColumn('reason_code', 'text', (column) => column.notNull())
          .addColumn('sealed_reason', bytes, (column) => column.notNull())
          .addColumn('opened_at', 'text', (column) => column.notNull())
          .addColumn('expires_at', 'text', (column) => column.notNull())
          .addColumn('review_status', 'text', (column) => column.notNull())
          .addColumn('review_outcome', 'text')
          .addColumn('reviewed_by', 'text')
          .addColumn('reviewed_at', 'text')
          .addForeignKeyConstraint(
            'break_glass_grants_patient_fk',
            ['organization_id', 'patient_id'],
            'patients',
            ['organization_id', 'id'],
          )
          .execute()
        await db.schema
          .createIndex('break_glass_grants_user_patient')
          .on('break_glass_grants')
          .columns(['organization_id', 'user_id', 'patient_pseudonym', 'expires_at'])
          .execute()
        await db.schema
          .createIndex('break_glass_grants_review')
          .on('break_glass_grants')
          .columns(['organization_id', 'review_status', 'opened_at'])
          .execute()
      },
    },
  }
}
