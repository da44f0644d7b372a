import type { Migration } from 'kysely'

import type { Dialect } from '../store/store.js'

/**
 * The keys domain's tables (key-encryption keys and data keys). Names start with 0002 so they run after
 * the foundation; a shipped migration is never edited, a change is a new one.
 */
export function keysMigrations(_dialect: Dialect): Record<string, Migration> {
  return {}
}
