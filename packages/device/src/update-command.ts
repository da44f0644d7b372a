import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

import { WardError } from '@ward/core'

import { DeviceClient } from './client.js'
import { followRollout, simulatedHealthy } from './follow-rollout.js'
import { FirmwareUpdater } from './updates.js'

/** `ward-device update`'s lines in the usage text. */
export const updateCommandUsage = `  ward-device update --dir <dir> --root <1.root.json> --model <name> [--url <url>]
                     [--hardware-revision <r>] [--factory-version 1.0.0] [--follow-rollout]
                     [--fail-health-check | --fail-rate <0-1>]
      check for a signed update with TUF, install it into the inactive slot and switch to it
      if it comes up healthy (--fail-health-check makes it not, to try the rollback).
      With --follow-rollout, install exactly the release Ward's rollout offers this device,
      if any, reporting downloading, installed, failed or rolled-back to the rollout.
      --fail-rate r fails the health check of the share r of a fleet: the devices whose
      serial hashes below r, always the same ones
`

/**
 * Runs `ward-device update`: one update attempt of the device enrolled in `--dir`, its slots
 * and TUF metadata kept in the same directory. Prints the outcome; exit 0 when it installed
 * or was already up to date, 1 when it was refused or rolled back.
 */
export async function updateCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      dir: { type: 'string' },
      root: { type: 'string' },
      model: { type: 'string' },
      'hardware-revision': { type: 'string' },
      'factory-version': { type: 'string' },
      'fail-health-check': { type: 'boolean' },
      'fail-rate': { type: 'string' },
      'follow-rollout': { type: 'boolean' },
      url: { type: 'string' },
    },
    strict: true,
  })
  const directory = needed(values.dir, '--dir <dir>')
  const rootFile = needed(values.root, '--root <1.root.json>')
  const failRateText = values['fail-rate']
  const failRate =
    failRateText === undefined
      ? undefined
      : failRateText.trim() === ''
        ? Number.NaN
        : Number(failRateText)
  if (failRate !== undefined && !(failRate >= 0 && failRate <= 1)) {
    throw new WardError('ERR_INPUT_INVALID', 'update needs --fail-rate from 0 to 1', {
      details: { flag: '--fail-rate' },
    })
  }
  if (failRate !== undefined && values['fail-health-check'] === true) {
    throw new WardError('ERR_INPUT_INVALID', 'give --fail-health-check or --fail-rate, not both', {
      details: { flag: '--fail-rate' },
    })
  }
  const client = await DeviceClient.open(
    directory,
    values.url === undefined ? {} : { url: values.url },
  )
  try {
    const healthy =
      values['fail-health-check'] === true
        ? false
        : failRate === undefined || simulatedHealthy(client.identity.serial, failRate)
    const updater = new FirmwareUpdater({
      client,
      stateDirectory: directory,
      trustedRoot: new Uint8Array(readFileSync(rootFile)),
      model: needed(values.model, '--model <name>'),
      hardwareRevision: values['hardware-revision'] ?? '',
      factoryVersion: values['factory-version'] ?? '1.0.0',
      healthCheck: async () => healthy,
    })
    if (values['follow-rollout'] === true) {
      const followed = await followRollout({ client, updater })
      if (followed.outcome === 'no-update') {
        process.stdout.write(
          `no rollout offers this device an update; running ${followed.version}\n`,
        )
        return 0
      }
      const { offer } = followed
      process.stdout.write(
        `${client.identity.serial}: rollout ${offer.rollout} offered ${offer.target} ` +
          `(${offer.version}): ${followed.outcome}` +
          `${followed.reason === undefined ? '' : ` (${followed.reason})`}; ` +
          `running ${followed.version}\n`,
      )
      return followed.outcome === 'installed' ? 0 : 1
    }
    const outcome = await updater.update()
    if (outcome.outcome === 'up-to-date') {
      process.stdout.write(`up to date at ${outcome.version}\n`)
      return 0
    }
    if (outcome.outcome === 'installed') {
      process.stdout.write(`installed ${outcome.target}; now running ${outcome.version}\n`)
      return 0
    }
    process.stdout.write(`rolled back: ${outcome.reason}; still running ${outcome.version}\n`)
    return 1
  } finally {
    client.close()
  }
}

function needed(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') {
    throw new WardError('ERR_INPUT_INVALID', `update needs ${flag}`, { details: { flag } })
  }
  return value
}
