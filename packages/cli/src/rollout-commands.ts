import { WardError } from '@ward/core'
import type { OperationContext, Rollout, Ward } from '@ward/server'

/** The rollout commands: `ward rollout …`. */
export const rolloutUsage = `  ward rollout create --org <slug> --release <id> [--models <name,…>] [--devices <serial,…>]
                      [--percent <1-100>] [--stages <1,10,50,100>]
                      [--failure-threshold <0-1>] [--report-deadline <seconds>]
                                                stage a release out to the fleet
  ward rollout list --org <slug>
  ward rollout show --org <slug> --rollout <id>  stages and per-device status counts
  ward rollout devices --org <slug> --rollout <id>
                                                each device: serial, id, stage, status
  ward rollout pause|resume|abort --org <slug> --rollout <id>`

/** The option names rollout commands take. */
export const rolloutOptions = [
  'org',
  'release',
  'models',
  'devices',
  'percent',
  'stages',
  'failure-threshold',
  'report-deadline',
  'rollout',
]

type Values = Record<string, string | undefined>

/** Runs one rollout command; undefined when `subcommand` is not one of them. */
export async function rolloutCommand(
  ward: Ward,
  context: OperationContext,
  subcommand: string,
  values: Values,
  required: (value: string | undefined, flag: string) => string,
): Promise<string[] | undefined> {
  const rollouts = ward.rollouts
  const org = () => required(values['org'], '--org <slug>')
  const id = () => required(values['rollout'], '--rollout <id>')

  switch (subcommand) {
    case 'create': {
      const stages = values['stages']
      const rollout = await rollouts.create(context, org(), {
        releaseId: required(values['release'], '--release <id>'),
        ...list(values, 'models'),
        ...list(values, 'devices'),
        ...(values['percent'] === undefined
          ? {}
          : { percent: number(values['percent'], '--percent') }),
        ...(stages === undefined
          ? {}
          : { stages: stages.split(',').map((stage) => number(stage, '--stages')) }),
        ...(values['failure-threshold'] === undefined
          ? {}
          : { failureThreshold: number(values['failure-threshold'], '--failure-threshold') }),
        ...(values['report-deadline'] === undefined
          ? {}
          : { reportDeadlineSeconds: number(values['report-deadline'], '--report-deadline') }),
      })
      return [`created rollout ${rollout.id}`, describe(rollout)]
    }
    case 'list':
      return (await rollouts.list(org())).map((rollout) => `${rollout.id}\t${describe(rollout)}`)
    case 'show': {
      const summary = await rollouts.summary(org(), id())
      return [
        describe(summary.rollout),
        ...summary.stages.map(
          ({ stage, percent, devices }) =>
            `stage ${stage + 1} (${percent} %): ` +
              Object.entries(devices)
                .filter(([, count]) => count > 0)
                .map(([status, count]) => `${count} ${status}`)
                .join(', ') || 'no devices',
        ),
      ]
    }
    case 'devices': {
      const devices = await rollouts.devices(org(), id())
      const serials = new Map(
        (await ward.fleet.listDevices(org())).map((device) => [device.id, device.serial]),
      )
      // The serial is what an operator knows a device by; the id is what the audit log names.
      return devices.map(
        (device) =>
          `${serials.get(device.deviceId) ?? '-'}\t${device.deviceId}\tstage ${device.stage + 1}\t` +
          `${device.status}\t${device.reason ?? '-'}\t${device.updatedAt}`,
      )
    }
    case 'pause':
      return [describe(await rollouts.pause(context, org(), id()))]
    case 'resume':
      return [describe(await rollouts.resume(context, org(), id()))]
    case 'abort':
      return [describe(await rollouts.abort(context, org(), id()))]
  }
  return undefined
}

function describe(rollout: Rollout): string {
  const state =
    rollout.pausedReason === null ? rollout.state : `${rollout.state} (${rollout.pausedReason})`
  return (
    `${rollout.releaseId} ${rollout.releaseVersion}: ${state}, stage ${rollout.stage + 1} of ` +
    `${rollout.stages.length} (${rollout.stages.join(', ')} % of ${rollout.percent} %), ` +
    `deadline ${rollout.stageDeadlineAt}`
  )
}

function list(values: Values, name: 'models' | 'devices'): Record<string, string[]> {
  const text = values[name]
  if (text === undefined) return {}
  const items = text.split(',').map((item) => item.trim())
  if (items.some((item) => item === '')) {
    throw new WardError('ERR_INPUT_INVALID', `--${name} must be a comma-separated list`, {
      details: { field: name },
    })
  }
  return { [name]: items }
}

function number(text: string, flag: string): number {
  const value = Number(text)
  if (text.trim() === '' || !Number.isFinite(value)) {
    throw new WardError('ERR_INPUT_INVALID', `${flag} must be a number`, {
      details: { field: flag },
    })
  }
  return value
}
