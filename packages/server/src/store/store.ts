import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'

import SqliteDatabase from 'better-sqlite3'
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely'
import pg from 'pg'

import { WardError } from '@ward/core'

import { redactDatabaseUrl } from '../config/index.js'
import type { KeyWrappingProvider } from '../keys/master-key.js'
import { WardMigrations } from './migrations.js'
import type { Database } from './schema.js'

/** The two databases Ward runs on. */
export type Dialect = 'sqlite' | 'postgres'

/**
 * A database handle bound to one transaction. Domain functions take one of these as their
 * first argument, so the caller decides what commits together — in particular, an operation
 * and its audit event.
 */
export type Transaction = Kysely<Database>

/** An open database with Ward's schema migrated to the latest version. */
export interface Store {
  readonly dialect: Dialect
  /** Credential-free description, safe for logs. */
  readonly description: string
  /** For reads that need no transaction. */
  readonly db: Kysely<Database>
  /**
   * Runs `work` in one read-write transaction and commits when it resolves; rolls back and
   * rethrows when it rejects. On SQLite the write lock is taken at the start (BEGIN
   * IMMEDIATE), so two processes sharing the file wait for each other instead of failing
   * half-way.
   */
  transaction<T>(work: (tx: Transaction) => Promise<T>): Promise<T>
  close(): Promise<void>
}

/** How to reach the database. */
export interface StoreOptions {
  /** `sqlite:<absolute file>` or `postgres://…`. */
  readonly url: string
  readonly busyTimeoutMs?: number
  readonly poolSize?: number
  /**
   * The master key, for migrations that authenticate rows already stored (see
   * `WardMigrations`). Without it, such a migration refuses to run on a database that holds
   * rows for it to key; an empty database needs none.
   */
  readonly keys?: KeyWrappingProvider
}

/** Opens the store named by `options.url` and brings its schema up to date. */
export async function openStore(options: StoreOptions): Promise<Store> {
  const store = options.url.startsWith('sqlite:')
    ? openSqlite(options)
    : await openPostgres(options)
  try {
    await migrateRetryingSchemaChurn(store, options.keys)
  } catch (error) {
    await store.close()
    throw error
  }
  return store
}

function openSqlite(options: StoreOptions): Store {
  const file = options.url.slice('sqlite:'.length)
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true })

  // The file holds ePHI: only Ward's own user may read it (SQLite gives its WAL the same mode).
  if (file !== ':memory:' && !existsSync(file)) closeSync(openSync(file, 'wx', 0o600))
  let database: SqliteDatabase.Database
  try {
    database = new SqliteDatabase(file, { timeout: options.busyTimeoutMs ?? 5000 })
  } catch (cause) {
    throw new WardError(
      'ERR_STORE_UNAVAILABLE',
      `cannot open SQLite database ${file} (WARD_DATABASE_URL): ${(cause as Error).message}`,
      { cause },
    )
  }
  database.pragma('journal_mode = WAL')
  // FULL: a commit is on disk before Ward acknowledges it, which audit records and readings need.
  database.pragma('synchronous = FULL')
  database.pragma('foreign_keys = ON')
  database.pragma(`busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? 5000)}`)

  const db = new Kysely<Database>({
    dialect: new SqliteDialect({ database: withStatementCache(database) }),
  })

  return {
    dialect: 'sqlite',
    description: options.url,
    db,
    transaction: (work) =>
      db.connection().execute(async (connection) => {
        await sql`begin immediate`.execute(connection)
        try {
          const result = await work(connection)
          await sql`commit`.execute(connection)
          return result
        } catch (error) {
          if (database.inTransaction) await sql`rollback`.execute(connection)
          throw error
        }
      }),
    close: () => db.destroy(),
  }
}

/**
 * Kysely prepares every statement anew; Ward's queries repeat, so prepared statements are kept
 * by their SQL text. The cache is bounded: SQL text varies only with the number of bound
 * values in a list, which Ward caps.
 */
