import { randomUUID } from 'node:crypto'

import { WardError, isWardError, utf8Decode, utf8Encode } from '@ward/core'

import type { Keyring } from '../keys/index.js'
import type { Transaction } from '../store/index.js'

/**
 * Why a clinician opens emergency access, as a code: this, never the stated reason, is what
 * audit events and logs carry.
 */
export const breakGlassReasonCodes = [
  'emergency-treatment',
  'patient-unresponsive',
  'care-team-unavailable',
  'other',
] as const

export type BreakGlassReasonCode = (typeof breakGlassReasonCodes)[number]

/** How a privacy officer closes the review of an emergency grant. */
export const breakGlassReviewOutcomes = ['justified', 'unjustified'] as const

export type BreakGlassReviewOutcome = (typeof breakGlassReviewOutcomes)[number]

/** Length bounds of the stated reason, in characters. */
export const breakGlassReasonLength = { min: 10, max: 1000 } as const

/** The table break-glass reasons are sealed for. */
export const breakGlassTable = 'break_glass_grants'

/** An emergency grant: one clinician, one patient, a time box, and where its review stands. */
export interface BreakGlassGrant {
  readonly id: string
  readonly organizationId: string
  readonly userId: string
  readonly patientId: string
  readonly patientPseudonym: string
  readonly reasonCode: BreakGlassReasonCode
  readonly openedAt: string
  readonly expiresAt: string
  readonly reviewStatus: 'open' | 'closed'
  readonly reviewOutcome: BreakGlassReviewOutcome | null
  readonly reviewedBy: string | null
  readonly reviewedAt: string | null
}

/** An item of the privacy officer's review queue: the grant and its stated reason, opened. */
export interface BreakGlassReviewItem extends BreakGlassGrant {
  /** The stated reason; null once the patient's data key is destroyed. */
  readonly reason: string | null
}

/** The patient a grant is for, as the records domain knows them. */
export interface GrantPatient {
  readonly id: string
  readonly organizationId: string
  readonly pseudonym: string
  readonly dataKeyId: string
}

/** Emergency accesses one person may have running at once. */
export const maxRunningGrantsPerPerson = 5

/**
 * Opens emergency access for `userId` to `patient` for `durationMinutes`, stating `reason`.
 * The reason is sealed under the patient's own data key, bound to this table and the grant's
 * id, so it is readable only through the review queue and is shredded with the patient's
 * records. Throws `ERR_INPUT_INVALID` naming the field for a bad code, reason or duration.
 */
