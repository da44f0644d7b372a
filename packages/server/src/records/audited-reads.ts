import { WardError, isWardError, type WardErrorCode } from '@ward/core'

import { auditEventTypes, type AuditEventInput } from '../audit/index.js'
import type { OperationContext } from '../context.js'
import type { Keyring } from '../keys/index.js'
import { CommitGroup, type Store, type Transaction } from '../store/index.js'
import { findOrganizationById } from '../tenancy/index.js'
import type { Patient } from './patients.js'

/** What the records domain's reads need from a running Ward; `Ward` itself provides it. */
export interface RecordsServices {
  readonly store: Store
  readonly keyring: Keyring
  /** Appends `input` to log `logName` in `tx`, as done under `context`. */
  audit(
    tx: Transaction,
    logName: string,
    context: OperationContext,
    input: AuditEventInput,
  ): Promise<unknown>
}

/** Refusals recorded as failed reads: what the read named is not there, or no longer. */
const refusedAsAbsent = new Set<WardErrorCode>([
  'ERR_PATIENT_NOT_FOUND',
  'ERR_DEVICE_NOT_FOUND',
  'ERR_NOT_FOUND',
  'ERR_DATA_KEY_DESTROYED',
])

/** Most reads one transaction commits together. */
const maxReadsPerCommit = 64

const shared = new WeakMap<RecordsServices, AuditedReads>()

/** Values a read's audit event carries about its query: references, bounds and counts. */
export type QueryDetail = Record<string, string | number | boolean>

/**
 * Runs reads of PHI the way the spine requires: the read and its audit events in one
 * transaction of the organization the context names, so that a read whose audit append fails
 * returns nothing. The access decision is the caller's; its rule and purpose of use come with
 * the context and are recorded with every event.
 */
export class AuditedReads {
  readonly #services: RecordsServices
  // Organizations are never renamed; the cache saves a query per read.
  readonly #slugs = new Map<string, string>()
  readonly #group: CommitGroup

  constructor(services: RecordsServices) {
    this.#services = services
    this.#group = new CommitGroup(services.store, { maxUnits: maxReadsPerCommit })
  }

  /** The one instance for `services`, so that every reader's reads commit together. */
  static for(services: RecordsServices): AuditedReads {
    let reads = shared.get(services)
    if (reads === undefined) {
      reads = new AuditedReads(services)
      shared.set(services, reads)
    }
    return reads
  }

  get keyring(): Keyring {
    return this.#services.keyring
  }

  /**
   * Runs `work` for the context's organization and appends the audit events it returns, in
   * order, to that organization's log, in the same transaction; resolves only once that
   * transaction has committed. Throws `ERR_INPUT_INVALID` for a context without an
   * organization: every PHI read is some organization's.
   *
   * On SQLite, reads that arrive together are committed together, each inside a savepoint of
   * its own (see `CommitGroup`): one wait for the disk serves them all, a read whose work or
   * audit append fails is rolled back alone and rejects, and no read resolves before its audit
   * event is committed.
   *
   * A read refused because what it names is not there — no such patient, device or record,
   * or a crypto-shredded patient — is rolled back and recorded instead as operation
   * `operation` with outcome 4 (minor failure) and the error code, naming nothing: the same
   * event for another organization's patient as for one that never existed, so that probing
   * for patients shows in the log without the log telling anything about them.
   */
  run<T>(
    context: OperationContext,
    operation: string,
    work: (tx: Transaction, organizationId: string) => Promise<[T, readonly AuditEventInput[]]>,
  ): Promise<T> {
    const organizationId = context.organizationId
    if (organizationId === undefined) {
      throw new WardError('ERR_INPUT_INVALID', 'a read of patient records needs an organization', {
        details: { field: 'organizationId' },
      })
    }
    return this.#read(context, organizationId, operation, work)
  }

