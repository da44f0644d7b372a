import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'

import { WardError } from '@ward/core'

import { temporaryDirectory } from '../../test/support.js'
import { configSummary, loadConfig, settingsReference } from './index.js'

const invalid = (pattern: RegExp) => (error: unknown) =>
  error instanceof WardError && error.code === 'ERR_CONFIG_INVALID' && pattern.test(error.message)

test('defaults to an embedded SQLite store in ./.ward with TLS 1.3', () => {
  const config = loadConfig({ env: {}, cwd: '/srv/ward' })
  assert.equal(config.home, '/srv/ward/.ward')
  assert.equal(config.database.url, 'sqlite:/srv/ward/.ward/ward.db')
  assert.equal(config.http.tlsMinVersion, 'TLSv1.3')
  assert.equal(config.http.port, 8443)
  assert.equal(config.http.host, '127.0.0.1')
})

test('reads WARD_* variables over a JSON file over defaults', () => {
  const directory = temporaryDirectory()
  try {
    const file = join(directory.path, 'ward.json')
    writeFileSync(
      file,
      JSON.stringify({ http: { port: 9000, host: '0.0.0.0' }, hostName: 'ward.example.org' }),
    )
    const config = loadConfig({
      env: { WARD_CONFIG: file, WARD_HTTP_PORT: '9443' },
      cwd: directory.path,
    })
    assert.equal(config.http.port, 9443)
    assert.equal(config.http.host, '0.0.0.0')
    assert.equal(config.hostName, 'ward.example.org')
  } finally {
    directory.remove()
  }
})

test('names the setting, its source and what is allowed when a value is bad', () => {
  assert.throws(
    () => loadConfig({ env: { WARD_HTTP_PORT: '70000' } }),
    invalid(
      /http\.port from environment variable WARD_HTTP_PORT is "70000"; allowed: a whole number from 0 to 65535/,
    ),
  )
  assert.throws(
    () => loadConfig({ env: { WARD_HTTP_TLS_MIN_VERSION: 'TLSv1.1' } }),
    invalid(/allowed: TLSv1\.3, TLSv1\.2/),
  )
  assert.throws(() => loadConfig({ env: { WARD_HOST_NAME: 'Not A Host' } }), invalid(/hostName/))
})

test('refuses unknown settings, so a misspelt variable does not pass unnoticed', () => {
  assert.throws(
    () => loadConfig({ env: { WARD_HTTP_PROT: '1' } }),
    invalid(/unknown setting WARD_HTTP_PROT/),
  )
  const directory = temporaryDirectory()
  try {
    const file = join(directory.path, 'ward.json')
    writeFileSync(file, JSON.stringify({ http: { prot: 1 } }))
    assert.throws(
      () => loadConfig({ env: { WARD_CONFIG: file } }),
      invalid(/unknown setting http\.prot/),
    )
    writeFileSync(file, '{ not json')
    assert.throws(() => loadConfig({ env: { WARD_CONFIG: file } }), invalid(/not readable JSON/))
  } finally {
    directory.remove()
  }
})

test('never echoes a database URL, which may hold a password', () => {
  const secret = 'postgres://ward:hunter2-secret@db.internal:5432/ward'
  assert.throws(
    () => loadConfig({ env: { WARD_DATABASE_URL: 'mysql://ward:hunter2-secret@db' } }),
    (error: unknown) => error instanceof WardError && !error.message.includes('hunter2'),
  )
  const summary = JSON.stringify(configSummary(loadConfig({ env: { WARD_DATABASE_URL: secret } })))
  assert.ok(!summary.includes('hunter2'))
  assert.match(summary, /postgres:\/\/db\.internal:5432\/ward/)
})

test('documents every setting in the reference table', () => {
  const reference = settingsReference()
  for (const variable of [
    'WARD_HOME',
    'WARD_DATABASE_URL',
    'WARD_HTTP_TLS_MIN_VERSION',
    'WARD_HOST_NAME',
  ]) {
    assert.match(reference, new RegExp(`\\| \`${variable}\` \\|`))
  }
})

test('refuses a break-glass default longer than the maximum', () => {
  assert.equal(loadConfig({ env: {} }).access.breakGlassDefaultMinutes, 60)
  assert.throws(
    () =>
      loadConfig({
        env: {
          WARD_ACCESS_BREAK_GLASS_DEFAULT_MINUTES: '120',
          WARD_ACCESS_BREAK_GLASS_MAX_MINUTES: '90',
        },
      }),
    { code: 'ERR_CONFIG_INVALID', message: /breakGlassDefaultMinutes \(120\).*\(90\)/ },
  )
})
