import { randomUUID } from 'node:crypto'

import { WardError } from '@ward/core'

import type { Transaction } from '../store/index.js'

/** A care team: the people who look after a set of an organization's patients. */
export interface CareTeam {
  readonly id: string
  readonly organizationId: string
  readonly name: string
  readonly createdAt: string
}

/** A care team with its members (user ids) and patients (pseudonyms). */
export interface CareTeamDetail extends CareTeam {
  readonly members: readonly string[]
  readonly patients: readonly string[]
}

/** Most care teams one organization may have. */
export const maxCareTeamsPerOrganization = 1000
/** Most members one care team may have. */
export const maxCareTeamMembers = 500
/** Most patients one care team may have. */
export const maxCareTeamPatients = 5000

const namePattern = /^[A-Za-z0-9][A-Za-z0-9 ._()&/-]{0,99}$/
/** What a user id from authentication may look like: a UUID or another opaque token. */
export const userIdPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/

/**
 * Creates a care team named `name` in the organization. Throws `ERR_INPUT_INVALID` for a bad
 * name, `ERR_CARE_TEAM_EXISTS` when the organization has one by that name, and
 * `ERR_LIMIT_REACHED` past {@link maxCareTeamsPerOrganization}.
 */
export async function createCareTeam(
  tx: Transaction,
  input: { readonly organizationId: string; readonly name: string },
): Promise<CareTeam> {
  if (!namePattern.test(input.name)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      'care team name must be 1–100 letters, digits, spaces or ._()&/-, starting with a letter or digit',
      { details: { field: 'name' } },
    )
  }
  const existing = await tx
    .selectFrom('care_teams')
    .select('id')
    .where('organization_id', '=', input.organizationId)
    .where('name', '=', input.name)
    .executeTakeFirst()
  if (existing !== undefined) {
    throw new WardError('ERR_CARE_TEAM_EXISTS', 'a care team by that name already exists', {
      details: { field: 'name' },
    })
  }
  const { count } = await tx
    .selectFrom('care_teams')
    .select((select) => select.fn.countAll<number | string>().as('count'))
    .where('organization_id', '=', input.organizationId)
    .executeTakeFirstOrThrow()
  if (Number(count) >= maxCareTeamsPerOrganization) {
    throw new WardError(
      'ERR_LIMIT_REACHED',
      `an organization may have at most ${maxCareTeamsPerOrganization} care teams`,
      { details: { limit: maxCareTeamsPerOrganization } },
    )
  }
  const team: CareTeam = {
    id: randomUUID(),
    organizationId: input.organizationId,
    name: input.name,
    createdAt: new Date().toISOString(),
  }
  await tx
    .insertInto('care_teams')
    .values({
      id: team.id,
      organization_id: team.organizationId,
      name: team.name,
      created_at: team.createdAt,
    })
    .execute()
  return team
}

/**
 * The organization's care teams by name; with `memberUserId`, only the teams that user is a
 * member of.
 */
export async function listCareTeams(
  tx: Transaction,
  organizationId: string,
  options: { readonly memberUserId?: string } = {},
): Promise<CareTeam[]> {
  let select = tx
    .selectFrom('care_teams')
    .select(['care_teams.id', 'care_teams.organization_id', 'care_teams.name'])
    .select('care_teams.created_at')
    .where('care_teams.organization_id', '=', organizationId)
    .orderBy('care_teams.name')
  if (options.memberUserId !== undefined) {
    select = select
      .innerJoin('care_team_members', (join) =>
        join
          .onRef('care_team_members.care_team_id', '=', 'care_teams.id')
          .onRef('care_team_members.organization_id', '=', 'care_teams.organization_id'),
      )
      .where('care_team_members.user_id', '=', options.memberUserId)
  }
  const rows = await select.execute()
  return rows.map(toCareTeam)
}

/**
 * The care team of `organizationId` with id `careTeamId`. Throws `ERR_NOT_FOUND` when there
 * is none, the same for another organization's team as for an id that was never used.
 */
export async function findCareTeam(
  tx: Transaction,
  organizationId: string,
  careTeamId: string,
): Promise<CareTeam> {
  const row = await tx
    .selectFrom('care_teams')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('id', '=', careTeamId)
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError('ERR_NOT_FOUND', 'no such care team in this organization')
  }
  return toCareTeam(row)
}

/** The team with its members and patients, each sorted. */
export async function careTeamDetail(tx: Transaction, team: CareTeam): Promise<CareTeamDetail> {
  const members = await tx
    .selectFrom('care_team_members')
    .select('user_id')
    .where('organization_id', '=', team.organizationId)
    .where('care_team_id', '=', team.id)
    .orderBy('user_id')
    .execute()
  const patients = await tx
    .selectFrom('care_team_patients')
    .select('patient_pseudonym')
    .where('organization_id', '=', team.organizationId)
    .where('care_team_id', '=', team.id)
    .orderBy('patient_pseudonym')
    .execute()
  return {
    ...team,
    members: members.map((row) => row.user_id),
    patients: patients.map((row) => row.patient_pseudonym),
  }
}

// The roles a care team serves: its members reach its patients through them.
const careTeamRoles = ['clinician', 'care-coordinator']

/**
 * Puts user `userId` on the team; true when added, false when already a member. Throws
 * `ERR_INPUT_INVALID` for an id that is not one and for a person holding neither care role
 * (clinician, care coordinator), `ERR_NOT_FOUND` for anyone but a person of the team's
 * organization (another organization's, a platform operator and an id nobody holds are
 * answered alike), `ERR_LIMIT_REACHED` past {@link maxCareTeamMembers}.
 */