  async #read<T>(
    context: OperationContext,
    organizationId: string,
    operation: string,
    work: (tx: Transaction, organizationId: string) => Promise<[T, readonly AuditEventInput[]]>,
  ): Promise<T> {
    try {
      return await this.#commit(async (tx) => {
        const [value, events] = await work(tx, organizationId)
        const slug = await this.slugOf(tx, organizationId)
        for (const event of events) await this.#services.audit(tx, slug, context, event)
        return value
      })
    } catch (error) {
      if (isWardError(error, 'ERR_RECORD_UNREADABLE')) {
        // A stored record that does not open as its row was altered: a security event.
        await this.#commit(async (tx) =>
          this.#services.audit(tx, await this.slugOf(tx, organizationId), context, {
            type: auditEventTypes.securityAlert,
            operation,
            action: 'R',
            outcome: '8',
            outcomeDescription: error.code,
            entity: [{ type: 'Observation', what: String(error.details['record'] ?? '') }],
          }),
        )
      } else if (isWardError(error) && refusedAsAbsent.has(error.code)) {
        // The read was rolled back; its refusal is recorded on its own, naming nothing.
        await this.#commit((tx) =>
          this.#recordRefusal(tx, context, organizationId, operation, error),
        )
      }
      throw error
    }
  }

  /**
   * On SQLite, where a commit waits for the disk with the event loop blocked, reads arriving
   * together share one commit (see `CommitGroup`); PostgreSQL runs each on its own pooled
   * connection.
   */
  #commit<T>(work: (tx: Transaction) => Promise<T>): Promise<T> {
    return this.#services.store.dialect === 'sqlite'
      ? this.#group.run(work)
      : this.#services.store.transaction(work)
  }

  async #recordRefusal(
    tx: Transaction,
    context: OperationContext,
    organizationId: string,
    operation: string,
    error: WardError,
  ): Promise<void> {
    const slug = await this.slugOf(tx, organizationId)
    await this.#services.audit(tx, slug, context, {
      type: auditEventTypes.query,
      operation,
      action: 'R',
      outcome: '4',
      outcomeDescription: error.code,
      entity: [],
    })
  }

  /** The slug of an organization, which names its audit log. */
  async slugOf(tx: Transaction, organizationId: string): Promise<string> {
    const known = this.#slugs.get(organizationId)
    if (known !== undefined) return known
    const { slug } = await findOrganizationById(tx, organizationId)
    this.#slugs.set(organizationId, slug)
    return slug
  }
}

/**
 * The audit event of one read of a patient's records: the patient by id and pseudonym, and
 * the query that selected what was read — bounds, codes, counts — never a value read.
 */
export function patientReadEvent(
  operation: string,
  patient: Patient,
  detail: QueryDetail,
  entity: { readonly type?: string; readonly what?: string } = {},
): AuditEventInput {
  return {
    type: auditEventTypes.patientRecord,
    operation,
    action: 'R',
    entity: [
      {
        type: entity.type ?? 'Patient',
        what: entity.what ?? patient.id,
        patient: patient.pseudonym,
        detail,
      },
    ],
  }
}

/** The audit event of a search that matched no patient: what was asked, and that nothing was. */
export function emptySearchEvent(operation: string, resourceType: string, detail: QueryDetail) {
  return {
    type: auditEventTypes.query,
    operation,
    action: 'E',
    entity: [{ type: resourceType, what: 'search', detail: { ...detail, count: 0 } }],
  } satisfies AuditEventInput
}

/** Most withheld readings one security alert names by id; it counts them all. */
const maxWithheldNamed = 99

/**
 * The security alert of a read that withheld stored readings because their rows do not open
 * as themselves (altered in the database): the patient and how many, and the rows by id, so
 * that an operator can find them. Recorded beside the read's own event.
 */
export function withheldReadingsEvent(
  operation: string,
  patient: Patient,
  withheld: readonly string[],
): AuditEventInput {
  return {
    type: auditEventTypes.securityAlert,
    operation,
    action: 'R',
    outcome: '8',
    outcomeDescription: 'ERR_RECORD_UNREADABLE',
    entity: [
      {
        type: 'Patient',
        what: patient.id,
        patient: patient.pseudonym,
        detail: { withheld: withheld.length },
      },
      ...withheld.slice(0, maxWithheldNamed).map((id) => ({ type: 'Observation', what: id })),
    ],
  }
}
