import { auditEventTypes, type AuditEventInput } from '../audit/index.js'
import type { OperationContext } from '../context.js'
import { findPatient, type Patient } from '../records/index.js'
import type { Transaction } from '../store/index.js'
import type { Organization } from '../tenancy/index.js'
import type { Ward } from '../ward.js'
import {
  closeBreakGlassReview,
  emergencyAccessFacts,
  listBreakGlassReviews,
  openBreakGlass,
  type BreakGlassGrant,
  type BreakGlassReviewItem,
} from './break-glass.js'
import {
  addCareTeamMember,
  addCareTeamPatient,
  careTeamDetail,
  careTeamFacts,
  createCareTeam,
  listCareTeams,
  removeCareTeamMember,
  removeCareTeamPatient,
  type CareTeam,
  type CareTeamDetail,
} from './care-teams.js'
import { noFacts, type AccessFacts, type Resource } from './policy.js'
import type { Principal } from './principal.js'

/**
 * The access domain's operations: the facts the policy needs, care teams, and break-glass
 * with its review queue. Each change runs in one transaction with its audit event in the
 * organization's log, under the context the policy allowed it in.
 */
export class Access {
  readonly #ward: Ward

  constructor(ward: Ward) {
    this.#ward = ward
  }

  /**
   * What the policy needs to know about `principal` for `resource`: their care teams, whether
   * one of them has the resource's patient, and whether they hold an open emergency grant for
   * that patient. Platform resources and principals outside the resource's organization get
   * no facts.
   */
  async facts(principal: Principal | undefined, resource: Resource): Promise<AccessFacts> {
    if (
      principal === undefined ||
      resource.organizationId === null ||
      principal.organizationId !== resource.organizationId
    ) {
      return noFacts
    }
    const db = this.#ward.store.db
    const { careTeams, careTeamPatients } = await careTeamFacts(
      db,
      resource.organizationId,
      principal.userId,
      resource.patientPseudonym,
    )
    const emergencyAccess =
      resource.patientPseudonym === undefined
        ? new Set<string>()
        : await emergencyAccessFacts(
            db,
            resource.organizationId,
            principal.userId,
            resource.patientPseudonym,
          )
    return { careTeams, careTeamPatients, emergencyAccess }
  }