export async function addCareTeamMember(
  tx: Transaction,
  team: CareTeam,
  userId: string,
): Promise<boolean> {
  if (!userIdPattern.test(userId)) {
    throw new WardError('ERR_INPUT_INVALID', 'user id must be 1–128 letters, digits or ._:-', {
      details: { field: 'user' },
    })
  }
  const person = await tx
    .selectFrom('users')
    .select('id')
    .where('id', '=', userId)
    .where('organization_id', '=', team.organizationId)
    .executeTakeFirst()
  if (person === undefined) throw new WardError('ERR_NOT_FOUND', 'no such user')
  const careRole = await tx
    .selectFrom('user_role_grants')
    .select('role')
    .where('user_id', '=', userId)
    .where('organization_id', '=', team.organizationId)
    .where('role', 'in', careTeamRoles)
    .executeTakeFirst()
  if (careRole === undefined) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      'only a clinician or a care coordinator can be on a care team: grant the role first',
      { details: { field: 'user' } },
    )
  }
  const present = await tx
    .selectFrom('care_team_members')
    .select('user_id')
    .where('care_team_id', '=', team.id)
    .where('user_id', '=', userId)
    .executeTakeFirst()
  if (present !== undefined) return false
  await checkCount(tx, 'care_team_members', team, maxCareTeamMembers, 'members')
  await tx
    .insertInto('care_team_members')
    .values({
      care_team_id: team.id,
      organization_id: team.organizationId,
      user_id: userId,
      added_at: new Date().toISOString(),
    })
    .execute()
  return true
}

/** Takes user `userId` off the team; true when they were a member. */
export async function removeCareTeamMember(
  tx: Transaction,
  team: CareTeam,
  userId: string,
): Promise<boolean> {
  const result = await tx
    .deleteFrom('care_team_members')
    .where('organization_id', '=', team.organizationId)
    .where('care_team_id', '=', team.id)
    .where('user_id', '=', userId)
    .executeTakeFirst()
  return Number(result.numDeletedRows) > 0
}

/**
 * Puts the patient (of the team's organization) in the team's care; true when added, false
 * when already there. `ERR_LIMIT_REACHED` past {@link maxCareTeamPatients}.
 */
export async function addCareTeamPatient(
  tx: Transaction,
  team: CareTeam,
  patient: { readonly id: string; readonly organizationId: string; readonly pseudonym: string },
): Promise<boolean> {
  if (patient.organizationId !== team.organizationId) {
    throw new WardError('ERR_PATIENT_NOT_FOUND', 'no such patient in this organization')
  }
  const present = await tx
    .selectFrom('care_team_patients')
    .select('patient_id')
    .where('care_team_id', '=', team.id)
    .where('patient_id', '=', patient.id)
    .executeTakeFirst()
  if (present !== undefined) return false
  await checkCount(tx, 'care_team_patients', team, maxCareTeamPatients, 'patients')
  await tx
    .insertInto('care_team_patients')
    .values({
      care_team_id: team.id,
      organization_id: team.organizationId,
      patient_id: patient.id,
      patient_pseudonym: patient.pseudonym,
      added_at: new Date().toISOString(),
    })
    .execute()
  return true
}

/** Ends the team's care of the patient; true when the team had them. */
export async function removeCareTeamPatient(
  tx: Transaction,
  team: CareTeam,
  patientId: string,
): Promise<boolean> {
  const result = await tx
    .deleteFrom('care_team_patients')
    .where('organization_id', '=', team.organizationId)
    .where('care_team_id', '=', team.id)
    .where('patient_id', '=', patientId)
    .executeTakeFirst()
  return Number(result.numDeletedRows) > 0
}

/**
 * What the policy needs to know about user `userId` in the organization: the ids of the care
 * teams they are on, and — when `patientPseudonym` is given — whether one of those teams has
 * that patient (the returned set then holds it, or is empty).
 */
export async function careTeamFacts(
  tx: Transaction,
  organizationId: string,
  userId: string,
  patientPseudonym?: string,
): Promise<{ careTeams: Set<string>; careTeamPatients: Set<string> }> {
  const teams = await tx
    .selectFrom('care_team_members')
    .select('care_team_id')
    .where('organization_id', '=', organizationId)
    .where('user_id', '=', userId)
    .execute()
  const careTeams = new Set(teams.map((row) => row.care_team_id))
  const careTeamPatients = new Set<string>()
  if (patientPseudonym !== undefined && careTeams.size > 0) {
    const covered = await tx
      .selectFrom('care_team_patients')
      .select('care_team_id')
      .where('organization_id', '=', organizationId)
      .where('patient_pseudonym', '=', patientPseudonym)
      .where('care_team_id', 'in', [...careTeams])
      .executeTakeFirst()
    if (covered !== undefined) careTeamPatients.add(patientPseudonym)
  }
  return { careTeams, careTeamPatients }
}

async function checkCount(
  tx: Transaction,
  table: 'care_team_members' | 'care_team_patients',
  team: CareTeam,
  limit: number,
  what: string,
): Promise<void> {
  const { count } = await tx
    .selectFrom(table)
    .select((select) => select.fn.countAll<number | string>().as('count'))
    .where('organization_id', '=', team.organizationId)
    .where('care_team_id', '=', team.id)
    .executeTakeFirstOrThrow()
  if (Number(count) >= limit) {
    throw new WardError('ERR_LIMIT_REACHED', `a care team may have at most ${limit} ${what}`, {
      details: { limit },
    })
  }
}

function toCareTeam(row: {
  id: string
  organization_id: string
  name: string
  created_at: string
}): CareTeam {
  return {
    id: row.id,
    organizationId: row.organization_id,
    name: row.name,
    createdAt: row.created_at,
  }
}
