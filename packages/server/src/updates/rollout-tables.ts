/** The rollout tables of the updates domain, as Kysely sees them; see `store/schema.ts`. */
export interface RolloutTables {
  rollouts: RolloutTable
  rollout_devices: RolloutDeviceTable
}

/**
 * One staged rollout of a firmware release. `model_ids` is the JSON list of device models it
 * targets (the release's models, narrowed by the operator), `device_ids` the JSON list of the
 * device group it is limited to, or null; `percent` the share of matching devices it reaches at
 * its last stage; `stages` the JSON list of cumulative percentages of that share, ascending and
 * ending at 100. `failure_threshold_permille` is the failure fraction of a stage, in thousandths,
 * above which it pauses itself. `accepted_failures` counts the failures of the current stage an
 * operator accepted by resuming.
 */
export interface RolloutTable {
  id: string
  organization_id: string
  release_id: string
  release_version: string
  model_ids: string
  device_ids: string | null
  percent: number
  stages: string
  failure_threshold_permille: number
  report_deadline_seconds: number
  state: string
  stage: number
  stage_started_at: string
  stage_deadline_at: string
  accepted_failures: number
  paused_reason: string | null
  created_at: string
  updated_at: string
}

/** A device taken into a rollout at `stage`, and what it last reported. */
export interface RolloutDeviceTable {
  rollout_id: string
  organization_id: string
  device_id: string
  stage: number
  status: string
  reason: string | null
  updated_at: string
}
