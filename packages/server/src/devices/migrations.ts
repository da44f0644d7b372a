import type { Migration } from 'kysely'

import type { Dialect } from '../store/store.js'

/**
 * The devices domain's tables (device models, devices, enrollment, patients and observations). Names start with 0004 so they run after
 * the foundation; a shipped migration is never edited, a change is a new one.
 */
export function devicesMigrations(_dialect: Dialect): Record<string, Migration> {
  return {}
}
