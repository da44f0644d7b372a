/**
 * Ward's lifecycle walkthrough, on the demo fleet `npm run demo` made in `./.ward-demo` (or
 * `WARD_HOME`): signs two firmware releases offline, publishes them to the demo organization's
 * TUF repository, rolls the first out to the pulse oximeters in stages (it completes), rolls the
 * second out while 30 % of the devices fail their health check (it halts itself, and the failing
 * devices are back on their previous version), then wipes one device and decommissions another.
 *
 * Every step is a `ward` or `ward-device` command, printed before it runs, as the README's
 * "Walkthrough: a release from signing to the fleet" shows them. Ward itself runs in this
 * process on free ports, as in the demo; the devices are given its device endpoint with
 * `--url`. Run it again for the next two releases.
 */
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { promisify } from 'node:util'

import { compareSemanticVersions } from '@ward/core'
import { createLogger, loadConfig, type Rollout, type Ward } from '@ward/server'
import { serveWard } from '@ward/server/http'

const run = promisify(execFile)
const slug = 'demo-clinic'
const model = 'Pulse oximeter'
const failRate = '0.3'
const repository = resolve(new URL('..', import.meta.url).pathname)
const wardEntry = join(repository, 'packages/cli/dist/main.js')
const deviceEntry = join(repository, 'packages/device/dist/main.js')

process.env['WARD_HOME'] ??= './.ward-demo'
process.env['WARD_HTTP_PORT'] ??= '0'
process.env['WARD_DEVICE_PORT'] ??= '0'
process.env['WARD_LOG_LEVEL'] ??= 'warn'
// Stages move on within a second of their last report, not the default half minute.
process.env['WARD_ROLLOUT_CHECK_INTERVAL_SECONDS'] ??= '1'

const say = (line = '') => process.stdout.write(`${line}\n`)
const step = (title: string) => say(`\n== ${title}`)
const shown = (path: string) => relative(process.cwd(), path) || '.'
const quote = (arg: string) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `"${arg}"`)

/** Runs `ward <args>` (the operator command) and prints the command and what it printed. */
async function ward(args: string[], options: { quiet?: boolean } = {}): Promise<string> {
  say(`$ ward ${args.map(quote).join(' ')}`)
  const { stdout } = await run(process.execPath, [wardEntry, ...args], {
    env: process.env,
    maxBuffer: 16 * 1024 * 1024,
  }).catch((error: { stderr?: string; message: string }) => {
    throw new Error(`ward ${args.join(' ')} failed: ${error.stderr ?? error.message}`)
  })
  if (options.quiet !== true) for (const line of stdout.trimEnd().split('\n')) say(`  ${line}`)
  return stdout
}

/** Runs `ward-device <args>`; resolves with its exit code and output. */
async function device(
  args: string[],
  options: { print?: boolean } = {},
): Promise<{ code: number; output: string }> {
  if (options.print !== false) say(`$ ward-device ${args.map(quote).join(' ')}`)
  try {
    const { stdout } = await run(process.execPath, [deviceEntry, ...args], { env: process.env })
    return { code: 0, output: stdout.trim() }
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string }
    return {
      code: typeof failed.code === 'number' ? failed.code : 1,
      output: `${failed.stdout ?? ''}${failed.stderr ?? ''}`.trim(),
    }
  }
}

/** The next two minor versions after the newest published release of the model. */
async function nextVersions(wardInstance: Ward): Promise<[string, string]> {
  const releases = (await wardInstance.updates.listReleases(slug)).filter((release) =>
    release.models.includes(model),
  )
  const newest = releases
    .map((release) => release.version)
    .sort(compareSemanticVersions)
    .at(-1)
  const [major, minor] = (newest ?? '1.0.0').split('.').map(Number) as [number, number]
  return [`${major}.${minor + 1}.0`, `${major}.${minor + 2}.0`]
}

