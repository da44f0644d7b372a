import { systemContext } from '../context.js'
import type { Job } from '../jobs/index.js'
import type { Ward } from '../ward.js'

/**
 * The scheduled job that keeps every organization's online TUF metadata fresh: it re-signs a
 * timestamp (and a snapshot) once half its lifetime is gone, checking eight times per
 * timestamp lifetime (at least every 30 seconds apart), so devices never meet an expired
 * timestamp while Ward runs. A frozen repository is what a device must refuse; a running Ward
 * must never look like one.
 */
export function updateTimestampsJob(ward: Ward): Job {
  return {
    name: 'update-timestamps',
    intervalSeconds: Math.max(30, Math.floor(ward.config.updates.timestampLifetimeSeconds / 8)),
    run: async () => {
      await ward.updates.refreshOnlineMetadata(systemContext('update-timestamps'))
    },
  }
}
