import { existsSync, readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { isAbsolute, join, resolve } from 'node:path'

import { WardError } from '@ward/core'

/** How a setting is read from text (an environment variable) and checked. */
type SettingKind =
  | { kind: 'string'; pattern?: RegExp; allowed: string }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'integer'; min: number; max: number }

/** One configuration setting: its dotted name, its `WARD_*` variable, default and rule. */
interface Setting {
  readonly name: string
  readonly env: string
  readonly description: string
  readonly secret?: boolean
  readonly rule: SettingKind
  readonly defaultValue: (partial: Record<string, unknown>) => string | number | undefined
  /** How the reference describes the default, when it depends on the machine. */
  readonly defaultText?: string
}

const hostNamePattern =
  /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/

/**
 * Every setting Ward has, in one table. The README's configuration reference is this table;
 * `settingsReference()` prints it so the two cannot drift.
 */
export const settings: readonly Setting[] = [
  {
    name: 'home',
    env: 'WARD_HOME',
    description: "Ward's home: master key, TLS material, API token, embedded database",
    rule: { kind: 'string', allowed: 'a directory path' },
    defaultValue: () => './.ward',
  },
  {
    name: 'environment',
    env: 'WARD_ENVIRONMENT',
    description: 'production refuses the self-signed certificate and a bare host name',
    rule: { kind: 'enum', values: ['development', 'production'] },
    defaultValue: () => 'development',
  },
  {
    name: 'hostName',
    env: 'WARD_HOST_NAME',
    description: 'DNS name of this Ward; first part of every audit log origin line',
    rule: { kind: 'string', pattern: hostNamePattern, allowed: 'a lowercase DNS name' },
    defaultValue: () => defaultHostName(),
    defaultText: "this machine's host name",
  },
  {
    name: 'database.url',
    env: 'WARD_DATABASE_URL',
    description: 'sqlite:<file> (embedded default) or postgres://user@host:port/database',
    secret: true,
    rule: {
      kind: 'string',
      pattern: /^(sqlite:.+|postgres(ql)?:\/\/.+)$/,
      allowed: 'sqlite:<file> or postgres://…',
    },
    defaultValue: (partial) => `sqlite:${join(String(partial['home']), 'ward.db')}`,
    defaultText: '`sqlite:<home>/ward.db`',
  },
  {
    name: 'database.busyTimeoutMs',
    env: 'WARD_DATABASE_BUSY_TIMEOUT_MS',
    description: 'how long SQLite waits for another writer before failing',
    rule: { kind: 'integer', min: 0, max: 600_000 },
    defaultValue: () => 5000,
  },
  {
    name: 'database.poolSize',
    env: 'WARD_DATABASE_POOL_SIZE',
    description: 'PostgreSQL connections per Ward process',
    rule: { kind: 'integer', min: 1, max: 200 },
    defaultValue: () => 10,
  },
  {
    name: 'http.host',
    env: 'WARD_HTTP_HOST',
    description: 'address the HTTPS API listens on',
    rule: { kind: 'string', pattern: /^[0-9a-zA-Z.:-]+$/, allowed: 'an IP address or host name' },
    defaultValue: () => '127.0.0.1',
  },
  {
    name: 'http.port',
    env: 'WARD_HTTP_PORT',
    description: 'port of the HTTPS API (0 picks a free port)',
    rule: { kind: 'integer', min: 0, max: 65535 },
    defaultValue: () => 8443,
  },
  {
    name: 'http.tlsMinVersion',
    env: 'WARD_HTTP_TLS_MIN_VERSION',
    description: 'lowest TLS version accepted; TLSv1.2 allows only ECDHE AEAD suites',
    rule: { kind: 'enum', values: ['TLSv1.3', 'TLSv1.2'] },
    defaultValue: () => 'TLSv1.3',
  },
  {
    name: 'http.certFile',
    env: 'WARD_HTTP_CERT_FILE',
    description: 'PEM certificate chain for the API; default: the one ward init made',
    rule: { kind: 'string', allowed: 'a file path' },
    defaultValue: (partial) => join(String(partial['home']), 'tls', 'server.crt'),
    defaultText: '`<home>/tls/server.crt`',
  },
  {
    name: 'http.keyFile',
    env: 'WARD_HTTP_KEY_FILE',
    description: 'PEM private key for the API certificate',
    rule: { kind: 'string', allowed: 'a file path' },
    defaultValue: (partial) => join(String(partial['home']), 'tls', 'server.key'),
    defaultText: '`<home>/tls/server.key`',
  },
  {
    name: 'http.bodyLimitBytes',
    env: 'WARD_HTTP_BODY_LIMIT_BYTES',
    description: 'largest request body accepted',
    rule: { kind: 'integer', min: 1024, max: 64 * 1024 * 1024 },
    defaultValue: () => 1024 * 1024,
  },
  {
    name: 'http.rateLimitPerMinute',
    env: 'WARD_HTTP_RATE_LIMIT_PER_MINUTE',
    description: 'requests per minute allowed from one client address',
    rule: { kind: 'integer', min: 1, max: 1_000_000 },
    defaultValue: () => 6000,
  },
  {
    name: 'device.host',
    env: 'WARD_DEVICE_HOST',
    description: 'address the mutual-TLS device endpoint listens on',
    rule: { kind: 'string', pattern: /^[0-9a-zA-Z.:-]+$/, allowed: 'an IP address or host name' },
    defaultValue: () => '127.0.0.1',
  },
  {
    name: 'device.port',
    env: 'WARD_DEVICE_PORT',
    description: 'port of the device endpoint (0 picks a free port)',
    rule: { kind: 'integer', min: 0, max: 65535 },
    defaultValue: () => 8444,
  },
  {
    name: 'device.tlsMinVersion',
    env: 'WARD_DEVICE_TLS_MIN_VERSION',
    description: 'lowest TLS version devices may use; TLSv1.2 allows only ECDHE AEAD suites',
    rule: { kind: 'enum', values: ['TLSv1.3', 'TLSv1.2'] },
    defaultValue: () => 'TLSv1.3',
  },
  {
    name: 'device.bodyLimitBytes',
    env: 'WARD_DEVICE_BODY_LIMIT_BYTES',
    description: 'largest request body a device may send',
    rule: { kind: 'integer', min: 1024, max: 64 * 1024 * 1024 },
    defaultValue: () => 4 * 1024 * 1024,
  },
  {
    name: 'device.maxBatchReadings',
    env: 'WARD_DEVICE_MAX_BATCH_READINGS',
    description: 'most readings one batch Bundle may hold',
    rule: { kind: 'integer', min: 1, max: 10_000 },
    defaultValue: () => 500,
  },
  {
    name: 'device.certificateValidityDays',
    env: 'WARD_DEVICE_CERTIFICATE_VALIDITY_DAYS',
    description: 'validity of device certificates Ward issues',
    rule: { kind: 'integer', min: 1, max: 3650 },
    defaultValue: () => 365,
  },
  {
    name: 'device.enrollmentTokenTtlSeconds',
    env: 'WARD_DEVICE_ENROLLMENT_TOKEN_TTL_SECONDS',
    description: 'how long a one-time enrollment token stays valid',
    rule: { kind: 'integer', min: 60, max: 30 * 86_400 },
    defaultValue: () => 72 * 3600,
  },
  {
    name: 'device.idleTimeoutSeconds',
    env: 'WARD_DEVICE_IDLE_TIMEOUT_SECONDS',
    description:
      'a device connection that finishes no TLS handshake, or is silent, this long is closed',
    rule: { kind: 'integer', min: 1, max: 3600 },
    defaultValue: () => 30,
  },
  {
    name: 'device.manufacturerCrl',
    env: 'WARD_DEVICE_MANUFACTURER_CRL',
    description:
      "whether factory enrollment needs a current manufacturer CRL: `optional` enrolls without one, or with one past its nextUpdate, and records that in the enrollment's audit event; `required` refuses",
    rule: { kind: 'enum', values: ['optional', 'required'] },
    defaultValue: () => 'optional',
  },
  {
    name: 'access.breakGlassDefaultMinutes',
    env: 'WARD_ACCESS_BREAK_GLASS_DEFAULT_MINUTES',
    description: 'how long emergency access lasts when the clinician asks for no duration',
    rule: { kind: 'integer', min: 1, max: 1440 },
    defaultValue: () => 60,
  },
  {
    name: 'access.breakGlassMaxMinutes',
    env: 'WARD_ACCESS_BREAK_GLASS_MAX_MINUTES',
    description: 'longest emergency access a clinician may open; at least the default',
    rule: { kind: 'integer', min: 1, max: 1440 },
    defaultValue: () => 240,
  },
  {
    name: 'auth.mfa',
    env: 'WARD_AUTH_MFA',
    description:
      'required: privileged roles must pass MFA; off waives that in development (production refuses to start)',
    rule: { kind: 'enum', values: ['required', 'off'] },
    defaultValue: () => 'required',
  },
  {
    name: 'auth.sessionIdleMinutes',
    env: 'WARD_AUTH_SESSION_IDLE_MINUTES',
    description: 'a session unused this long ends (automatic logoff)',
    rule: { kind: 'integer', min: 1, max: 240 },
    defaultValue: () => 15,
  },
  {
    name: 'auth.sessionLifetimeHours',
    env: 'WARD_AUTH_SESSION_LIFETIME_HOURS',
    description: 'a session ends this long after sign-in, however active',
    rule: { kind: 'integer', min: 1, max: 168 },
    defaultValue: () => 12,
  },
  {
    name: 'auth.apiTokenMaxDays',
    env: 'WARD_AUTH_API_TOKEN_MAX_DAYS',
    description: 'longest validity an API token may be issued with',
    rule: { kind: 'integer', min: 1, max: 366 },
    defaultValue: () => 90,
  },
  {
    name: 'auth.setupTokenTtlHours',
    env: 'WARD_AUTH_SETUP_TOKEN_TTL_HOURS',
    description: "how long a new person's one-time setup token stays valid",
    rule: { kind: 'integer', min: 1, max: 168 },
    defaultValue: () => 24,
  },
  {
    name: 'auth.origin',
    env: 'WARD_AUTH_ORIGIN',
    description: 'origin people sign in at; WebAuthn keys are bound to it and to WARD_HOST_NAME',
    rule: {
      kind: 'string',
      pattern: /^https:\/\/[a-z0-9.-]+(:\d{1,5})?$/,
      allowed: 'https://<host>[:port]',
    },
    defaultValue: (partial) => {
      const port = Number(partial['http.port'])
      const host = String(partial['hostName'])
      return port === 443 || port === 0 ? `https://${host}` : `https://${host}:${port}`
    },
    defaultText: '`https://<hostName>:<http.port>` (no port for 443)',
  },
  {
    name: 'log.level',
    env: 'WARD_LOG_LEVEL',
    description: 'application log level (JSON lines on standard output)',
    rule: { kind: 'enum', values: ['fatal', 'error', 'warn', 'info', 'debug', 'silent'] },
    defaultValue: () => 'info',
  },
  {
    name: 'audit.checkpointIntervalSeconds',
    env: 'WARD_AUDIT_CHECKPOINT_INTERVAL_SECONDS',
    description: 'how often a grown audit log gets a newly signed checkpoint',
    rule: { kind: 'integer', min: 1, max: 86_400 },
    defaultValue: () => 60,
  },
  {
    name: 'updates.maxImageBytes',
    env: 'WARD_UPDATES_MAX_IMAGE_BYTES',
    description: 'largest firmware image a release may carry',
    rule: { kind: 'integer', min: 1024, max: 512 * 1024 * 1024 },
    defaultValue: () => 64 * 1024 * 1024,
  },
  {
    name: 'updates.timestampLifetimeSeconds',
    env: 'WARD_UPDATES_TIMESTAMP_LIFETIME_SECONDS',
    description: 'how long a signed TUF timestamp stays valid; re-signed at half its life',
    rule: { kind: 'integer', min: 60, max: 30 * 86_400 },
    defaultValue: () => 86_400,
  },
  {
    name: 'updates.snapshotLifetimeSeconds',
    env: 'WARD_UPDATES_SNAPSHOT_LIFETIME_SECONDS',
    description: 'how long a signed TUF snapshot stays valid; re-signed at half its life',
    rule: { kind: 'integer', min: 60, max: 365 * 86_400 },
    defaultValue: () => 7 * 86_400,
  },
  {
    name: 'rollouts.checkIntervalSeconds',
    env: 'WARD_ROLLOUT_CHECK_INTERVAL_SECONDS',
    description: 'how often running rollouts are moved on and checked against their deadlines',
    rule: { kind: 'integer', min: 1, max: 3600 },
    defaultValue: () => 30,
  },
]

