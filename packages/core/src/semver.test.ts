import assert from 'node:assert/strict'
import { test } from 'node:test'

import { compareSemanticVersions, isSemanticVersion, parseSemanticVersion } from './semver.js'

test('orders versions by Semantic Versioning precedence', () => {
  const ordered = [
    '1.0.0-alpha',
    '1.0.0-alpha.1',
    '1.0.0-alpha.beta',
    '1.0.0-beta',
    '1.0.0-beta.2',
    '1.0.0-beta.11',
    '1.0.0-rc.1',
    '1.0.0',
    '1.2.0',
    '1.10.0',
    '2.0.0',
  ]
  for (let index = 1; index < ordered.length; index++) {
    const before = ordered[index - 1] as string
    const after = ordered[index] as string
    assert.ok(compareSemanticVersions(before, after) < 0, `${before} < ${after}`)
    assert.ok(compareSemanticVersions(after, before) > 0, `${after} > ${before}`)
  }
  assert.equal(compareSemanticVersions('1.2.0+build.7', '1.2.0'), 0)
})

test('refuses what is not a semantic version, naming the field', () => {
  for (const text of ['1.2', '01.2.0', '1.2.0-', 'v1.2.0', '1.2.0-01', '', '1.2.0 ']) {
    assert.equal(isSemanticVersion(text), false, text)
  }
  assert.throws(() => parseSemanticVersion('1.2', 'minVersion'), /minVersion must be a semantic/)
})
