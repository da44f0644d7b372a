import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'

import { WardError } from '@ward/core'

import { OperatorToken } from './access/api-token.js'
import { People } from './access/people.js'
import {
  EntryKeys,
  HomeCheckpointWitness,
  auditEventTypes,
  createAuditLog,
  exportTiles,
  findAuditLog,
  hasAuditLog,
  latestCheckpoint,
  listAuditLogs,
  platformLogName,
  recordAuditEvent,
  signCheckpoint,
  verifierKeyText,
  type AuditEventInput,
  type AuditLogHead,
  type ExportResult,
  type SignedCheckpoint,
} from './audit/index.js'
import type { WardConfig } from './config/index.js'
import type { OperationContext } from './context.js'
import { Fleet } from './fleet.js'
import { createOrganizationAuthorities } from './identity/index.js'
import {
  AuthenticationKeys,
  Keyring,
  LocalKeyFileProvider,
  LocalKeyShareStore,
  createKeyEncryptionKey,
  createSigningKey,
  findSigningKey,
  loadNoteSigner,
  type KeyWrappingProvider,
} from './keys/index.js'
import { Rollouts } from './rollouts.js'
import { FhirReads, PatientReadingsReader } from './records/index.js'
import { openStore, type Store, type Transaction } from './store/index.js'
import { insertOrganization, listOrganizations, type Organization } from './tenancy/index.js'
import { Updates, repositoryReleaseCatalog } from './updates/index.js'

/** Files in Ward's home directory. */
export function homePaths(home: string) {
  return {
    masterKey: join(home, 'master.key'),
    operatorToken: join(home, 'operator-token'),
    keyShares: join(home, 'key-shares'),
  }
}

/** What {@link initializeWard} created; empty when Ward was already initialized. */
export interface InitializeResult {
  readonly created: readonly string[]
}

/**
 * Creates whatever of Ward's home is missing: the directory (mode 0700), the master key, the
 * database schema, the platform audit log with its signing key, a self-signed API certificate
 * when none is configured, and the operator token. Each step is skipped when its result exists,
 * so an interrupted initialization can simply be run again. The platform log records the
 * initialization and the key it created.
 */
export async function initializeWard(
  config: WardConfig,
  context: OperationContext,
): Promise<InitializeResult> {
  const created: string[] = []
  const paths = homePaths(config.home)
  if (!existsSync(config.home)) {
    mkdirSync(config.home, { recursive: true, mode: 0o700 })
    created.push(`home ${config.home}`)
  }

  let provider: KeyWrappingProvider
  if (existsSync(paths.masterKey)) {
    provider = LocalKeyFileProvider.open(paths.masterKey)
  } else {
    provider = LocalKeyFileProvider.create(paths.masterKey)
    created.push(`master key ${paths.masterKey}`)
  }
  if (!existsSync(paths.keyShares)) {
    LocalKeyShareStore.create(paths.keyShares)
    created.push(`key share store ${paths.keyShares}`)
  }

  const store = await openStore({ ...config.database, keys: provider })
  try {
    const hasPlatformLog = await hasAuditLog(store.db, platformLogName)
    const witness = new HomeCheckpointWitness(config.home)
    const entryKeys = new EntryKeys(provider)
    if (!hasPlatformLog && (await witness.latest(platformLogName)) !== undefined) {
      throw new WardError(
        'ERR_NOT_INITIALIZED',
        `${config.home} holds audit checkpoints but ${store.description} has no platform audit ` +
          'log: this home belongs to another database (check WARD_DATABASE_URL)',
      )
    }
    if (!hasPlatformLog) {
      await store.transaction(async (tx) => {
        const key = await createSigningKey(tx, provider, 'audit-log')
        await createAuditLog(tx, entryKeys, {
          name: platformLogName,
          hostName: config.hostName,
          organizationId: null,
          signingKeyId: key.id,
        })
        const audit = auditRecorder(tx, store, entryKeys, config, platformLogName, context)
        await audit({
          type: auditEventTypes.applicationActivity,
          operation: 'ward.init',
          action: 'C',
          entity: [{ type: 'audit-log', what: platformLogName }],
        })
        await audit(keyCreatedEvent(key.id, platformLogName))
      })
      created.push(`platform audit log in ${store.description}`)
    }
    if ((await witness.latest(platformLogName)) === undefined) {
      const head = await findAuditLog(store.db, platformLogName)
      const signer = await loadNoteSigner(store.db, provider, head.signingKeyId, head.origin)
      await signCheckpoint(store, entryKeys, head, signer, witness)
    }
  } finally {
    await store.close()
  }

  const defaultCertificate = join(config.home, 'tls', 'server.crt')
  if (config.http.certFile === defaultCertificate && !existsSync(defaultCertificate)) {
    // Loaded only here: the X.509 library is large and only initialization needs it.
    const { createSelfSignedServerCertificate } = await import('./http/tls.js')
    await createSelfSignedServerCertificate(
      config.hostName,
      config.http.certFile,
      config.http.keyFile,
    )
    created.push(`self-signed API certificate ${config.http.certFile}`)
  }
  if (!existsSync(paths.operatorToken)) {
    OperatorToken.create(paths.operatorToken)
    created.push(`operator token ${paths.operatorToken}`)
  }
  return { created }
}