/** Ward's validated configuration. Paths are absolute. */
export interface WardConfig {
  readonly home: string
  readonly environment: 'development' | 'production'
  readonly hostName: string
  readonly database: {
    readonly url: string
    readonly busyTimeoutMs: number
    readonly poolSize: number
  }
  readonly http: {
    readonly host: string
    readonly port: number
    readonly tlsMinVersion: 'TLSv1.3' | 'TLSv1.2'
    readonly certFile: string
    readonly keyFile: string
    readonly bodyLimitBytes: number
    readonly rateLimitPerMinute: number
  }
  readonly device: {
    readonly host: string
    readonly port: number
    readonly tlsMinVersion: 'TLSv1.3' | 'TLSv1.2'
    readonly bodyLimitBytes: number
    readonly maxBatchReadings: number
    readonly certificateValidityDays: number
    readonly enrollmentTokenTtlSeconds: number
    readonly idleTimeoutSeconds: number
    readonly manufacturerCrl: 'optional' | 'required'
  }
  readonly access: {
    readonly breakGlassDefaultMinutes: number
    readonly breakGlassMaxMinutes: number
  }
  readonly auth: {
    readonly mfa: 'required' | 'off'
    readonly sessionIdleMinutes: number
    readonly sessionLifetimeHours: number
    readonly apiTokenMaxDays: number
    readonly setupTokenTtlHours: number
    readonly origin: string
  }
  readonly log: { readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'silent' }
  readonly audit: { readonly checkpointIntervalSeconds: number }
  readonly updates: {
    readonly maxImageBytes: number
    readonly timestampLifetimeSeconds: number
    readonly snapshotLifetimeSeconds: number
  }
  readonly rollouts: { readonly checkIntervalSeconds: number }
}

