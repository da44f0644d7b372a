import { sql } from 'kysely'

import type { Logger } from '../logging/index.js'
import type { Store } from '../store/index.js'

/** A recurring task Ward runs while it serves. */
export interface Job {
  readonly name: string
  readonly intervalSeconds: number
  run(): Promise<void>
}

/**
 * Runs each job on its interval until stopped. On PostgreSQL a job runs only on the node that
 * wins its advisory lock, so a cluster signs one checkpoint, not one per node. A failing run is
 * logged with its code and retried at the next interval.
 */
export function startJobs(
  store: Store,
  logger: Logger,
  jobs: readonly Job[],
): { stop(): Promise<void> } {
  const timers: NodeJS.Timeout[] = []
  const running = new Set<Promise<void>>()

  for (const job of jobs) {
    let busy = false
    const tick = () => {
      if (busy) return
      busy = true
      const run = exclusive(store, job)
        .catch((error: unknown) => {
          const code = (error as { code?: string }).code ?? 'ERR_INTERNAL'
          logger.error({ job: job.name, code, message: (error as Error).message }, 'job failed')
        })
        .finally(() => {
          busy = false
          running.delete(run)
        })
      running.add(run)
    }
    const timer = setInterval(tick, job.intervalSeconds * 1000)
    timer.unref()
    timers.push(timer)
  }

  return {
    async stop() {
      for (const timer of timers) clearInterval(timer)
      await Promise.all(running)
    },
  }
}

async function exclusive(store: Store, job: Job): Promise<void> {
  if (store.dialect !== 'postgres') return job.run()
  await store.db.connection().execute(async (connection) => {
    const lock = sql`hashtext(${`ward-job:${job.name}`})`
    const result = await sql<{
      locked: boolean
    }>`select pg_try_advisory_lock(${lock}) as locked`.execute(connection)
    if (result.rows[0]?.locked !== true) return
    try {
      await job.run()
    } finally {
      await sql`select pg_advisory_unlock(${lock})`.execute(connection)
    }
  })
}
