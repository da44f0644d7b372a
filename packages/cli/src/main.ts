#!/usr/bin/env node
import { randomUUID } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { userInfo } from 'node:os'
import { parseArgs } from 'node:util'

import { WardError, isWardError, parseVerifierKey, toHex } from '@ward/core'
import {
  Ward,
  createLogger,
  initializeWard,
  isInitialized,
  loadConfig,
  settingsReference,
  type OperationContext,
  type WardConfig,
} from '@ward/server'

import { fleetCommand, fleetOptions, fleetUsage } from './fleet-commands.js'
import { updateCommand, updateOptions, updateUsage } from './update-commands.js'
import { rolloutCommand, rolloutOptions, rolloutUsage } from './rollout-commands.js'
import { verifyExport } from './verify.js'

const usage = `ward — Ward's operator command

usage:
  ward init                                     create Ward's home, keys and platform audit log
  ward start                                    initialize when needed, then serve HTTPS
  ward org create <slug> --name "<name>"        create an organization and its audit log
  ward org list                                 list organizations
  ward audit key --log <name>                   print a log's verifier key
  ward audit checkpoint --log <name>            sign and print a checkpoint now
  ward audit export --log <name> --out <dir> [--as-stored]
                                                write the log as tlog tiles: checked and
                                                signed now, or as stored (forensic copy)
  ward audit verify <dir> --key <vkey> [--previous <checkpoint file>]
                                                check an exported log offline
  ward admin create --login <name>              create the first platform operator; prints a
                                                one-time setup token (shown once) for choosing
                                                the password, then MFA enrollment at sign-in
  ward config reference                         print every setting as a Markdown table
${fleetUsage}
${updateUsage}
${rolloutUsage}

Settings come from WARD_* variables or a JSON file named by WARD_CONFIG; see the README.
`

/** Exit codes: 0 success, 1 operation or verification failed, 2 usage error. */
class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [command, subcommand] = argv
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(usage)
    return command === undefined ? 2 : 0
  }

  switch (command) {
    case 'init':
      return init(argv.slice(1))
    case 'start':
    case 'serve':
      return start(argv.slice(1))
    case 'org':
      if (subcommand === 'create') return orgCreate(argv.slice(2))
      if (subcommand === 'list') return orgList(argv.slice(2))
      break
    case 'audit':
      if (subcommand === 'key') return auditKey(argv.slice(2))
      if (subcommand === 'checkpoint') return auditCheckpoint(argv.slice(2))
      if (subcommand === 'export') return auditExport(argv.slice(2))
      if (subcommand === 'verify') return auditVerify(argv.slice(2))
      break
    case 'device-model':
    case 'device':
    case 'patient':
    case 'enrollment-token':
    case 'manufacturer':
    case 'keys': {
      const { values } = parse(argv.slice(2), fleetOptions)
      const lines = await withWard((ward) =>
        fleetCommand(ward, operatorContext(), command, subcommand ?? '', values, required),
      )
      if (lines === undefined) break
      for (const line of lines) console.log(line)
      return 0
    }
    case 'updates': {
      const { values, positionals } = parse(
        argv.slice(2),
        updateOptions,
        subcommand === 'publish' ? 1 : 0,
      )
      const lines = await updateCommand(subcommand ?? '', {
        values,
        positionals,
        context: operatorContext(),
        withWard,
        required,
      })
      if (lines === undefined) break
      for (const line of lines) console.log(line)
      return 0
    }
    case 'rollout': {
      const { values } = parse(argv.slice(2), rolloutOptions)
      const lines = await withWard((ward) =>
        rolloutCommand(ward, operatorContext(), subcommand ?? '', values, required),
      )
      if (lines === undefined) break
      for (const line of lines) console.log(line)
      return 0
    }
    case 'admin':
      if (subcommand === 'create') return adminCreate(argv.slice(2))
      break
    case 'config':
      if (subcommand === 'reference') {
        process.stdout.write(`${settingsReference()}\n`)
        return 0
      }
      break
  }
  throw new UsageError(`unknown command: ${argv.slice(0, 2).join(' ')}`)
}