export async function openBreakGlass(
  tx: Transaction,
  keyring: Keyring,
  input: {
    readonly userId: string
    readonly patient: GrantPatient
    readonly reasonCode: string
    readonly reason: string
    readonly durationMinutes: number
    readonly maxDurationMinutes: number
  },
  now: Date = new Date(),
): Promise<BreakGlassGrant> {
  if (!(breakGlassReasonCodes as readonly string[]).includes(input.reasonCode)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `reasonCode must be one of ${breakGlassReasonCodes.join(', ')}`,
      { details: { field: 'reasonCode' } },
    )
  }
  const reason = typeof input.reason === 'string' ? input.reason.trim() : ''
  if (reason.length < breakGlassReasonLength.min || reason.length > breakGlassReasonLength.max) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `reason must be ${breakGlassReasonLength.min}–${breakGlassReasonLength.max} characters`,
      { details: { field: 'reason' } },
    )
  }
  const minutes = input.durationMinutes
  if (!Number.isInteger(minutes) || minutes < 1 || minutes > input.maxDurationMinutes) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `durationMinutes must be a whole number from 1 to ${input.maxDurationMinutes}`,
      { details: { field: 'durationMinutes', limit: input.maxDurationMinutes } },
    )
  }

  const { patient } = input
  // Emergency access is for the emergency at hand: one running grant per patient, and only a
  // few at once per person, so a clinician cannot sweep through the organization's patients.
  const running = await tx
    .selectFrom('break_glass_grants')
    .select(['patient_id'])
    .where('organization_id', '=', patient.organizationId)
    .where('user_id', '=', input.userId)
    .where('expires_at', '>', now.toISOString())
    .execute()
  if (running.some((row) => row.patient_id === patient.id)) {
    throw new WardError(
      'ERR_LIMIT_REACHED',
      'emergency access to this patient is already open; it ends at its time box',
      { details: { field: 'patient' } },
    )
  }
  if (running.length >= maxRunningGrantsPerPerson) {
    throw new WardError(
      'ERR_LIMIT_REACHED',
      `at most ${maxRunningGrantsPerPerson} emergency accesses may run at once for one person`,
      { details: { limit: maxRunningGrantsPerPerson } },
    )
  }
  const dataKey = await keyring.dataKey(tx, {
    organizationId: patient.organizationId,
    dataKeyId: patient.dataKeyId,
  })
  const grant: BreakGlassGrant = {
    id: randomUUID(),
    organizationId: patient.organizationId,
    userId: input.userId,
    patientId: patient.id,
    patientPseudonym: patient.pseudonym,
    reasonCode: input.reasonCode as BreakGlassReasonCode,
    openedAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + minutes * 60_000).toISOString(),
    reviewStatus: 'open',
    reviewOutcome: null,
    reviewedBy: null,
    reviewedAt: null,
  }
  const sealed = dataKey.seal(
    { organizationId: grant.organizationId, table: breakGlassTable, recordId: grant.id },
    utf8Encode(reason),
  )
  await tx
    .insertInto('break_glass_grants')
    .values({
      id: grant.id,
      organization_id: grant.organizationId,
      user_id: grant.userId,
      patient_id: grant.patientId,
      patient_pseudonym: grant.patientPseudonym,
      reason_code: grant.reasonCode,
      sealed_reason: sealed,
      opened_at: grant.openedAt,
      expires_at: grant.expiresAt,
      review_status: grant.reviewStatus,
      review_outcome: null,
      reviewed_by: null,
      reviewed_at: null,
    })
    .execute()
  return grant
}

/**
 * Pseudonyms of the patients `userId` holds an unexpired emergency grant for, among
 * `patientPseudonym` (the one the request is about). Empty when there is none.
 */
export async function emergencyAccessFacts(
  tx: Transaction,
  organizationId: string,
  userId: string,
  patientPseudonym: string,
  now: Date = new Date(),
): Promise<Set<string>> {
  const row = await tx
    .selectFrom('break_glass_grants')
    .select('id')
    .where('organization_id', '=', organizationId)
    .where('user_id', '=', userId)
    .where('patient_pseudonym', '=', patientPseudonym)
    .where('expires_at', '>', now.toISOString())
    .executeTakeFirst()
  return new Set(row === undefined ? [] : [patientPseudonym])
}

/**
 * The grant of `organizationId` with id `grantId`; `ERR_NOT_FOUND` otherwise, the same for
 * another organization's grant as for an id never used.
 */
export async function findBreakGlassGrant(
  tx: Transaction,
  organizationId: string,
  grantId: string,
): Promise<BreakGlassGrant> {
  const row = await tx
    .selectFrom('break_glass_grants')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('id', '=', grantId)
    .executeTakeFirst()
  if (row === undefined) {
    throw new WardError('ERR_NOT_FOUND', 'no such break-glass grant in this organization')
  }
  return toGrant(row)
}

/**
 * The review queue: the organization's grants whose review is `status`, oldest first, at most
 * `limit`, each with its stated reason opened under the patient's data key. The data key of
 * each grant's patient is given by `dataKeyOf`, which the caller answers from the records
 * domain.
 */
