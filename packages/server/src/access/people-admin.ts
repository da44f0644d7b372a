import { WardError, isWardError, withArticle } from '@ward/core'

import type { OperationContext } from '../context.js'
import type { Organization } from '../tenancy/index.js'
import type { Ward } from '../ward.js'
import { findUser, findUserByLoginName, foldLoginName, listGrants, type User } from './accounts.js'
import { isRole, type Role } from './principal.js'

/**
 * Which roles a role may hand out. An org admin grants every role of an organization, but
 * never `platform-operator`: that role has no organization, and an organization's admin must
 * not be able to mint someone who acts across all of them. A platform operator grants exactly
 * one role in an organization, `org-admin`, and only as that organization's first admin (see
 * {@link PeopleAdministration.createFirstAdmin}).
 */
export const grantableRoles: Readonly<Partial<Record<Role, readonly Role[]>>> = {
  'org-admin': [
    'patient',
    'clinician',
    'care-coordinator',
    'support',
    'device-engineer',
    'privacy-officer',
    'security-officer',
    'org-admin',
    'auditor',
  ],
  'platform-operator': ['org-admin'],
}

/** Most people one listing returns. */
export const maxPeoplePerPage = 500

/** A person as an org admin sees them: ids, login name, roles and status; no secret. */
export interface PersonSummary {
  readonly id: string
  readonly loginName: string
  readonly roles: readonly Role[]
  readonly status: 'active' | 'disabled'
  /** Whether the person has chosen a password (spent their setup token). */
  readonly passwordSet: boolean
  readonly patient: string | null
  readonly createdAt: string
}

/** A person just created, or given a new setup token: the token is shown once. */
export interface SetupIssued {
  readonly person: PersonSummary
  readonly setupToken: string
  readonly setupTokenExpiresAt: string
}

/**
 * An organization's people as its admins manage them: create with roles, list, grant and
 * revoke roles, disable, reissue a setup token. Every change goes through {@link People},
 * which audits it in the organization's log. A person of another organization (or a platform
 * operator) is `ERR_NOT_FOUND` exactly as one that does not exist. Who may do this at all is
 * the policy's decision; which roles the acting role may hand out is decided here, by
 * {@link grantableRoles}.
 */
export class PeopleAdministration {
  readonly #ward: Ward

  constructor(ward: Ward) {
    this.#ward = ward
  }

  /** The organization's people by login name, at most `limit`, after login name `after`. */
  async list(
    organization: Organization,
    page: { limit?: number; after?: string } = {},
  ): Promise<PersonSummary[]> {
    const limit = page.limit ?? maxPeoplePerPage
    if (!Number.isInteger(limit) || limit < 1 || limit > maxPeoplePerPage) {
      throw new WardError('ERR_INPUT_INVALID', `limit must be 1 to ${maxPeoplePerPage}`, {
        details: { field: 'limit' },
      })
    }
    const db = this.#ward.store.db
    let query = db
      .selectFrom('users')
      .selectAll()
      .where('organization_id', '=', organization.id)
      .orderBy('login_name')
      .limit(limit)
    if (page.after !== undefined) query = query.where('login_name', '>', foldLoginName(page.after))
    const rows = await query.execute()
    if (rows.length === 0) return []
    const ids = rows.map((row) => row.id)
    const grants = await db
      .selectFrom('user_role_grants')
      .select(['user_id', 'role'])
      .where('user_id', 'in', ids)
      .orderBy('created_at')
      .orderBy('id')
      .execute()
    const passwords = await db
      .selectFrom('user_passwords')
      .select('user_id')
      .where('user_id', 'in', ids)
      .execute()
    const withPassword = new Set(passwords.map((row) => row.user_id))
    return rows.map((row) => ({
      id: row.id,
      loginName: row.login_name,
      roles: grants.flatMap((grant) =>
        grant.user_id === row.id && isRole(grant.role) ? [grant.role] : [],
      ),
      status: row.status === 'active' ? 'active' : 'disabled',
      passwordSet: withPassword.has(row.id),
      patient: row.patient_pseudonym,
      createdAt: row.created_at,
    }))
  }