function operatorContext(): OperationContext {
  return {
    actor: { type: 'operator', id: `cli:${userInfo().username}` },
    requestId: randomUUID(),
    purposeOfUse: 'HSYSADMIN',
    policyRule: 'operator-cli',
  }
}

function config(): WardConfig {
  return loadConfig({ env: process.env })
}

async function init(args: string[]): Promise<number> {
  parse(args, [])
  const settings = config()
  const result = await initializeWard(settings, operatorContext())
  if (result.created.length === 0) {
    throw new WardError(
      'ERR_ALREADY_INITIALIZED',
      `Ward's home ${settings.home} is already initialized`,
    )
  }
  for (const line of result.created) console.log(`created ${line}`)
  return 0
}

async function start(args: string[]): Promise<number> {
  parse(args, [])
  const settings = config()
  const logger = createLogger(settings.log.level)
  if (!isInitialized(settings)) {
    const result = await initializeWard(settings, operatorContext())
    logger.info({ home: settings.home, created: result.created }, 'initialized a new Ward home')
  } else {
    // Fills in anything an interrupted initialization left out; a no-op otherwise.
    await initializeWard(settings, operatorContext())
  }
  const { serveWard } = await import('@ward/server/http')
  const running = await serveWard(settings, logger)
  logger.info(
    {
      health: `${running.url}/health`,
      checkpoint: `${running.url}/audit/platform/checkpoint`,
      operatorTokenFile: `${settings.home}/operator-token`,
      certificateFile: settings.http.certFile,
    },
    'ready',
  )

  await new Promise<void>((resolve) => {
    const stop = () => resolve()
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  await running.close()
  return 0
}

async function withWard<T>(work: (ward: Ward) => Promise<T>): Promise<T> {
  const ward = await Ward.open(config())
  try {
    return await work(ward)
  } finally {
    await ward.close()
  }
}

async function orgCreate(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, ['name'], 1)
  const slug = positionals[0] as string
  if (values.name === undefined) throw new UsageError('org create needs --name "<display name>"')
  const organization = await withWard((ward) =>
    ward.createOrganization(operatorContext(), { slug, name: values.name as string }),
  )
  console.log(
    `created organization ${organization.slug} (${organization.id}) with audit log ${organization.slug}`,
  )
  return 0
}

async function orgList(args: string[]): Promise<number> {
  parse(args, [])
  const organizations = await withWard((ward) => ward.listOrganizations())
  if (organizations.length === 0) console.log('no organizations')
  for (const organization of organizations) {
    console.log(
      `${organization.slug}\t${organization.name}\t${organization.id}\t${organization.createdAt}`,
    )
  }
  return 0
}

/**
 * Creates the first platform operator and prints a one-time setup token rather than asking for
 * a password: the password then never passes through this shell, its history or the server's
 * terminal, the person who will hold the account chooses it themselves over TLS, and a token
 * seen later by someone else is useless once spent or past its validity.
 */
async function adminCreate(args: string[]): Promise<number> {
  const { values } = parse(args, ['login'])
  const login = required(values.login as string | undefined, '--login <name>')
  const settings = config()
  const created = await withWard((ward) =>
    ward.people.createFirstPlatformOperator(operatorContext(), login),
  )
  const url = `https://${settings.http.host}:${settings.http.port}`
  console.log(`platform operator ${created.user.loginName} (${created.user.id})`)
  console.log(`one-time setup token, valid until ${created.setupTokenExpiresAt}; shown only now:`)
  console.log(`  ${created.setupToken}`)
  console.log(
    'choose the password with it; both are read from the terminal, so neither lands in shell ' +
      'history or a command line:',
  )
  console.log(
    `  read -r SETUP_TOKEN && read -rs PASSWORD && export SETUP_TOKEN PASSWORD && ` +
      `jq -n '{setupToken: env.SETUP_TOKEN, password: env.PASSWORD}' | ` +
      `curl --cacert ${settings.http.certFile} -H 'content-type: application/json' ` +
      `--data-binary @- ${url}/auth/setup`,
  )
  console.log('then sign in at /auth/sign-in and enroll MFA (TOTP or a security key) first.')
  return 0
}

async function auditKey(args: string[]): Promise<number> {
  const { values } = parse(args, ['log'])
  const log = required(values.log, '--log <name>')
  console.log(await withWard((ward) => ward.verifierKey(log)))
  return 0
}

async function auditCheckpoint(args: string[]): Promise<number> {
  const { values } = parse(args, ['log'])
  const log = required(values.log, '--log <name>')
  const checkpoint = await withWard((ward) => ward.signCheckpoint(log))
  process.stdout.write(checkpoint.note)
  return 0
}

async function auditExport(args: string[]): Promise<number> {
  const { values } = parse(args, ['log', 'out'], 0, ['as-stored'])
  const log = required(values.log, '--log <name>')
  const out = required(values.out, '--out <dir>')
  const asStored = values['as-stored'] === 'true'
  const result = await withWard((ward) =>
    ward.exportAuditLog(operatorContext(), log, out, { asStored }),
  )
  console.log(
    `exported audit log ${log}${asStored ? ' as stored, unchecked,' : ''}: size ${result.size}, ` +
      `root ${toHex(result.checkpoint.rootHash)}, ${result.tiles} hash tiles, ` +
      `${result.entryBundles} entry bundles to ${out}`,
  )
  return 0
}

async function auditVerify(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, ['key', 'previous'], 1)
  const key = parseVerifierKey(required(values.key, '--key <verifier key>'))
  const previous = values.previous === undefined ? undefined : readPrevious(values.previous)
  const result = verifyExport(positionals[0] as string, key, previous)
  console.log(`verified ${result.origin}: size ${result.size}, root ${toHex(result.rootHash)}`)
  if (previous !== undefined) console.log('consistent with the previous checkpoint')
  return 0
}