export async function listBreakGlassReviews(
  tx: Transaction,
  keyring: Keyring,
  query: {
    readonly organizationId: string
    readonly status: 'open' | 'closed'
    readonly limit: number
    readonly dataKeyOf: (patientId: string) => Promise<string>
  },
): Promise<BreakGlassReviewItem[]> {
  const rows = await tx
    .selectFrom('break_glass_grants')
    .selectAll()
    .where('organization_id', '=', query.organizationId)
    .where('review_status', '=', query.status)
    .orderBy('opened_at')
    .orderBy('id')
    .limit(query.limit)
    .execute()

  const items: BreakGlassReviewItem[] = []
  for (const row of rows) {
    let reason: string | null
    try {
      const dataKey = await keyring.dataKey(tx, {
        organizationId: row.organization_id,
        dataKeyId: await query.dataKeyOf(row.patient_id),
      })
      reason = utf8Decode(
        dataKey.open(
          { organizationId: row.organization_id, table: breakGlassTable, recordId: row.id },
          row.sealed_reason,
        ),
      )
    } catch (error) {
      if (!isWardError(error, 'ERR_DATA_KEY_DESTROYED')) throw error
      reason = null
    }
    items.push({ ...toGrant(row), reason })
  }
  return items
}

/**
 * Closes the review of `grant` with `outcome`, by `reviewerUserId`; a grant still running is
 * ended at the same moment. `ERR_REVIEW_CLOSED` when it was closed before.
 */
export async function closeBreakGlassReview(
  tx: Transaction,
  grant: BreakGlassGrant,
  review: { readonly reviewerUserId: string; readonly outcome: string },
  now: Date = new Date(),
): Promise<BreakGlassGrant> {
  if (!(breakGlassReviewOutcomes as readonly string[]).includes(review.outcome)) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `outcome must be one of ${breakGlassReviewOutcomes.join(', ')}`,
      { details: { field: 'outcome' } },
    )
  }
  if (review.reviewerUserId === grant.userId) {
    throw new WardError(
      'ERR_ACCESS_DENIED',
      'an emergency access is reviewed by someone other than the person who opened it',
      { details: { rule: 'deny.own-review' } },
    )
  }
  const closedAt = now.toISOString()
  const expiresAt = grant.expiresAt < closedAt ? grant.expiresAt : closedAt
  const result = await tx
    .updateTable('break_glass_grants')
    .set({
      review_status: 'closed',
      review_outcome: review.outcome,
      reviewed_by: review.reviewerUserId,
      reviewed_at: closedAt,
      expires_at: expiresAt,
    })
    .where('organization_id', '=', grant.organizationId)
    .where('id', '=', grant.id)
    .where('review_status', '=', 'open')
    .executeTakeFirst()
  if (Number(result.numUpdatedRows) === 0) {
    throw new WardError('ERR_REVIEW_CLOSED', 'this break-glass review is already closed')
  }
  return {
    ...grant,
    expiresAt,
    reviewStatus: 'closed',
    reviewOutcome: review.outcome as BreakGlassReviewOutcome,
    reviewedBy: review.reviewerUserId,
    reviewedAt: closedAt,
  }
}

function toGrant(row: {
  id: string
  organization_id: string
  user_id: string
  patient_id: string
  patient_pseudonym: string
  reason_code: string
  opened_at: string
  expires_at: string
  review_status: string
  review_outcome: string | null
  reviewed_by: string | null
  reviewed_at: string | null
}): BreakGlassGrant {
  return {
    id: row.id,
    organizationId: row.organization_id,
    userId: row.user_id,
    patientId: row.patient_id,
    patientPseudonym: row.patient_pseudonym,
    reasonCode: row.reason_code as BreakGlassReasonCode,
    openedAt: row.opened_at,
    expiresAt: row.expires_at,
    reviewStatus: row.review_status === 'closed' ? 'closed' : 'open',
    reviewOutcome: row.review_outcome as BreakGlassReviewOutcome | null,
    reviewedBy: row.reviewed_by,
    reviewedAt: row.reviewed_at,
  }
}