function withStatementCache(database: SqliteDatabase.Database): SqliteDatabase.Database {
  const statements = new Map<string, SqliteDatabase.Statement>()
  const prepare = (source: string) => {
    let statement = statements.get(source)
    if (statement === undefined) {
      statement = database.prepare(source)
      if (statements.size >= 500) statements.clear()
      statements.set(source, statement)
    }
    return statement
  }
  return new Proxy(database, {
    get(target, property, receiver) {
      if (property === 'prepare') return prepare
      const value: unknown = Reflect.get(target, property, receiver)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

async function openPostgres(options: StoreOptions): Promise<Store> {
  const description = redactDatabaseUrl(options.url)
  // 64-bit integers come back as numbers; Ward's counters stay far below 2^53.
  pg.types.setTypeParser(pg.types.builtins.INT8, (text) => Number(text))

  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: 10_000,
  })
  // A pooled connection that dies while idle must not crash the process.
  pool.on('error', () => undefined)

  try {
    const client = await pool.connect()
    client.release()
  } catch (cause) {
    await pool.end()
    // PostgreSQL's own reasons (authentication failed, no such database, TLS required) name
    // roles and databases, never data, and are what an operator needs to fix the URL.
    throw new WardError(
      'ERR_STORE_UNAVAILABLE',
      `cannot use PostgreSQL at ${description} (WARD_DATABASE_URL): ${(cause as Error).message}`,
      { cause, details: { database: description } },
    )
  }

  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
  return {
    dialect: 'postgres',
    description,
    db,
    transaction: (work) => db.transaction().execute(work),
    close: () => db.destroy(),
  }
}

/**
 * On PostgreSQL, migrations run under one advisory lock per database, so two Ward processes
 * starting together — or two schemas of one database migrating at once — take turns: Kysely's
 * migrator inspects every schema's tables, and DDL running in another schema at that moment
 * makes that inspection fail. A stray SQLSTATE 3F000 (another schema dropped meanwhile) is
 * retried for the same reason.
 */
async function migrateRetryingSchemaChurn(
  store: Store,
  keys: KeyWrappingProvider | undefined,
): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      if (store.dialect !== 'postgres') return await migrate(store, store.db, keys)
      return await store.db.connection().execute(async (connection) => {
        const lock = sql`hashtext('ward-migrations')`
        await sql`select pg_advisory_lock(${lock})`.execute(connection)
        try {
          await migrate(store, connection, keys)
        } finally {
          await sql`select pg_advisory_unlock(${lock})`.execute(connection)
        }
      })
    } catch (error) {
      const code = ((error as { cause?: { code?: string } }).cause ?? {}).code
      if (store.dialect !== 'postgres' || code !== '3F000' || attempt >= 5) throw error
    }
  }
}

async function migrate(
  store: Store,
  db: Kysely<Database>,
  keys: KeyWrappingProvider | undefined,
): Promise<void> {
  // On PostgreSQL Kysely must be told the schema its own tables live in, or it may find
  // another schema's migration tables on the search path and believe they are its own.
  const schema =
    store.dialect === 'postgres'
      ? (await sql<{ schema: string }>`select current_schema() as schema`.execute(db)).rows[0]
          ?.schema
      : undefined
  const migrator = new Migrator({
    db,
    provider: new WardMigrations(store.dialect, keys),
    ...(schema === undefined ? {} : { migrationTableSchema: schema }),
  })
  const { error, results } = await migrator.migrateToLatest()
  if (error !== undefined) {
    const failed = results?.find((result) => result.status === 'Error')?.migrationName
    throw new WardError(
      'ERR_STORE_UNAVAILABLE',
      `database migration ${failed ?? '(before any migration)'} failed on ${store.description}: ` +
        `${(error as Error).message}`,
      { cause: error },
    )
  }
}