/** Where configuration comes from; tests pass these explicitly instead of touching `process`. */
export interface ConfigSources {
  /** Environment variables; only `WARD_*` names are read. */
  readonly env?: Readonly<Record<string, string | undefined>>
  /** A JSON configuration file; `WARD_CONFIG` names one when this is absent. */
  readonly file?: string
  /** Values that win over file and environment (command-line flags). */
  readonly overrides?: Readonly<Record<string, string | number>>
  /** Base for relative paths; the current directory by default. */
  readonly cwd?: string
}

/**
 * Reads, checks and resolves Ward's configuration: defaults, then the JSON file, then `WARD_*`
 * variables, then overrides. A bad or unknown setting throws `ERR_CONFIG_INVALID` naming the
 * setting, where it came from and what is allowed; secret values are never echoed.
 */
export function loadConfig(sources: ConfigSources = {}): WardConfig {
  const env = sources.env ?? {}
  const cwd = sources.cwd ?? process.cwd()
  const values: Record<string, unknown> = {}
  const origins: Record<string, string> = {}

  const filePath = sources.file ?? env['WARD_CONFIG']
  if (filePath !== undefined && filePath !== '') {
    for (const [name, value] of Object.entries(readConfigFile(resolve(cwd, filePath)))) {
      values[name] = value
      origins[name] = `configuration file ${filePath}`
    }
  }

  const known = new Set(settings.map((setting) => setting.env))
  for (const name of Object.keys(env)) {
    if (!name.startsWith('WARD_') || known.has(name) || ignoredVariables.has(name)) continue
    if (name.startsWith('WARD_TEST_')) continue
    throw new WardError('ERR_CONFIG_INVALID', `unknown setting ${name}`, {
      details: { setting: name },
    })
  }
  for (const setting of settings) {
    const text = env[setting.env]
    if (text === undefined || text === '') continue
    values[setting.name] = text
    origins[setting.name] = `environment variable ${setting.env}`
  }
  for (const [name, value] of Object.entries(sources.overrides ?? {})) {
    values[name] = value
    origins[name] = 'command line'
  }

  const resolved: Record<string, unknown> = {}
  for (const setting of settings) {
    const raw = values[setting.name] ?? setting.defaultValue(resolved)
    const value = checkSetting(setting, raw, origins[setting.name] ?? 'default')
    resolved[setting.name] = isPathSetting(setting) ? absolutePath(cwd, String(value)) : value
    if (setting.name === 'database.url') resolved[setting.name] = resolveDatabaseUrl(cwd, value)
  }
  const breakGlass = [
    resolved['access.breakGlassDefaultMinutes'],
    resolved['access.breakGlassMaxMinutes'],
  ]
  if (Number(breakGlass[0]) > Number(breakGlass[1])) {
    throw new WardError(
      'ERR_CONFIG_INVALID',
      `setting access.breakGlassDefaultMinutes (${String(breakGlass[0])}) is more than ` +
        `access.breakGlassMaxMinutes (${String(breakGlass[1])}); allowed: at most the maximum`,
      { details: { setting: 'access.breakGlassDefaultMinutes' } },
    )
  }
  return toConfig(resolved)
}

