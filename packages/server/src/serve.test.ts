import assert from 'node:assert/strict'
import { test } from 'node:test'

import { loadConfig } from './config/index.js'
import { checkProductionReadiness } from './serve.js'

test('production refuses the self-signed certificate made by ward init', () => {
  const config = loadConfig({
    env: { WARD_ENVIRONMENT: 'production', WARD_HOST_NAME: 'ward.example.org' },
  })
  assert.throws(() => checkProductionReadiness(config), /WARD_HTTP_CERT_FILE/)
})

test('production refuses a host name that is not fully qualified', () => {
  const config = loadConfig({
    env: {
      WARD_ENVIRONMENT: 'production',
      WARD_HOST_NAME: 'localhost',
      WARD_HTTP_CERT_FILE: '/etc/ward/api.crt',
      WARD_HTTP_KEY_FILE: '/etc/ward/api.key',
    },
  })
  assert.throws(() => checkProductionReadiness(config), /fully qualified WARD_HOST_NAME/)
})

test('development accepts the defaults', () => {
  assert.doesNotThrow(() => checkProductionReadiness(loadConfig({ env: {} })))
})