  /** One person of the organization. */
  async find(organization: Organization, userId: string): Promise<PersonSummary> {
    const user = await this.#member(organization, userId)
    return this.#summary(user)
  }

  /**
   * Creates a person of the organization holding `roles`, each of which `by` must be allowed
   * to grant; `patient` links the patient role to that patient's pseudonym.
   */
  async create(
    context: OperationContext,
    organization: Organization,
    by: Role,
    input: { loginName: string; roles: readonly Role[]; patient?: string },
  ): Promise<SetupIssued> {
    for (const role of input.roles) checkGrantable(by, role)
    const created = await this.#ward.people
      .createUser(context, {
        organizationId: organization.id,
        loginName: input.loginName,
        roles: input.roles,
        ...(input.patient === undefined ? {} : { patientPseudonym: input.patient }),
      })
      .catch(patientNotFoundAsInput)
    return {
      person: await this.#summary(created.user),
      setupToken: created.setupToken,
      setupTokenExpiresAt: created.setupTokenExpiresAt,
    }
  }

  /**
   * Grants `role` (which `by` must be allowed to grant) to a person of the organization. Nobody
   * grants a role to themselves: an admin who could would reach patients' readings as a
   * clinician, or review their own emergency access as a privacy officer, on their own say.
   */
  async grant(
    context: OperationContext,
    organization: Organization,
    by: Role,
    userId: string,
    role: Role,
    patient?: string,
  ): Promise<PersonSummary> {
    checkGrantable(by, role)
    const user = await this.#member(organization, userId)
    if (user.id === context.actor.id) {
      throw new WardError(
        'ERR_ACCESS_DENIED',
        'you cannot grant yourself a role; another org admin can',
        { details: { rule: 'deny.own-grant' } },
      )
    }
    await this.#ward.people.grantRole(context, user.id, role, patient).catch(patientNotFoundAsInput)
    return this.find(organization, user.id)
  }

  /**
   * Revokes `role` from a person of the organization. An admin cannot revoke their own
   * `org-admin`, so an organization is not left without one by a slip.
   */
  async revoke(
    context: OperationContext,
    organization: Organization,
    by: Role,
    userId: string,
    role: Role,
  ): Promise<PersonSummary> {
    checkGrantable(by, role)
    const user = await this.#member(organization, userId)
    if (role === 'org-admin' && user.id === context.actor.id) {
      throw new WardError(
        'ERR_INPUT_INVALID',
        'you cannot revoke your own org-admin role; another org admin can',
        { details: { field: 'role' } },
      )
    }
    await this.#ward.people.revokeRole(context, user.id, role)
    return this.find(organization, user.id)
  }

  /** Disables a person of the organization, ending their sessions and tokens; not oneself. */
  async disable(
    context: OperationContext,
    organization: Organization,
    userId: string,
  ): Promise<PersonSummary> {
    const user = await this.#member(organization, userId)
    if (user.id === context.actor.id) {
      throw new WardError(
        'ERR_INPUT_INVALID',
        'you cannot disable yourself; another org admin can',
        {
          details: { field: 'user' },
        },
      )
    }
    await this.#ward.people.disableUser(context, user.id)
    return this.find(organization, user.id)
  }

  /**
   * A new one-time setup token for an active person of the organization (a lost link, a
   * forgotten password); any earlier one stops working. The person's password stays until
   * the new token is used; for a person who has one, their sessions end now, and the issue is
   * audited as a Security Alert (see `People.reissueSetupToken`).
   */
  async reissueSetupToken(
    context: OperationContext,
    organization: Organization,
    userId: string,
  ): Promise<SetupIssued> {
    const user = await this.#member(organization, userId)
    if (user.status !== 'active') {
      throw new WardError(
        'ERR_INPUT_INVALID',
        'this person is disabled; no setup token is issued',
        {
          details: { field: 'user' },
        },
      )
    }
    const setup = await this.#ward.people.reissueSetupToken(context, user.id)
    return {
      person: await this.#summary(user),
      setupToken: setup.token,
      setupTokenExpiresAt: setup.expiresAt,
    }
  }