const ignoredVariables = new Set(['WARD_CONFIG'])

function readConfigFile(path: string): Record<string, unknown> {
  let parsed: unknown
  if (!existsSync(path)) {
    throw new WardError(
      'ERR_CONFIG_INVALID',
      `configuration file ${path} (WARD_CONFIG) does not exist`,
      {
        details: { file: path },
      },
    )
  }
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'))
  } catch (cause) {
    throw new WardError('ERR_CONFIG_INVALID', `configuration file ${path} is not readable JSON`, {
      cause,
      details: { file: path },
    })
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new WardError('ERR_CONFIG_INVALID', `configuration file ${path} must hold an object`)
  }
  const flat: Record<string, unknown> = {}
  flatten(parsed as Record<string, unknown>, '', flat)
  const known = new Set(settings.map((setting) => setting.name))
  for (const name of Object.keys(flat)) {
    if (!known.has(name)) {
      throw new WardError('ERR_CONFIG_INVALID', `unknown setting ${name} in ${path}`, {
        details: { setting: name, file: path },
      })
    }
  }
  return flat
}

function flatten(object: Record<string, unknown>, prefix: string, into: Record<string, unknown>) {
  for (const [key, value] of Object.entries(object)) {
    const name = prefix === '' ? key : `${prefix}.${key}`
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      flatten(value as Record<string, unknown>, name, into)
    } else {
      into[name] = value
    }
  }
}