/** True when Ward's home holds a master key, the mark of an initialized home. */
export function isInitialized(config: WardConfig): boolean {
  return existsSync(homePaths(config.home).masterKey)
}

/**
 * A running Ward: configuration, store, key provider and checkpoint witness, and the
 * operations the CLI and the HTTP API share. Each operation runs in one transaction with its
 * audit events.
 */
export class Ward {
  readonly config: WardConfig
  readonly store: Store
  readonly keys: KeyWrappingProvider
  readonly witness: HomeCheckpointWitness
  readonly entryKeys: EntryKeys
  /** Keys that authenticate enrollment tokens and manufacturer CA rows, per organization. */
  readonly authenticationKeys: AuthenticationKeys
  /** Data keys for sealing and opening records, cached briefly. */
  readonly keyring: Keyring
  /** Device models, devices, patients, enrollment and readings. */
  readonly fleet: Fleet
  /** TUF repositories, firmware releases and install reports. */
  readonly updates: Updates
  /** Staged rollouts of firmware releases. */
  readonly rollouts: Rollouts
  /** Reads of patients' readings, each audited in the same transaction. */
  readonly readings: PatientReadingsReader
  /** The FHIR R4 read and search subset, each read audited in the same transaction. */
  readonly fhir: FhirReads
  /** People: accounts, roles, passwords, MFA, sessions and API tokens. */
  readonly people: People

  private constructor(config: WardConfig, store: Store, keys: KeyWrappingProvider) {
    this.config = config
    this.store = store
    this.keys = keys
    this.witness = new HomeCheckpointWitness(config.home)
    this.entryKeys = new EntryKeys(keys)
    this.authenticationKeys = new AuthenticationKeys(keys)
    this.keyring = new Keyring({
      provider: keys,
      keyShares: LocalKeyShareStore.open(homePaths(config.home).keyShares),
    })
    this.fleet = new Fleet(this)
    this.updates = new Updates(this)
    this.rollouts = new Rollouts(this, { releases: repositoryReleaseCatalog })
    this.readings = new PatientReadingsReader(this)
    this.fhir = new FhirReads(this)
    this.people = new People(this)
  }

  /** Records `input` in log `logName` inside `tx`, as done under `context`. */
  audit(tx: Transaction, logName: string, context: OperationContext, input: AuditEventInput) {
    return auditRecorder(tx, this.store, this.entryKeys, this.config, logName, context)(input)
  }

  /** Opens an initialized Ward; `ERR_NOT_INITIALIZED` when `ward init` has not run. */
  static async open(config: WardConfig): Promise<Ward> {
    const keys = LocalKeyFileProvider.open(homePaths(config.home).masterKey)
    const store = await openStore({ ...config.database, keys })
    if (!(await hasAuditLog(store.db, platformLogName))) {
      await store.close()
      throw new WardError(
        'ERR_NOT_INITIALIZED',
        `no platform audit log in ${store.description}; run ward init`,
      )
    }
    return new Ward(config, store, keys)
  }

  /**
   * Creates an organization with everything it owns: its audit log and log signing key, its
   * device root and issuing CAs, and version 1 of its key-encryption key. The platform log
   * records the creation and the keys; the organization's log opens with its own first event.
   */
  async createOrganization(
    context: OperationContext,
    input: { slug: string; name: string },
  ): Promise<Organization> {
    const organization = await this.store.transaction(async (tx) => {
      const organization = await insertOrganization(tx, input)
      const key = await createSigningKey(tx, this.keys, 'audit-log')
      await createAuditLog(tx, this.entryKeys, {
        name: organization.slug,
        hostName: this.config.hostName,
        organizationId: organization.id,
        signingKeyId: key.id,
      })

      const platform = auditRecorder(
        tx,
        this.store,
        this.entryKeys,
        this.config,
        platformLogName,
        context,
      )
      await platform({
        type: auditEventTypes.applicationActivity,
        operation: 'organization.create',
        action: 'C',
        entity: [
          { type: 'organization', what: organization.id, detail: { slug: organization.slug } },
        ],
      })
      await platform(keyCreatedEvent(key.id, organization.slug))
      const authorities = await createOrganizationAuthorities(tx, this.keys, {
        organizationId: organization.id,
        slug: organization.slug,
        hostName: this.config.hostName,
      })
      for (const authority of [authorities.root, authorities.issuing]) {
        await platform({
          type: auditEventTypes.applicationActivity,
          operation: 'certificate-authority.create',
          action: 'C',
          entity: [
            {
              type: 'certificate-authority',
              what: authority.id,
              detail: { role: authority.role, organization: organization.slug },
            },
          ],
        })
      }
      const keyEncryptionKey = await createKeyEncryptionKey(tx, this.keys, organization.id)
      await platform({
        type: auditEventTypes.applicationActivity,
        operation: 'key.create',
        action: 'C',
        entity: [
          {
            type: 'key-encryption-key',
            what: organization.id,
            detail: { version: keyEncryptionKey.version, organization: organization.slug },
          },
        ],
      })

      const own = auditRecorder(tx, this.store, this.entryKeys, this.config, organization.slug, {
        ...context,
        organizationId: organization.id,
      })
      await own({
        type: auditEventTypes.applicationActivity,
        operation: 'audit-log.create',
        action: 'C',
        entity: [{ type: 'audit-log', what: organization.slug }],
      })
      return organization
    })
    await this.signCheckpoint(platformLogName)
    await this.signCheckpoint(organization.slug)
    return organization
  }