  /**
   * Creates the first org admin of an organization, for a platform operator, so a new
   * organization gets its admin without anyone touching the database. Refused with
   * `ERR_ALREADY_INITIALIZED` once the organization has an active org admin: from then on its
   * own admins manage its people, and the operator has no way into them. Asked again for the
   * same login name before that person chose a password, it issues a new setup token instead.
   *
   * The check and the creation are two transactions: two operators asking at the same instant
   * for two different login names could both get one. Each is audited, and either new admin
   * can disable the other; a lock on the organization would close this.
   */
  async createFirstAdmin(
    context: OperationContext,
    organization: Organization,
    loginName: string,
  ): Promise<SetupIssued> {
    const db = this.#ward.store.db
    const existing = await findUserByLoginName(db, foldLoginName(loginName))
    if (
      existing !== undefined &&
      existing.organizationId === organization.id &&
      existing.status === 'active'
    ) {
      const summary = await this.#summary(existing)
      if (!summary.passwordSet && summary.roles.includes('org-admin')) {
        const admins = await this.#activeAdmins(organization)
        if (admins.every((admin) => !admin.passwordSet)) {
          const setup = await this.#ward.people.reissueSetupToken(context, existing.id)
          return { person: summary, setupToken: setup.token, setupTokenExpiresAt: setup.expiresAt }
        }
      }
    }
    if ((await this.#activeAdmins(organization)).length > 0) {
      throw new WardError(
        'ERR_ALREADY_INITIALIZED',
        'this organization has an org admin already; its org admins manage its people',
      )
    }
    return this.create(context, organization, 'platform-operator', {
      loginName,
      roles: ['org-admin'],
    })
  }

  async #activeAdmins(organization: Organization): Promise<PersonSummary[]> {
    const rows = await this.#ward.store.db
      .selectFrom('users')
      .innerJoin('user_role_grants', 'user_role_grants.user_id', 'users.id')
      .select('users.id')
      .where('users.organization_id', '=', organization.id)
      .where('users.status', '=', 'active')
      .where('user_role_grants.role', '=', 'org-admin')
      .execute()
    return Promise.all(rows.map((row) => this.find(organization, row.id)))
  }

  async #member(organization: Organization, userId: string): Promise<User> {
    const user = await findUser(this.#ward.store.db, userId)
    if (user.organizationId !== organization.id) {
      throw new WardError('ERR_NOT_FOUND', 'no such user')
    }
    return user
  }

  async #summary(user: User): Promise<PersonSummary> {
    const db = this.#ward.store.db
    const password = await db
      .selectFrom('user_passwords')
      .select('user_id')
      .where('user_id', '=', user.id)
      .executeTakeFirst()
    const current = await findUser(db, user.id)
    return {
      id: current.id,
      loginName: current.loginName,
      roles: (await listGrants(db, user.id)).map((grant) => grant.role),
      status: current.status,
      passwordSet: password !== undefined,
      patient: current.patientPseudonym,
      createdAt: current.createdAt,
    }
  }
}

function checkGrantable(by: Role, role: Role): void {
  if (!isRole(role)) {
    throw new WardError('ERR_INPUT_INVALID', 'unknown role', { details: { field: 'role' } })
  }
  if (!(grantableRoles[by] ?? []).includes(role)) {
    throw new WardError('ERR_ACCESS_DENIED', `${withArticle(by)} may not grant the role ${role}`, {
      details: { rule: 'deny.role-not-grantable', role },
    })
  }
}

/** A pseudonym named in the body that is not the organization's patient is a bad input. */
function patientNotFoundAsInput(error: unknown): never {
  if (isWardError(error, 'ERR_PATIENT_NOT_FOUND')) {
    throw new WardError('ERR_INPUT_INVALID', 'patient is not a patient of this organization', {
      details: { field: 'patient' },
    })
  }
  throw error
}