function checkSetting(setting: Setting, raw: unknown, origin: string): string | number {
  const shown = setting.secret === true ? '(value hidden)' : JSON.stringify(raw)
  const fail = (allowed: string): never => {
    throw new WardError(
      'ERR_CONFIG_INVALID',
      `setting ${setting.name} from ${origin} is ${shown}; allowed: ${allowed}`,
      { details: { setting: setting.name, env: setting.env, allowed } },
    )
  }
  const rule = setting.rule
  switch (rule.kind) {
    case 'integer': {
      // Text is read as a number only where settings are text: variables and the command line.
      const textual = !origin.startsWith('configuration file')
      const number = textual && typeof raw === 'string' && /^-?\d+$/.test(raw) ? Number(raw) : raw
      if (typeof number !== 'number' || !Number.isSafeInteger(number)) {
        return fail(`a whole number from ${rule.min} to ${rule.max}`)
      }
      if (number < rule.min || number > rule.max) {
        return fail(`a whole number from ${rule.min} to ${rule.max}`)
      }
      return number
    }
    case 'enum':
      if (typeof raw !== 'string' || !rule.values.includes(raw)) return fail(rule.values.join(', '))
      return raw
    case 'string':
      if (typeof raw !== 'string' || raw.length === 0 || raw.length > 4096)
        return fail(rule.allowed)
      if (rule.pattern !== undefined && !rule.pattern.test(raw)) return fail(rule.allowed)
      return raw
  }
}

function isPathSetting(setting: Setting): boolean {
  return setting.rule.kind === 'string' && setting.rule.allowed.endsWith('path')
}

function absolutePath(cwd: string, path: string): string {
  return isAbsolute(path) ? path : resolve(cwd, path)
}

function resolveDatabaseUrl(cwd: string, value: string | number): string {
  const url = String(value)
  if (!url.startsWith('sqlite:')) return url
  return `sqlite:${absolutePath(cwd, url.slice('sqlite:'.length))}`
}

function defaultHostName(): string {
  const name = hostname().toLowerCase()
  return hostNamePattern.test(name) ? name : 'localhost'
}

