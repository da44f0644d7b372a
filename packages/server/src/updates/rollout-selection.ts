import { createHash } from 'node:crypto'

/**
 * Where a device falls in a rollout: a number in [0, 1) from the first 48 bits of
 * SHA-256(rollout id ‖ ":" ‖ device id). The same rollout and device always give the same
 * number, different rollouts give independent ones, and nobody can steer a device into an
 * early stage without choosing its id after the rollout's.
 */
export function rolloutPosition(rolloutId: string, deviceId: string): number {
  const digest = createHash('sha256').update(`${rolloutId}:${deviceId}`, 'utf8').digest()
  return digest.readUIntBE(0, 6) / 2 ** 48
}

/**
 * The first stage (index into `stages`) that takes a device at `position`, or undefined when
 * the rollout never reaches it. Stage k takes the devices below `percent`% × `stages[k]`% of
 * the line, so each stage keeps the devices of the ones before it and adds the next slice.
 */
export function stageFor(
  position: number,
  percent: number,
  stages: readonly number[],
): number | undefined {
  const index = stages.findIndex((stage) => position < (percent / 100) * (stage / 100))
  return index < 0 ? undefined : index
}
