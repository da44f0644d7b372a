import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { readVectors } from '../test/vectors.js'
import type { Checkpoint } from './checkpoint.js'
import { formatCheckpoint, parseCheckpoint } from './checkpoint.js'
import { toHex } from './encoding.js'
import { parseNote, parseVerifierKey, verifyNote } from './note.js'

type CheckpointVector = {
  id: string
  kind: string
  vkey?: string
  signed_note: string
  expected?: {
    origin: string
    tree_size: number
    root_hash_hex: string
    extensions?: string[]
  }
}

const checkpointVectors = readVectors<{ vectors: CheckpointVector[] }>(
  'signed-note.json',
).vectors.filter((vector) => vector.expected !== undefined)

const root = 'CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I='

describe('parseCheckpoint', () => {
  it('covers every checkpoint vector with expected values', () => {
    assert.deepEqual(
      checkpointVectors.map((vector) => vector.id),
      ['c2sp-checkpoint-example', 'sumdb-production-checkpoint', 'sigsum-checkpoint'],
    )
  })

  for (const vector of checkpointVectors) {
    it(`reads the ${vector.id} checkpoint and writes it back unchanged`, () => {
      // Only vectors with a published key are verified; the C2SP example has none.
      const text =
        vector.vkey === undefined
          ? parseNote(vector.signed_note).text
          : verifyNote(vector.signed_note, [parseVerifierKey(vector.vkey)]).text
      const checkpoint = parseCheckpoint(text)
      const expected = vector.expected!
      assert.equal(checkpoint.origin, expected.origin)
      assert.equal(checkpoint.size, expected.tree_size)
      assert.equal(toHex(checkpoint.rootHash), expected.root_hash_hex)
      assert.deepEqual(checkpoint.extensions, expected.extensions ?? [])
      assert.equal(formatCheckpoint(checkpoint), text)
    })
  }

  it('keeps extension lines in order', () => {
    const text = `example.com/log\n5\n${root}\nfirst extension\nsecond\n`
    assert.deepEqual(parseCheckpoint(text).extensions, ['first extension', 'second'])
    assert.equal(formatCheckpoint(parseCheckpoint(text)), text)
  })

  it('accepts the largest safe tree size and the empty tree', () => {
    assert.equal(parseCheckpoint(`log\n9007199254740991\n${root}\n`).size, Number.MAX_SAFE_INTEGER)
    assert.equal(parseCheckpoint(`log\n0\n${root}\n`).size, 0)
  })

  const rejected: [string, string, number][] = [
    ['no final newline', `log\n5\n${root}`, 3],
    ['an empty origin', `\n5\n${root}\n`, 1],
    ['a missing root hash line', 'log\n5\n', 3],
    ['a size with a leading zero', `log\n05\n${root}\n`, 2],
    ['a signed size', `log\n+5\n${root}\n`, 2],
    ['a size with a decimal point', `log\n5.0\n${root}\n`, 2],
    ['a size beyond the largest safe integer', `log\n9007199254740992\n${root}\n`, 2],
    ['an empty size', `log\n\n${root}\n`, 2],
    ['a root hash of 31 bytes', 'log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxqw==\n', 3],
    ['a root hash in unpadded base64', `log\n5\n${root.slice(0, -1)}\n`, 3],
    ['a root hash in URL-safe base64', `log\n5\n${root.replace('/', '_')}\n`, 3],
    ['an empty extension line', `log\n5\n${root}\next\n\n`, 5],
    ['a carriage return', `log\r\n5\n${root}\n`, 1],
  ]
  for (const [what, text, line] of rejected) {
    it(`rejects a checkpoint with ${what}, naming line ${line}`, () => {
      assert.throws(() => parseCheckpoint(text), {
        code: 'ERR_CHECKPOINT_MALFORMED',
        message: new RegExp(`^checkpoint line ${line}: `),
      })
    })
  }
})

describe('formatCheckpoint', () => {
  const valid: Checkpoint = {
    origin: 'example.com/log',
    size: 3,
    rootHash: new Uint8Array(32),
    extensions: [],
  }

  it('writes origin, size and root hash lines', () => {
    assert.equal(
      formatCheckpoint(valid),
      'example.com/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n',
    )
  })

  it('refuses checkpoints it could not read back', () => {
    const invalid: Checkpoint[] = [
      { ...valid, origin: '' },
      { ...valid, origin: 'two\nlines' },
      { ...valid, size: -1 },
      { ...valid, size: 1.5 },
      { ...valid, size: 2 ** 53 },
      { ...valid, rootHash: new Uint8Array(31) },
      { ...valid, extensions: [''] },
      { ...valid, extensions: ['a\nb'] },
      { ...valid, extensions: ['tab\there'] },
    ]
    for (const checkpoint of invalid) {
      assert.throws(() => formatCheckpoint(checkpoint), { code: 'ERR_CHECKPOINT_MALFORMED' })
    }
  })
})
