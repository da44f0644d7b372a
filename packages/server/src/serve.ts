import type { AddressInfo } from 'node:net'

import { configSummary, type WardConfig } from './config/index.js'
import { buildServer } from './http/server.js'
import { startJobs } from './jobs/index.js'
import type { Logger } from './logging/index.js'
import { Ward } from './ward.js'

/** A Ward serving HTTPS, with its scheduled jobs running. */
export interface RunningWard {
  readonly ward: Ward
  /** `https://host:port` the API listens on. */
  readonly url: string
  readonly port: number
  close(): Promise<void>
}

/**
 * Opens an initialized Ward, signs checkpoints for logs that grew while it was down, starts the
 * checkpoint job and listens. Logs the configuration summary (no secrets) and the address.
 */
export async function serveWard(config: WardConfig, logger: Logger): Promise<RunningWard> {
  logger.info({ config: configSummary(config) }, 'starting')
  const ward = await Ward.open(config)
  try {
    await ward.signGrownCheckpoints()
    const app = await buildServer(ward, logger)
    await app.listen({ host: config.http.host, port: config.http.port })
    const address = app.server.address() as AddressInfo
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
    const url = `https://${host}:${address.port}`

    const jobs = startJobs(ward.store, logger, [
      {
        name: 'audit-checkpoints',
        intervalSeconds: config.audit.checkpointIntervalSeconds,
        run: async () => {
          await ward.signGrownCheckpoints()
        },
      },
    ])
    logger.info({ url, store: ward.store.dialect }, 'listening')

    return {
      ward,
      url,
      port: address.port,
      async close() {
        await jobs.stop()
        await app.close()
        await ward.close()
        logger.info('stopped')
      },
    }
  } catch (error) {
    await ward.close()
    throw error
  }
}
