import { constants } from 'node:crypto'
import { createSecureContext, type SecureContext } from 'node:tls'

import { WardError } from '@ward/core'

import { deviceChangeMark } from '../devices/index.js'
import { deviceTrust, revocationMark } from '../identity/index.js'
import { findOrganization, slugOfServerName } from '../tenancy/index.js'
import type { Ward } from '../ward.js'

/** What every organization's TLS context shares: Ward's own certificate and TLS settings. */
export interface EndpointTls {
  readonly key: Buffer
  readonly cert: Buffer
  readonly minVersion: 'TLSv1.3' | 'TLSv1.2'
  readonly ciphers: string
}

/**
 * TLS options every context of the device endpoint carries. No session tickets: a resumed
 * session skips certificate verification, so a revoked device could come back on an old
 * ticket; without tickets (and without a session cache) every connection is verified afresh.
 */
export function endpointTlsOptions(tls: EndpointTls) {
  return {
    key: tls.key,
    cert: tls.cert,
    minVersion: tls.minVersion,
    ciphers: tls.ciphers,
    honorCipherOrder: true,
    secureOptions: constants.SSL_OP_NO_TICKET,
  }
}

interface Entry {
  readonly organizationId: string
  readonly slug: string
  context: SecureContext
  /** The organization's trust mark when `context` was built: a different one means rebuild. */
  mark: string
  refreshTimer: NodeJS.Timeout | undefined
  rebuilding: Promise<void> | undefined
  dirty: boolean
}

// setTimeout holds at most a signed 32-bit count of milliseconds.
const longestTimerMs = 2 ** 31 - 1
const retryAfterFailureMs = 10_000

/**
 * The device endpoint's TLS contexts, one per organization, chosen by the server name the
 * device sends: each trusts only that organization's device CAs and carries their current CRLs,
 * so a certificate of another organization, a revoked one and a suspended one all fail the
 * handshake. A context is built on the first handshake for its organization, rebuilt on
 * {@link refresh} and before its CRLs' nextUpdate, and kept otherwise.
 */
export class OrganizationTrust {
  readonly #ward: Ward
  readonly #tls: EndpointTls
  /** Told when a scheduled rebuild fails; rebuilds asked for by a caller reject instead. */
  readonly #onError: (error: unknown, organizationId: string) => void
  readonly #bySlug = new Map<string, Entry>()
  readonly #byId = new Map<string, Entry>()
  readonly #opening = new Map<string, Promise<Entry>>()
  #closed = false

  constructor(
    ward: Ward,
    tls: EndpointTls,
    onError: (error: unknown, organizationId: string) => void,
  ) {
    this.#ward = ward
    this.#tls = tls
    this.#onError = onError
  }

  /**
   * The TLS context for `serverName`, `<organization slug>.<WARD_HOST_NAME>`. Rejects with
   * `ERR_ORGANIZATION_NOT_FOUND` for any name that names no organization, which fails the
   * handshake.
   */
  async contextFor(serverName: string): Promise<SecureContext> {
    const slug = slugOfServerName(serverName, this.#ward.config.hostName)
    if (slug === undefined) {
      throw new WardError('ERR_ORGANIZATION_NOT_FOUND', 'no organization answers to this name')
    }
    const known = this.#bySlug.get(slug)
    if (known !== undefined) return known.context
    let opening = this.#opening.get(slug)
    if (opening === undefined) {
      opening = this.#open(slug).finally(() => this.#opening.delete(slug))
      this.#opening.set(slug, opening)
    }
    return (await opening).context
  }

  /** The organization a connection reached by `serverName`, once its context exists. */
  organizationOf(serverName: string | false | null | undefined): string | undefined {
    if (typeof serverName !== 'string') return undefined
    const slug = slugOfServerName(serverName, this.#ward.config.hostName)
    return slug === undefined ? undefined : this.#bySlug.get(slug)?.organizationId
  }

  /**
   * Rebuilds the organization's context from the store now, and resolves once handshakes use
   * the new one. Calls while a rebuild runs lead to one more rebuild after it, never to a lost
   * change. Does nothing for an organization no device has reached yet.
   */
  refresh(organizationId: string): Promise<void> {
    const entry = this.#byId.get(organizationId)
    if (entry === undefined || this.#closed) return Promise.resolve()
    entry.dirty = true
    entry.rebuilding ??= this.#rebuild(entry).finally(() => {
      entry.rebuilding = undefined
    })
    return entry.rebuilding
  }

  /**
   * The organizations whose trust mark changed since their context was built: a device or a
   * certificate changed, perhaps in another Ward process. Two cheap queries per organization
   * served; organizations being rebuilt are skipped, their rebuild reads the mark anew.
   */
  async changed(): Promise<string[]> {
    const changed: string[] = []
    for (const entry of this.#byId.values()) {
      if (entry.rebuilding !== undefined) continue
      if ((await this.#markOf(entry.organizationId)) !== entry.mark) {
        changed.push(entry.organizationId)
      }
    }
    return changed
  }

  /** Stops the refresh timers. */
  close(): void {
    this.#closed = true
    for (const entry of this.#byId.values()) clearTimeout(entry.refreshTimer)
  }

  async #open(slug: string): Promise<Entry> {
    const organization = await findOrganization(this.#ward.store.db, slug)
    const built = await this.#build(organization.id)
    const entry: Entry = {
      organizationId: organization.id,
      slug,
      context: built.context,
      mark: built.mark,
      refreshTimer: undefined,
      rebuilding: undefined,
      dirty: false,
    }
    this.#bySlug.set(slug, entry)
    this.#byId.set(organization.id, entry)
    this.#schedule(entry, built.refreshInMs)
    return entry
  }

  async #rebuild(entry: Entry): Promise<void> {
    while (entry.dirty && !this.#closed) {
      entry.dirty = false
      try {
        const built = await this.#build(entry.organizationId)
        entry.context = built.context
        entry.mark = built.mark
        this.#schedule(entry, built.refreshInMs)
      } catch (error) {
        // The old context stays in use; it fails closed when its CRLs pass nextUpdate.
        this.#schedule(entry, retryAfterFailureMs)
        throw error
      }
    }
  }

  async #build(
    organizationId: string,
  ): Promise<{ context: SecureContext; mark: string; refreshInMs: number }> {
    // The mark is read first: a change made while the CRLs are signed shows up as a new mark
    // at the next poll, never as a change the context silently missed.
    const mark = await this.#markOf(organizationId)
    const trust = await this.#ward.store.transaction((tx) =>
      deviceTrust(tx, this.#ward.keys, organizationId),
    )
    const context = createSecureContext({
      ...endpointTlsOptions(this.#tls),
      ca: trust.ca,
      crl: trust.crl,
    })
    // Halfway to nextUpdate leaves time to retry if the store is briefly unavailable then.
    const refreshInMs = Math.max(1000, (Date.parse(trust.nextUpdate) - Date.now()) / 2)
    return { context, mark, refreshInMs }
  }

  #schedule(entry: Entry, delayMs: number): void {
    clearTimeout(entry.refreshTimer)
    if (this.#closed) return
    entry.refreshTimer = setTimeout(
      () => {
        this.refresh(entry.organizationId).catch((error: unknown) => {
          this.#onError(error, entry.organizationId)
        })
      },
      Math.min(delayMs, longestTimerMs),
    ).unref()
  }

  async #markOf(organizationId: string): Promise<string> {
    const db = this.#ward.store.db
    const devices = await deviceChangeMark(db, organizationId)
    const certificates = await revocationMark(db, organizationId)
    return `${devices}|${certificates}`
  }
}
