import type { AddressInfo } from 'node:net'

import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

import { WardError } from '@ward/core'

import { configSummary, type WardConfig } from './config/index.js'
import { buildServer, type ServerOptions } from './http/server.js'
import { startDeviceEndpoint, type DeviceEndpoint } from './ingest/index.js'
import { rolloutJob, startJobs } from './jobs/index.js'
import type { Logger } from './logging/index.js'
import { updateTimestampsJob } from './updates/index.js'
import { Ward } from './ward.js'

/** A Ward serving its HTTPS API and its device endpoint, with its scheduled jobs running. */
export interface RunningWard {
  readonly ward: Ward
  /** `https://host:port` the API listens on. */
  readonly url: string
  readonly port: number
  /** `https://host:port` the mutual-TLS device endpoint listens on. */
  readonly deviceUrl: string
  readonly devicePort: number
  /** The device endpoint itself, to refresh an organization's trust on demand. */
  readonly devices: DeviceEndpoint
  close(): Promise<void>
}

/**
 * Opens an initialized Ward, signs checkpoints for logs that grew while it was down, starts the
 * checkpoint job and listens: the API first, then the device endpoint. Logs the configuration
 * summary (no secrets) and both addresses. Closing stops the device endpoint before the API.
 */
export async function serveWard(
  config: WardConfig,
  logger: Logger,
  options: ServerOptions = {},
): Promise<RunningWard> {
  logger.info({ config: configSummary(config) }, 'starting')
  checkProductionReadiness(config)
  if (config.auth.mfa === 'off') {
    logger.warn({ setting: 'auth.mfa' }, 'MFA is off for privileged roles; never do this with ePHI')
  }
  const ward = await Ward.open(config)
  try {
    await ward.signGrownCheckpoints()
    const app = await buildServer(ward, logger, options)
    try {
      await app.listen({ host: config.http.host, port: config.http.port })
    } catch (cause) {
      if ((cause as { code?: string }).code !== 'EADDRINUSE') throw cause
      throw new WardError(
        'ERR_CONFIG_INVALID',
        `${config.http.host}:${config.http.port} is already in use; set WARD_HTTP_PORT to a free port`,
        { cause, details: { setting: 'http.port' } },
      )
    }
    const address = app.server.address() as AddressInfo
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
    const url = `https://${host}:${address.port}`

    let devices: DeviceEndpoint
    try {
      devices = await startDeviceEndpoint(ward, logger)
    } catch (error) {
      await app.close()
      throw error
    }
    warnUnlessDeviceNamesCovered(config, logger)

    const jobs = startJobs(ward.store, logger, [
      {
        name: 'audit-checkpoints',
        intervalSeconds: config.audit.checkpointIntervalSeconds,
        run: async () => {
          await ward.signGrownCheckpoints()
        },
      },
      updateTimestampsJob(ward),
      rolloutJob(ward.rollouts, config.rollouts.checkIntervalSeconds),
      {
        name: 'access-cleanup',
        intervalSeconds: 3600,
        run: async () => {
          await ward.people.purgeExpired()
        },
      },
    ])
    logger.info({ url, deviceUrl: devices.url, store: ward.store.dialect }, 'listening')

    return {
      ward,
      url,
      port: address.port,
      deviceUrl: devices.url,
      devicePort: devices.port,
      devices,
      async close() {
        await jobs.stop()
        await devices.close()
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

/**
 * In production Ward refuses settings that are fine for a pilot on one laptop but wrong for
 * ePHI: the self-signed certificate `ward init` makes (clients cannot tell it from an
 * impostor's), a host name that names no machine (it becomes every log's origin), and MFA
 * switched off for privileged roles.
 */
export function checkProductionReadiness(config: WardConfig): void {
  if (config.environment !== 'production') return
  if (config.auth.mfa !== 'required') {
    throw new WardError(
      'ERR_CONFIG_INVALID',
      'production requires MFA for every privileged role: remove WARD_AUTH_MFA or set it to required',
      { details: { setting: 'auth.mfa' } },
    )
  }
  if (config.http.certFile === join(config.home, 'tls', 'server.crt')) {
    throw new WardError(
      'ERR_CONFIG_INVALID',
      'production needs a certificate from your own CA: set WARD_HTTP_CERT_FILE and WARD_HTTP_KEY_FILE',
      { details: { setting: 'http.certFile' } },
    )
  }
  if (config.hostName === 'localhost' || !config.hostName.includes('.')) {
    throw new WardError(
      'ERR_CONFIG_INVALID',
      `production needs a fully qualified WARD_HOST_NAME; ${config.hostName} is not one`,
      { details: { setting: 'hostName' } },
    )
  }
  const certificate = new X509Certificate(readFileSync(config.http.certFile))
  if (certificate.checkHost(config.hostName) === undefined) {
    throw new WardError(
      'ERR_CONFIG_INVALID',
      `the API certificate ${config.http.certFile} does not name WARD_HOST_NAME ${config.hostName}`,
      { details: { setting: 'http.certFile' } },
    )
  }
}

/**
 * Devices pick their organization by TLS server name, `<slug>.<WARD_HOST_NAME>`, and check the
 * API certificate against `WARD_HOST_NAME` itself; a certificate that does not name it lets no
 * device connect, which is worth saying at start-up rather than in every device's log.
 */
function warnUnlessDeviceNamesCovered(config: WardConfig, logger: Logger): void {
  const certificate = new X509Certificate(readFileSync(config.http.certFile))
  if (certificate.checkHost(config.hostName) === undefined) {
    logger.warn(
      { setting: 'http.certFile', expected: config.hostName },
      'the API certificate does not name WARD_HOST_NAME, so devices cannot verify Ward',
    )
  }
}
