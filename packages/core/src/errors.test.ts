import assert from 'node:assert/strict'
import { test } from 'node:test'

import { withArticle } from './errors.js'

test('names a state with the article English gives it', () => {
  assert.equal(withArticle('active'), 'an active')
  assert.equal(withArticle('aborted'), 'an aborted')
  assert.equal(withArticle('suspended'), 'a suspended')
  assert.equal(withArticle('decommissioned'), 'a decommissioned')
})