async function main() {
  const config = loadConfig({ env: process.env })
  const deviceHome = join(config.home, 'devices')
  if (!existsSync(join(config.home, 'master.key')) || !existsSync(deviceHome)) {
    throw new Error(`${config.home} holds no demo fleet: run \`npm run demo\` first`)
  }
  say(`Ward lifecycle walkthrough — home ${config.home}, organization ${slug}`)
  say(`ward is \`npm run -s ward --\` with WARD_HOME=${shown(config.home)};`)
  say('ward-device is `node packages/device/dist/main.js`, the device agent.')

  const running = await serveWard(config, createLogger(config.log.level))
  const { ward: wardInstance } = running
  try {
    say(`Ward is serving ${running.url}, its device endpoint ${running.deviceUrl}`)
    const organizations = await wardInstance.listOrganizations()
    if (!organizations.some((organization) => organization.slug === slug)) {
      throw new Error(`${config.home} has no organization ${slug}: run \`npm run demo\` first`)
    }
    const work = join(config.home, 'lifecycle')
    const keys = join(work, 'keys')
    const repo = join(work, 'repo')
    const images = join(work, 'images')
    mkdirSync(images, { recursive: true, mode: 0o700 })

    step('1. Sign the repository root and two releases offline')
    say('(on the offline machine: the root and targets keys never reach Ward)')
    const onlineKeys = join(work, 'online-keys.json')
    await ward(['updates', 'online-keys', '--org', slug, '--out', shown(onlineKeys)])
    if (!existsSync(join(keys, 'root-1.key'))) {
      await ward(['updates', 'keygen', '--out', shown(keys), '--name', 'root-1'])
      await ward(['updates', 'keygen', '--out', shown(keys), '--name', 'targets-1'])
    }
    const root = join(repo, '1.root.json')
    if (!existsSync(root)) {
      await ward([
        'updates',
        'sign-root',
        '--repo',
        shown(repo),
        '--version',
        '1',
        '--root-keys',
        shown(join(keys, 'root-1.pub.json')),
        '--root-threshold',
        '1',
        '--targets-keys',
        shown(join(keys, 'targets-1.pub.json')),
        '--online-keys',
        shown(onlineKeys),
        '--sign-with',
        shown(join(keys, 'root-1.key')),
      ])
    }
    const [good, bad] = await nextVersions(wardInstance)
    for (const [version, notes] of [
      [good, 'Faster alarms'],
      [bad, 'New sensor driver'],
    ] as const) {
      const image = join(images, `oximeter-${version}.bin`)
      writeFileSync(image, Buffer.alloc(64 * 1024, `demo oximeter firmware ${version}\n`))
      await ward([
        'updates',
        'sign-release',
        '--repo',
        shown(repo),
        '--image',
        shown(image),
        '--name',
        `oximeter-${version}.bin`,
        '--version',
        version,
        '--min-version',
        '1.0.0',
        '--models',
        model,
        '--notes',
        notes,
        '--sign-with',
        shown(join(keys, 'targets-1.key')),
      ])
    }

    step('2. Publish what was signed to the demo organization')
    await ward(['updates', 'publish', shown(repo), '--org', slug])
    await ward(['updates', 'releases', '--org', slug])
    const releases = await wardInstance.updates.listReleases(slug)
    const releaseOf = (version: string) => {
      const found = releases.find((release) => release.version === version)
      if (found === undefined) throw new Error(`release ${version} was not published`)
      return found.id
    }

    // Earlier runs' rollouts are finished or aborted; one left open would block a new one.
    for (const open of await wardInstance.rollouts.list(slug)) {
      if (open.state === 'running' || open.state === 'paused') {
        await ward(['rollout', 'abort', '--org', slug, '--rollout', open.id])
      }
    }

    const devices = (await wardInstance.fleet.listDevices(slug)).filter(
      (entry) => entry.status === 'active' && existsSync(join(deviceHome, entry.serial)),
    )
    const models = await wardInstance.fleet.listDeviceModels(slug)
    const oximeterModel = models.find((entry) => entry.name === model)
    const oximeters = devices.filter((entry) => entry.modelId === oximeterModel?.id)
    const deviceArgs = (serial: string, extra: string[]) => [
      'update',
      '--follow-rollout',
      '--dir',
      shown(join(deviceHome, serial)),
      '--root',
      shown(root),
      '--model',
      model,
      '--url',
      running.deviceUrl,
      ...extra,
    ]

    /** Lets every oximeter follow the rollout, round after round, until it stops running. */
    async function follow(rollout: Rollout, extra: string[]): Promise<Rollout> {
      const first = oximeters[0]
      if (first === undefined) throw new Error('the demo fleet has no active pulse oximeter left')
      say(`each of the ${oximeters.length} pulse oximeters runs, for instance:`)
      say(`$ ward-device ${deviceArgs(first.serial, extra).map(quote).join(' ')}`)
      let current = rollout
      for (let round = 1; round <= 12 && current.state === 'running'; round++) {
        const stage = current.stage
        say(
          `-- every oximeter asks for its update; stage ${stage + 1} of ${current.stages.length}` +
            ` (${current.stages[stage]} %) is under way`,
        )
        for (const oximeter of oximeters) {
          const answer = await device(deviceArgs(oximeter.serial, extra), { print: false })
          if (!answer.output.startsWith('no rollout')) say(`  ${answer.output}`)
        }
        // The rollout job starts the next stage once every device of this one reported.
        const deadline = Date.now() + 5000
        do {
          await new Promise((done) => setTimeout(done, 250))
          current = (await wardInstance.rollouts.summary(slug, current.id)).rollout
        } while (current.state === 'running' && current.stage === stage && Date.now() < deadline)
        await ward(['rollout', 'show', '--org', slug, '--rollout', current.id])
      }
      return current
    }

    step(`3. Roll ${good} out to the pulse oximeters in stages of 10, 50 and 100 %`)
    const created = await ward([
      'rollout',
      'create',
      '--org',
      slug,
      '--release',
      releaseOf(good),
      '--stages',
      '10,50,100',
      '--failure-threshold',
      '0.1',
      '--report-deadline',
      '3600',
    ])
    const firstId = /created rollout (\S+)/.exec(created)?.[1] ?? ''
    const healthy = await follow((await wardInstance.rollouts.summary(slug, firstId)).rollout, [])
    say(`rollout of ${good}: ${healthy.state}`)

    step(`4. Roll ${bad} out the same way, while 30 % of the fleet fails its health check`)
    say(`(--fail-rate ${failRate}: the simulated devices whose serial hashes below 0.3 fail)`)
    const createdBad = await ward([
      'rollout',
      'create',
      '--org',
      slug,
      '--release',
      releaseOf(bad),
      '--stages',
      '10,50,100',
      '--failure-threshold',
      '0.1',
      '--report-deadline',
      '3600',
    ])
    const secondId = /created rollout (\S+)/.exec(createdBad)?.[1] ?? ''
    const halted = await follow((await wardInstance.rollouts.summary(slug, secondId)).rollout, [
      '--fail-rate',
      failRate,
    ])
    say(
      `rollout of ${bad}: ${halted.state}${halted.pausedReason === null ? '' : ` (${halted.pausedReason})`}` +
        ` at stage ${halted.stage + 1}: it offers nothing more until an operator resumes or aborts it`,
    )
    const statuses = await wardInstance.rollouts.devices(slug, secondId)
    const rolledBack = statuses.find((entry) => entry.status === 'rolled-back')
    const rolledBackDevice = oximeters.find((entry) => entry.id === rolledBack?.deviceId)
    if (rolledBackDevice !== undefined) {
      const slotsFile = join(deviceHome, rolledBackDevice.serial, 'updates', 'slots.json')
      say(`${rolledBackDevice.serial} rolled back; its A/B slots (${shown(slotsFile)}):`)
      const slots = JSON.parse(readFileSync(slotsFile, 'utf8')) as {
        active: 'a' | 'b'
        slots: Record<'a' | 'b', { version: string } | null>
      }
      say(`  active slot ${slots.active} runs ${slots.slots[slots.active]?.version ?? '?'}`)
    }
    await ward(['rollout', 'abort', '--org', slug, '--rollout', secondId])

    step('5. Wipe one device, decommission another')
    const others = devices.filter((entry) => entry.modelId !== oximeterModel?.id)
    const wiped = others[0]
    const retired = others[1]
    if (wiped === undefined || retired === undefined) {
      say('no active device left to wipe and decommission: run `npm run demo` in a fresh home')
    } else {
      await ward(['device', 'wipe', '--org', slug, '--serial', wiped.serial])
      const sent = await device([
        'send',
        '--dir',
        shown(join(deviceHome, wiped.serial)),
        '--url',
        running.deviceUrl,
        '--timeout',
        '30',
      ])
      for (const line of sent.output.split('\n')) say(`  ${line}`)
      await ward(['device', 'wipe-certificates', '--org', slug, '--serial', wiped.serial])
      await ward(['device', 'decommission', '--org', slug, '--serial', retired.serial])
      const listing = await ward(['device', 'list', '--org', slug], { quiet: true })
      for (const line of listing.split('\n')) {
        if (line.startsWith(`${wiped.serial}\t`) || line.startsWith(`${retired.serial}\t`)) {
          say(`  ${line}`)
        }
      }
    }

    say('\nWhere to look next:')
    say(`  WARD_HOME=${shown(config.home)} npm run -s ward -- rollout list --org ${slug}`)
    say(
      `  WARD_HOME=${shown(config.home)} npm run -s ward -- audit export --log ${slug} --out <dir>`,
    )
    say(`  the offline keys and signed repository: ${shown(work)}`)
  } finally {
    await running.close()
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`demo:lifecycle failed: ${(error as Error).message}\n`)
  process.exit(1)
})