/** Parses `--name value` options (all strings) and exactly `positionalCount` arguments. */
function parse(
  args: string[],
  names: readonly string[],
  positionalCount = 0,
  flags: readonly string[] = [],
) {
  const options = Object.fromEntries([
    ...names.map((name) => [name, { type: 'string' as const }]),
    ...flags.map((name) => [name, { type: 'boolean' as const }]),
  ])
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] }
  try {
    parsed = parseArgs({
      args,
      options,
      allowPositionals: positionalCount > 0,
      strict: true,
    }) as typeof parsed
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
  if (parsed.positionals.length !== positionalCount) {
    throw new UsageError(
      `expected ${positionalCount} argument(s), got ${parsed.positionals.length}`,
    )
  }
  const values = Object.fromEntries(
    Object.entries(parsed.values).map(([name, value]) => [name, String(value)]),
  ) as Record<string, string | undefined>
  return { values, positionals: parsed.positionals }
}

function readPrevious(path: string): string {
  try {
    const status = statSync(path)
    if (!status.isFile() || status.size > 1_000_000) throw new Error('not a checkpoint file')
    return readFileSync(path, 'utf8')
  } catch (cause) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `--previous ${path} is not a readable checkpoint file`,
      {
        cause,
      },
    )
  }
}

function required(value: string | undefined, flag: string): string {
  if (typeof value !== 'string' || value === '') throw new UsageError(`missing ${flag}`)
  return value
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`ward: ${error.message}\n\n${usage}`)
      process.exit(2)
    }
    if (isWardError(error)) {
      process.stderr.write(`ward: ${error.code}: ${error.message}\n`)
    } else {
      process.stderr.write(`ward: unexpected failure: ${(error as Error).stack ?? String(error)}\n`)
    }
    process.exit(1)
  },
)
