import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

import { WardError } from '@ward/core'

import { DeviceClient } from './client.js'
import { FirmwareUpdater } from './updates.js'

/** `ward-device update`'s lines in the usage text. */
export const updateCommandUsage = `  ward-device update --dir <dir> --root <1.root.json> --model <name>
                     [--hardware-revision <r>] [--factory-version 1.0.0] [--fail-health-check]
      check for a signed update with TUF, install it into the inactive slot and switch to it
      if it comes up healthy (--fail-health-check makes it not, to try the rollback)
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
    },
    strict: true,
  })
  const directory = needed(values.dir, '--dir <dir>')
  const rootFile = needed(values.root, '--root <1.root.json>')
  const client = await DeviceClient.open(directory)
  try {
    const updater = new FirmwareUpdater({
      client,
      stateDirectory: directory,
      trustedRoot: new Uint8Array(readFileSync(rootFile)),
      model: needed(values.model, '--model <name>'),
      hardwareRevision: values['hardware-revision'] ?? '',
      factoryVersion: values['factory-version'] ?? '1.0.0',
      healthCheck: async () => values['fail-health-check'] !== true,
    })
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