  /** Every organization, oldest first. */
  listOrganizations(): Promise<Organization[]> {
    return listOrganizations(this.store.db)
  }

  /** Every audit log's head. */
  listAuditLogs(): Promise<AuditLogHead[]> {
    return listAuditLogs(this.store.db)
  }

  /** The head of the log named `name`. */
  findAuditLog(name: string): Promise<AuditLogHead> {
    return findAuditLog(this.store.db, name)
  }

  /** The log's verifier key in signed-note form. */
  async verifierKey(logName: string): Promise<string> {
    const head = await findAuditLog(this.store.db, logName)
    const key = await findSigningKey(this.store.db, head.signingKeyId)
    return verifierKeyText(head, key.publicKey)
  }

  /** Signs a checkpoint of the log as it stands now, after checking the store is sound. */
  async signCheckpoint(logName: string): Promise<SignedCheckpoint> {
    const head = await findAuditLog(this.store.db, logName)
    return signCheckpoint(this.store, this.entryKeys, head, await this.#signer(head), this.witness)
  }

  /**
   * Signs a fresh checkpoint for every log that grew since its newest checkpoint. The
   * scheduled checkpoint job calls this.
   */
  async signGrownCheckpoints(): Promise<SignedCheckpoint[]> {
    const signed: SignedCheckpoint[] = []
    for (const head of await listAuditLogs(this.store.db)) {
      const latest = await latestCheckpoint(this.witness, head)
      if (latest === undefined || latest.size < head.size) {
        signed.push(await this.signCheckpoint(head.name))
      }
    }
    return signed
  }

  /** The newest checkpoint of a log, as witnessed; signs one when there is none yet. */
  async currentCheckpoint(logName: string): Promise<SignedCheckpoint> {
    const head = await findAuditLog(this.store.db, logName)
    return (await latestCheckpoint(this.witness, head)) ?? (await this.signCheckpoint(logName))
  }

  /**
   * Exports the log to `directory` in the tlog-tiles layout (see `exportTiles`). A checked
   * export is itself audited in the log before its checkpoint is signed, so the exported
   * checkpoint covers its own record; an as-stored export changes nothing.
   */
  async exportAuditLog(
    context: OperationContext,
    logName: string,
    directory: string,
    options: { asStored?: boolean } = {},
  ): Promise<ExportResult> {
    if (options.asStored !== true) {
      await this.store.transaction((tx) =>
        this.audit(tx, logName, context, {
          type: auditEventTypes.export,
          operation: 'audit-log.export',
          action: 'R',
          entity: [{ type: 'audit-log', what: logName }],
        }),
      )
    }
    const head = await findAuditLog(this.store.db, logName)
    const exportContext = {
      store: this.store,
      entryKeys: this.entryKeys,
      signer: await this.#signer(head),
      witness: this.witness,
    }
    return exportTiles(exportContext, head, directory, options)
  }

  async #signer(head: AuditLogHead) {
    return loadNoteSigner(this.store.db, this.keys, head.signingKeyId, head.origin)
  }

  async close(): Promise<void> {
    await this.store.close()
  }
}

function auditRecorder(
  tx: Transaction,
  store: Store,
  entryKeys: EntryKeys,
  config: WardConfig,
  logName: string,
  context: OperationContext,
) {
  return (input: AuditEventInput) =>
    recordAuditEvent(tx, store.dialect, entryKeys, logName, context, config.hostName, input)
}

function keyCreatedEvent(keyId: string, logName: string): AuditEventInput {
  return {
    type: auditEventTypes.applicationActivity,
    operation: 'key.create',
    action: 'C',
    entity: [{ type: 'signing-key', what: keyId, detail: { purpose: 'audit-log', log: logName } }],
  }
}
