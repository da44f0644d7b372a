export { CommitGroup } from './commit-group.js'
export type { Database } from './schema.js'
export {
  openStore,
  type Dialect,
  type Store,
  type StoreOptions,
  type Transaction,
} from './store.js'