  /** Creates a care team in the organization. */
  createCareTeam(
    context: OperationContext,
    organization: Organization,
    name: string,
  ): Promise<CareTeam> {
    return this.#act(context, organization, async (tx) => {
      const team = await createCareTeam(tx, { organizationId: organization.id, name })
      return [team, careTeamChange('care-team.create', 'C', team)]
    })
  }

  /** The organization's care teams; with `memberUserId`, only that person's. */
  listCareTeams(organization: Organization, memberUserId?: string): Promise<CareTeam[]> {
    return listCareTeams(this.#ward.store.db, organization.id, { memberUserId })
  }

  /** The team with its members and patients. */
  careTeamDetail(team: CareTeam): Promise<CareTeamDetail> {
    return careTeamDetail(this.#ward.store.db, team)
  }

  /** Puts a person on the team; recorded only when it changed something. */
  addMember(
    context: OperationContext,
    organization: Organization,
    team: CareTeam,
    userId: string,
  ): Promise<boolean> {
    return this.#act(context, organization, async (tx) => {
      const added = await addCareTeamMember(tx, team, userId)
      return [added, added ? careTeamChange('care-team.member-add', 'U', team, { userId }) : null]
    })
  }

  /** Takes a person off the team. */
  removeMember(
    context: OperationContext,
    organization: Organization,
    team: CareTeam,
    userId: string,
  ): Promise<boolean> {
    return this.#act(context, organization, async (tx) => {
      const removed = await removeCareTeamMember(tx, team, userId)
      return [
        removed,
        removed ? careTeamChange('care-team.member-remove', 'U', team, { userId }) : null,
      ]
    })
  }

  /** Puts a patient in the team's care. */
  addPatient(
    context: OperationContext,
    organization: Organization,
    team: CareTeam,
    patient: Patient,
  ): Promise<boolean> {
    return this.#act(context, organization, async (tx) => {
      const added = await addCareTeamPatient(tx, team, patient)
      return [added, added ? careTeamChange('care-team.patient-add', 'U', team, {}, patient) : null]
    })
  }

  /** Ends the team's care of a patient. */
  removePatient(
    context: OperationContext,
    organization: Organization,
    team: CareTeam,
    patient: Patient,
  ): Promise<boolean> {
    return this.#act(context, organization, async (tx) => {
      const removed = await removeCareTeamPatient(tx, team, patient.id)
      return [
        removed,
        removed ? careTeamChange('care-team.patient-remove', 'U', team, {}, patient) : null,
      ]
    })
  }

  /**
   * Opens emergency access for the acting clinician to `patient`, for `durationMinutes` or the
   * configured default, at most the configured maximum. The audit event is a Security Alert
   * marked as emergency access under purpose of use ETREAT, naming the reason by its code
   * only; the stated reason is sealed with the grant and shown only in the review queue.
   */
  openBreakGlass(
    context: OperationContext,
    organization: Organization,
    patient: Patient,
    input: { reasonCode: string; reason: string; durationMinutes?: number },
  ): Promise<BreakGlassGrant> {
    const { breakGlassDefaultMinutes, breakGlassMaxMinutes } = this.#ward.config.access
    return this.#act({ ...context, purposeOfUse: 'ETREAT' }, organization, async (tx) => {
      const grant = await openBreakGlass(tx, this.#ward.keyring, {
        userId: context.actor.id,
        patient,
        reasonCode: input.reasonCode,
        reason: input.reason,
        durationMinutes: input.durationMinutes ?? breakGlassDefaultMinutes,
        maxDurationMinutes: breakGlassMaxMinutes,
      })
      return [
        grant,
        {
          // DICOM files an emergency override under Security Alert (its subtype 110127,
          // Emergency Override Started, is carried here by the operation and purpose ETREAT).
          type: auditEventTypes.securityAlert,
          operation: 'break-glass.open',
          action: 'E',
          entity: [
            {
              type: 'Patient',
              what: patient.id,
              patient: patient.pseudonym,
              detail: {
                emergencyAccess: true,
                grant: grant.id,
                reasonCode: grant.reasonCode,
                expiresAt: grant.expiresAt,
              },
            },
          ],
        },
      ]
    })
  }

  /**
   * The privacy officer's review queue, stated reasons included. Reading it is recorded, since
   * the reasons may say things about patients.
   */
  listReviews(
    context: OperationContext,
    organization: Organization,
    query: { status: 'open' | 'closed'; limit: number },
  ): Promise<BreakGlassReviewItem[]> {
    return this.#act(context, organization, async (tx) => {
      const items = await listBreakGlassReviews(tx, this.#ward.keyring, {
        organizationId: organization.id,
        status: query.status,
        limit: query.limit,
        dataKeyOf: async (patientId) =>
          (await findPatient(tx, organization.id, patientId)).dataKeyId,
      })
      return [
        items,
        {
          type: auditEventTypes.query,
          operation: 'break-glass.review-list',
          action: 'R',
          entity: [
            {
              type: 'break-glass-review-queue',
              what: organization.id,
              detail: { status: query.status, count: items.length },
            },
          ],
        },
      ]
    })
  }

  /** Closes a grant's review with its outcome, ending the grant if it still runs. */
  closeReview(
    context: OperationContext,
    organization: Organization,
    grant: BreakGlassGrant,
    outcome: string,
  ): Promise<BreakGlassGrant> {
    return this.#act(context, organization, async (tx) => {
      const closed = await closeBreakGlassReview(tx, grant, {
        reviewerUserId: context.actor.id,
        outcome,
      })
      return [
        closed,
        {
          type: auditEventTypes.applicationActivity,
          operation: 'break-glass.review-close',
          action: 'U',
          entity: [
            {
              type: 'Patient',
              what: grant.patientId,
              patient: grant.patientPseudonym,
              detail: { grant: grant.id, outcome: closed.reviewOutcome ?? outcome },
            },
          ],
        },
      ]
    })
  }

  /** Runs `work` in one transaction with the audit event it returns (none when null). */
  async #act<T>(
    context: OperationContext,
    organization: Organization,
    work: (tx: Transaction) => Promise<[T, AuditEventInput | null]>,
  ): Promise<T> {
    return this.#ward.store.transaction(async (tx) => {
      const [result, event] = await work(tx)
      if (event !== null) {
        await this.#ward.audit(
          tx,
          organization.slug,
          { ...context, organizationId: organization.id },
          event,
        )
      }
      return result
    })
  }
}

function careTeamChange(
  operation: string,
  action: AuditEventInput['action'],
  team: CareTeam,
  detail: { userId?: string } = {},
  patient?: Patient,
): AuditEventInput {
  return {
    type: auditEventTypes.applicationActivity,
    operation,
    action,
    entity: [
      {
        type: 'CareTeam',
        what: team.id,
        ...(detail.userId === undefined ? {} : { detail: { user: detail.userId } }),
      },
      ...(patient === undefined
        ? []
        : [{ type: 'Patient', what: patient.id, patient: patient.pseudonym }]),
    ],
  }
}