function toConfig(values: Record<string, unknown>): WardConfig {
  const get = <T>(name: string) => values[name] as T
  return {
    home: get('home'),
    environment: get('environment'),
    hostName: get('hostName'),
    database: {
      url: get('database.url'),
      busyTimeoutMs: get('database.busyTimeoutMs'),
      poolSize: get('database.poolSize'),
    },
    http: {
      host: get('http.host'),
      port: get('http.port'),
      tlsMinVersion: get('http.tlsMinVersion'),
      certFile: get('http.certFile'),
      keyFile: get('http.keyFile'),
      bodyLimitBytes: get('http.bodyLimitBytes'),
      rateLimitPerMinute: get('http.rateLimitPerMinute'),
    },
    device: {
      host: get('device.host'),
      port: get('device.port'),
      tlsMinVersion: get('device.tlsMinVersion'),
      bodyLimitBytes: get('device.bodyLimitBytes'),
      maxBatchReadings: get('device.maxBatchReadings'),
      certificateValidityDays: get('device.certificateValidityDays'),
      enrollmentTokenTtlSeconds: get('device.enrollmentTokenTtlSeconds'),
      idleTimeoutSeconds: get('device.idleTimeoutSeconds'),
      manufacturerCrl: get('device.manufacturerCrl'),
    },
    access: {
      breakGlassDefaultMinutes: get('access.breakGlassDefaultMinutes'),
      breakGlassMaxMinutes: get('access.breakGlassMaxMinutes'),
    },
    auth: {
      mfa: get('auth.mfa'),
      sessionIdleMinutes: get('auth.sessionIdleMinutes'),
      sessionLifetimeHours: get('auth.sessionLifetimeHours'),
      apiTokenMaxDays: get('auth.apiTokenMaxDays'),
      setupTokenTtlHours: get('auth.setupTokenTtlHours'),
      origin: get('auth.origin'),
    },
    log: { level: get('log.level') },
    audit: { checkpointIntervalSeconds: get('audit.checkpointIntervalSeconds') },
    updates: {
      maxImageBytes: get('updates.maxImageBytes'),
      timestampLifetimeSeconds: get('updates.timestampLifetimeSeconds'),
      snapshotLifetimeSeconds: get('updates.snapshotLifetimeSeconds'),
    },
    rollouts: { checkIntervalSeconds: get('rollouts.checkIntervalSeconds') },
  }
}

/**
 * The configuration as safe to print at start-up: secrets are replaced, and a database URL
 * keeps its scheme, host and database name but loses any user name and password.
 */
export function configSummary(config: WardConfig): Record<string, string | number> {
  return {
    home: config.home,
    environment: config.environment,
    hostName: config.hostName,
    database: redactDatabaseUrl(config.database.url),
    httpAddress: `${config.http.host}:${config.http.port}`,
    tlsMinVersion: config.http.tlsMinVersion,
    deviceAddress: `${config.device.host}:${config.device.port}`,
    deviceTlsMinVersion: config.device.tlsMinVersion,
    mfa: config.auth.mfa,
    sessionIdleMinutes: config.auth.sessionIdleMinutes,
    sessionLifetimeHours: config.auth.sessionLifetimeHours,
    logLevel: config.log.level,
    checkpointIntervalSeconds: config.audit.checkpointIntervalSeconds,
  }
}

/** A database URL with credentials removed, for logs and messages. */
export function redactDatabaseUrl(url: string): string {
  if (url.startsWith('sqlite:')) return url
  try {
    const parsed = new URL(url)
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`
  } catch {
    return 'postgres://(unparsable)'
  }
}

/** The settings table as Markdown, for the README's configuration reference. */
export function settingsReference(): string {
  const defaults: Record<string, unknown> = {}
  const rows = settings.map((setting) => {
    defaults[setting.name] = setting.defaultValue(defaults)
    const rule = setting.rule
    const allowed =
      rule.kind === 'enum'
        ? rule.values.join(', ')
        : rule.kind === 'integer'
          ? `${rule.min}–${rule.max}`
          : rule.allowed
    const shown = setting.defaultText ?? `\`${String(defaults[setting.name])}\``
    return `| \`${setting.env}\` | \`${setting.name}\` | ${shown} | ${allowed} | ${setting.description} |`
  })
  return [
    '| variable | file key | default | allowed | what it sets |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n')
}
