import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import pg from 'pg'

import { loadConfig, type WardConfig } from '../src/config/index.js'

/**
 * The databases every store test runs on. SQLite always; PostgreSQL at
 * `WARD_TEST_POSTGRES_URL` (default: the local server's `test` database). Setting it to `skip`
 * skips the PostgreSQL runs, visibly; an unreachable PostgreSQL fails them.
 */
export const postgresUrl =
  process.env['WARD_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test'

export interface TestDatabase {
  readonly dialect: 'sqlite' | 'postgres'
  /** A store URL private to one test. */
  readonly url: string
  drop(): Promise<void>
}

export const dialects = [
  { dialect: 'sqlite' as const, skip: false as const },
  {
    dialect: 'postgres' as const,
    skip: postgresUrl === 'skip' ? 'WARD_TEST_POSTGRES_URL=skip' : (false as const),
  },
]

/** A fresh, empty database: a new SQLite file, or a new PostgreSQL schema. */
export async function freshDatabase(
  dialect: 'sqlite' | 'postgres',
  directory: string,
): Promise<TestDatabase> {
  if (dialect === 'sqlite') {
    return { dialect, url: `sqlite:${join(directory, 'ward.db')}`, drop: async () => undefined }
  }
  const schema = `ward_test_${randomBytes(6).toString('hex')}`
  const client = new pg.Client({ connectionString: postgresUrl })
  await client.connect()
  await client.query(`create schema ${schema}`)
  await client.end()
  const url = new URL(postgresUrl)
  url.searchParams.set('options', `-c search_path=${schema}`)
  return {
    dialect,
    url: url.toString(),
    drop: async () => {
      const cleanup = new pg.Client({ connectionString: postgresUrl })
      await cleanup.connect()
      await underMigrationLock(cleanup, () => cleanup.query(`drop schema ${schema} cascade`))
      await cleanup.end()
    },
  }
}

/** A temporary directory removed by the returned function. */
export function temporaryDirectory(): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), 'ward-test-'))
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) }
}

/** Environment variables for a Ward whose home is `home` and whose store is `url`. */
export function testEnvironment(home: string, url: string): Record<string, string> {
  return {
    WARD_HOME: home,
    WARD_DATABASE_URL: url,
    WARD_HOST_NAME: 'ward.test',
    WARD_HTTP_PORT: '0',
    WARD_DEVICE_PORT: '0',
    WARD_LOG_LEVEL: 'silent',
  }
}

/** A configuration for a Ward whose home is `home` and whose store is `url`. */
export function testConfig(
  home: string,
  url: string,
  extra: Record<string, string> = {},
): WardConfig {
  return loadConfig({ env: { ...testEnvironment(home, url), ...extra } })
}

/**
 * Runs `work` on `client` under the advisory lock Ward's migrations take, for test DDL (making
 * or dropping schemas): a migrator inspecting every schema's tables must not see one change
 * halfway.
 */
export async function underMigrationLock<T>(client: pg.Client, work: () => Promise<T>): Promise<T> {
  await client.query(`select pg_advisory_lock(hashtext('ward-migrations'))`)
  try {
    return await work()
  } finally {
    await client.query(`select pg_advisory_unlock(hashtext('ward-migrations'))`)
  }
}
