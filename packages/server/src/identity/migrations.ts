import type { Migration } from 'kysely'

import type { Dialect } from '../store/store.js'

/**
 * The identity domain's tables (certificate authorities and device certificates). Names start with 0003 so they run after
 * the foundation; a shipped migration is never edited, a change is a new one.
 */
export function identityMigrations(_dialect: Dialect): Record<string, Migration> {
  return {}
}
