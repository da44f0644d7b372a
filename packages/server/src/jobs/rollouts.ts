import { systemContext } from '../context.js'
import type { Rollouts } from '../rollouts.js'
import type { Job } from './scheduler.js'

/**
 * The job that moves running rollouts on: starts the next stage when a stage's devices have
 * all reported, pauses a rollout whose stage failed past its threshold, and marks devices that
 * reported nothing by their stage's deadline as timed out and pauses it. Which clock it reads is
 * the rollouts' own, so tests drive deadlines with a clock of their choosing.
 */
export function rolloutJob(rollouts: Rollouts, intervalSeconds: number): Job {
  return {
    name: 'rollouts',
    intervalSeconds,
    run: async () => {
      await rollouts.advance(systemContext('rollouts'))
    },
  }
}
