/** The access domain's tables, as Kysely sees them; see `store/schema.ts` for conventions. */
export interface AccessTables {
  care_teams: CareTeamTable
  care_team_members: CareTeamMemberTable
  care_team_patients: CareTeamPatientTable
  break_glass_grants: BreakGlassGrantTable
}

/** access: a care team of one organization. */
export interface CareTeamTable {
  id: string
  organization_id: string
  name: string
  created_at: string
}

/**
 * access: a person on a care team. `user_id` is the account id that authentication gives the
 * principal; it is kept as text and not tied to the accounts table by a foreign key, so that
 * the two stay separate domains.
 */
export interface CareTeamMemberTable {
  care_team_id: string
  organization_id: string
  user_id: string
  added_at: string
}

/**
 * access: a patient a care team looks after. `patient_pseudonym` repeats the patient's
 * pseudonym so that the policy's facts are found without reading the records domain's tables;
 * `(organization_id, patient_id)` is a foreign key to the patient.
 */
export interface CareTeamPatientTable {
  care_team_id: string
  organization_id: string
  patient_id: string
  patient_pseudonym: string
  added_at: string
}

/**
 * access: one emergency ("break-glass") grant and its review. The stated reason is sealed under
 * the patient's data key, bound to this table and the grant's id; only its code is in clear.
 */
export interface BreakGlassGrantTable {
  id: string
  organization_id: string
  user_id: string
  patient_id: string
  patient_pseudonym: string
  reason_code: string
  sealed_reason: Uint8Array
  opened_at: string
  expires_at: string
  /** `open` until a privacy officer closes the review. */
  review_status: string
  review_outcome: string | null
  reviewed_by: string | null
  reviewed_at: string | null
}
