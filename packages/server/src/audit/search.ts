import { WardError, utf8Decode } from '@ward/core'

import type { Transaction } from '../store/index.js'
import type { AuditEvent } from './event.js'
import { findAuditLog } from './log.js'

/** What an audit search asks for. Times are UTC ISO 8601; `from` inclusive, `to` exclusive. */
export interface AuditSearch {
  readonly from?: string
  readonly to?: string
  /** Only events naming this patient pseudonym in an entity. */
  readonly patient?: string
  /** Only events with an entity whose `what` is this, or whose `type/what` is this. */
  readonly entity?: string
  readonly order: 'oldest-first' | 'newest-first'
  readonly limit: number
  /** The index of the last entry of the previous page. */
  readonly after?: number
}

/** One page of an audit search. */
export interface AuditSearchPage {
  readonly events: readonly { readonly index: number; readonly event: AuditEvent }[]
  /** Pass back as `after` to go on; absent when the search is done. */
  readonly next?: number
}

/** Most entries one page of an audit search looks at, matching or not. */
export const maxAuditScan = 5000

/**
 * Searches the log named `logName` by recorded time, in one index range scan of
 * `audit_entries (log_id, recorded_at, idx)`. A patient or entity filter is applied to the
 * entries of the time range as they are read, and a page looks at no more than
 * {@link maxAuditScan} entries: a page may therefore hold fewer events than `limit` — even none
 * — and still have a `next`, and searching a busy log by patient alone over a long time walks
 * all of that time's entries, page by page. An index of entries by patient and entity, written
 * with each append, would make such searches follow their results, at the price of more
 * writes on every append. Entries whose bodies were removed by retention are skipped.
 */
export async function searchAuditEvents(
  tx: Transaction,
  logName: string,
  search: AuditSearch,
): Promise<AuditSearchPage> {
  const head = await findAuditLog(tx, logName)
  const newestFirst = search.order === 'newest-first'

  let after: { recordedAt: string; index: number } | undefined
  if (search.after !== undefined) {
    const row = await tx
      .selectFrom('audit_entries')
      .select(['idx', 'recorded_at'])
      .where('log_id', '=', head.id)
      .where('idx', '=', search.after)
      .executeTakeFirst()
    if (row === undefined) {
      throw new WardError('ERR_INPUT_INVALID', 'cursor must be the value a next link carried', {
        details: { field: 'cursor' },
      })
    }
    after = { recordedAt: row.recorded_at, index: Number(row.idx) }
  }

  const filtered = search.patient !== undefined || search.entity !== undefined
  const scan = filtered ? maxAuditScan : search.limit + 1
  let select = tx
    .selectFrom('audit_entries')
    .select(['idx', 'recorded_at', 'body'])
    .where('log_id', '=', head.id)
  if (search.from !== undefined) select = select.where('recorded_at', '>=', search.from)
  if (search.to !== undefined) select = select.where('recorded_at', '<', search.to)
  if (after !== undefined) {
    const { recordedAt, index } = after
    select = select.where((where) =>
      where.or([
        where('recorded_at', newestFirst ? '<' : '>', recordedAt),
        where.and([
          where('recorded_at', '=', recordedAt),
          where('idx', newestFirst ? '<' : '>', index),
        ]),
      ]),
    )
  }
  const rows = await select
    .orderBy('recorded_at', newestFirst ? 'desc' : 'asc')
    .orderBy('idx', newestFirst ? 'desc' : 'asc')
    .limit(scan)
    .execute()

  const events: { index: number; event: AuditEvent }[] = []
  let lastLooked: number | undefined
  for (const row of rows) {
    if (events.length === search.limit) {
      return { events, next: lastLooked as number }
    }
    lastLooked = Number(row.idx)
    if (row.body.length === 0) continue
    const event = JSON.parse(utf8Decode(row.body)) as AuditEvent
    if (matches(event, search)) events.push({ index: Number(row.idx), event })
  }
  // The scan stopped at its bound, not at the end of the range: there may be more.
  if (rows.length === scan && filtered && lastLooked !== undefined) {
    return { events, next: lastLooked }
  }
  return { events }
}

function matches(event: AuditEvent, search: AuditSearch): boolean {
  if (search.patient !== undefined && !event.entity.some((e) => e.patient === search.patient)) {
    return false
  }
  if (search.entity !== undefined) {
    const wanted = search.entity
    return event.entity.some(
      (e) => e.what === wanted || `${e.type}/${e.what}` === wanted || e.patient === wanted,
    )
  }
  return true
}
