import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { buildTileLog, sampleEntries, signedCheckpoint } from '../test/tile-log.js'
import type { TileLog } from '../test/tile-log.js'
import { buildTreeStore } from '../test/tree-store.js'
import { utf8Decode, utf8Encode } from './encoding.js'
import { isWardError } from './errors.js'
import type { WardErrorCode } from './errors.js'
import { formatCheckpoint } from './checkpoint.js'
import { treeRoot } from './merkle.js'
import { ed25519Signer, signNote } from './note.js'
import { decodeEntryBundle, encodeEntryBundle } from './tiles.js'
import { verifyTileLog } from './verify-log.js'

const origin = 'ward.example/audit/org-1'
const signer = ed25519Signer(origin, new Uint8Array(32).fill(42))
const verifierKey = signer.verifierKey

function verify(files: ReadonlyMap<string, Uint8Array>, previousCheckpoint?: string) {
  return verifyTileLog({ read: (path) => files.get(path), verifierKey, previousCheckpoint })
}

/** A seeded generator, so a failing size can be replayed. */
function seededRandom(seed: number): () => number {
  let state = seed
  return () => {
    state = (state * 1103515245 + 12345) % 2147483648
    return state / 2147483648
  }
}

function assertFault(
  files: ReadonlyMap<string, Uint8Array>,
  code: WardErrorCode,
  message: RegExp,
  details: Record<string, string | number> = {},
): void {
  assert.throws(
    () => verify(files),
    (error) => {
      assert.ok(isWardError(error), `a WardError, not ${String(error)}`)
      assert.equal(error.code, code, error.message)
      assert.match(error.message, message)
      for (const [key, value] of Object.entries(details))
        assert.equal(error.details[key], value, key)
      return true
    },
  )
}

function damaged(
  log: TileLog,
  path: string,
  change: (bytes: Uint8Array) => Uint8Array,
): Map<string, Uint8Array> {
  const files = new Map(log.files)
  const bytes = files.get(path)
  assert.ok(bytes, `the log has ${path}`)
  files.set(path, change(bytes.slice()))
  return files
}

function flipByte(offset: number): (bytes: Uint8Array) => Uint8Array {
  return (bytes) => {
    bytes[offset]! ^= 0x01
    return bytes
  }
}

describe('verifyTileLog', () => {
  const random = seededRandom(2024)
  const randomSizes = [1, 2, 3].map(() => 2 + Math.floor(random() * 3000))
  for (const size of [0, 1, 255, 256, 257, 65536 + 300, ...randomSizes]) {
    it(`verifies an intact log of ${size} entries`, () => {
      const log = buildTileLog(sampleEntries(size), signer)
      assert.deepEqual(verify(log.files), {
        origin,
        size,
        rootHash: treeRoot(size, log.store.getNode),
      })
    })
  }

  // Three full level-0 tiles and a partial one; level 1 is a partial tile of width 3.
  const log = buildTileLog(sampleEntries(3 * 256 + 10), signer)

  it('rejects a checkpoint whose root hash was altered after signing', () => {
    const text = utf8Decode(log.files.get('checkpoint')!)
    const rootLine = text.split('\n')[2]!
    const altered = rootLine.startsWith('A') ? `B${rootLine.slice(1)}` : `A${rootLine.slice(1)}`
    const files = new Map(log.files).set('checkpoint', utf8Encode(text.replace(rootLine, altered)))
    assertFault(files, 'ERR_NOTE_UNVERIFIED', /^checkpoint: invalid signature for key/, {
      path: 'checkpoint',
    })
  })

  it('rejects a correctly signed checkpoint whose root hash the tiles do not give', () => {
    const wrongRoot = new Uint8Array(32).fill(9)
    const body = formatCheckpoint({ origin, size: log.size, rootHash: wrongRoot, extensions: [] })
    const files = new Map(log.files).set('checkpoint', utf8Encode(signNote(body, signer)))
    assertFault(files, 'ERR_LOG_INVALID', /^checkpoint: root hash does not match/, {
      path: 'checkpoint',
    })
  })

  it('rejects a checkpoint with an altered signature', () => {
    const text = utf8Decode(log.files.get('checkpoint')!)
    const offset = text.lastIndexOf(' ') + 20
    const swapped = text[offset] === 'A' ? 'B' : 'A'
    const altered = `${text.slice(0, offset)}${swapped}${text.slice(offset + 1)}`
    const files = new Map(log.files).set('checkpoint', utf8Encode(altered))
    assertFault(files, 'ERR_NOTE_UNVERIFIED', /^checkpoint: /)
  })

  it('rejects a checkpoint signed by another key', () => {
    const other = ed25519Signer(origin, new Uint8Array(32).fill(43))
    const files = new Map(log.files).set(
      'checkpoint',
      utf8Encode(signedCheckpoint(log.size, log.store, other)),
    )
    assertFault(files, 'ERR_NOTE_UNVERIFIED', /^checkpoint: note has no verifiable signatures/)
  })

  it('rejects a checkpoint whose origin is not the log key name', () => {
    const rootHash = treeRoot(log.size, log.store.getNode)
    const body = formatCheckpoint({
      origin: 'other.example/log',
      size: log.size,
      rootHash,
      extensions: [],
    })
    const files = new Map(log.files).set('checkpoint', utf8Encode(signNote(body, signer)))
    assertFault(
      files,
      'ERR_LOG_INVALID',
      /^checkpoint: origin "other.example\/log" is not the log key name/,
    )
  })

  it('rejects a malformed checkpoint body, naming its line', () => {
    const body = `${origin}\n0778\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n`
    const files = new Map(log.files).set('checkpoint', utf8Encode(signNote(body, signer)))
    assertFault(files, 'ERR_CHECKPOINT_MALFORMED', /^checkpoint: checkpoint line 2: /, { line: 2 })
  })

  it('rejects an altered entry, naming the bundle, the entry and the tile hash', () => {
    const files = damaged(log, 'tile/entries/001', flipByte(2 + 5))
    assertFault(
      files,
      'ERR_LOG_INVALID',
      /^tile\/entries\/001: entry 256 does not match tile\/0\/001 hash 0$/,
      {
        path: 'tile/entries/001',
        entryIndex: 256,
        hashIndex: 0,
        tile: 'tile/0/001',
      },
    )
  })

  it('rejects an altered level-0 tile hash, naming the tile and the entry it no longer matches', () => {
    const files = damaged(log, 'tile/0/002', flipByte(7 * 32 + 31))
    assertFault(
      files,
      'ERR_LOG_INVALID',
      /^tile\/entries\/002: entry 519 does not match tile\/0\/002 hash 7$/,
      {
        tile: 'tile/0/002',
        hashIndex: 7,
        entryIndex: 519,
      },
    )
  })

  it('rejects an altered hash in the partial level-0 tile', () => {
    const files = damaged(log, 'tile/0/003.p/10', flipByte(9 * 32))
    assertFault(files, 'ERR_LOG_INVALID', /entry 777 does not match tile\/0\/003\.p\/10 hash 9$/)
  })

  it('rejects an altered level-1 tile hash, naming the tile, the hash and the tile below', () => {
    const files = damaged(log, 'tile/1/000.p/3', flipByte(32 + 4))
    assertFault(
      files,
      'ERR_LOG_INVALID',
      /^tile\/1\/000\.p\/3: hash 1 does not match the tree hash of tile\/0\/001$/,
      {
        path: 'tile/1/000.p/3',
        hashIndex: 1,
      },
    )
  })

  it('rejects an altered level-2 tile hash in a log with three tile levels', () => {
    const big = buildTileLog(sampleEntries(65536 + 300, 2), signer)
    const files = damaged(big, 'tile/2/000.p/1', flipByte(0))
    assertFault(
      files,
      'ERR_LOG_INVALID',
      /^tile\/2\/000\.p\/1: hash 0 does not match the tree hash of tile\/1\/000$/,
    )
  })

  for (const path of [
    'checkpoint',
    'tile/entries/002',
    'tile/0/001',
    'tile/0/003.p/10',
    'tile/1/000.p/3',
  ]) {
    it(`rejects a log missing ${path}`, () => {
      const files = new Map(log.files)
      files.delete(path)
      assertFault(
        files,
        'ERR_LOG_INVALID',
        new RegExp(`^${path.replaceAll('.', '\\.')}: file is missing$`),
        { path },
      )
    })
  }

  it('rejects a truncated entry bundle, naming the entry cut short', () => {
    const files = damaged(log, 'tile/entries/001', (bytes) => bytes.subarray(0, -1))
    assertFault(
      files,
      'ERR_LOG_INVALID',
      /^tile\/entries\/001: entry bundle ends inside entry 255/,
      {
        entryIndex: 511,
      },
    )
  })

  it('rejects a bundle with two entries swapped, naming the first one out of place', () => {
    const files = damaged(log, 'tile/entries/000', (bytes) => {
      const entries = decodeEntryBundle(bytes)
      ;[entries[3], entries[4]] = [entries[4]!, entries[3]!]
      return encodeEntryBundle(entries)
    })
    assertFault(
      files,
      'ERR_LOG_INVALID',
      /^tile\/entries\/000: entry 3 does not match tile\/0\/000 hash 3$/,
    )
  })

  it('rejects a bundle holding more entries than its width', () => {
    const files = damaged(log, 'tile/entries/003.p/10', (bytes) => {
      return encodeEntryBundle([...decodeEntryBundle(bytes), utf8Encode('extra')])
    })
    assertFault(
      files,
      'ERR_LOG_INVALID',
      /^tile\/entries\/003\.p\/10: holds 11 entries, expected 10$/,
    )
  })

  it('rejects a tile of the wrong length', () => {
    const files = damaged(log, 'tile/0/003.p/10', (bytes) => bytes.subarray(0, 9 * 32))
    assertFault(files, 'ERR_LOG_INVALID', /^tile\/0\/003\.p\/10: holds 288 bytes, expected 320$/)
  })

  describe('with a previous checkpoint', () => {
    it('accepts an earlier checkpoint of the same log', () => {
      for (const size of [0, 1, 255, 256, 300, log.size]) {
        const previous = signedCheckpoint(size, log.store, signer)
        assert.equal(verify(log.files, previous).size, log.size, `previous size ${size}`)
      }
    })

    it('rejects a checkpoint of a fork that differs from this log', () => {
      const entries = sampleEntries(log.size)
      entries[100] = utf8Encode('{"forked":true}')
      const fork = buildTreeStore(entries)
      const previous = signedCheckpoint(300, fork, signer)
      assert.throws(() => verify(log.files, previous), {
        code: 'ERR_LOG_INVALID',
        message: /^previous checkpoint: root hash at size 300 differs from the tiles/,
      })
    })

    it('rejects an earlier checkpoint larger than the current one', () => {
      const longer = buildTreeStore(sampleEntries(log.size + 1))
      const previous = signedCheckpoint(log.size + 1, longer, signer)
      assert.throws(() => verify(log.files, previous), {
        code: 'ERR_LOG_INVALID',
        message: /^previous checkpoint: size 779 is larger than the current size 778/,
      })
    })

    it('rejects an earlier checkpoint signed by another key or for another origin', () => {
      const stranger = ed25519Signer(origin, new Uint8Array(32).fill(1))
      assert.throws(() => verify(log.files, signedCheckpoint(10, log.store, stranger)), {
        code: 'ERR_NOTE_UNVERIFIED',
        message: /^previous checkpoint: /,
      })
      const body = formatCheckpoint({
        origin: 'elsewhere.example/log',
        size: 10,
        rootHash: treeRoot(10, log.store.getNode),
        extensions: [],
      })
      assert.throws(() => verify(log.files, signNote(body, signer)), {
        code: 'ERR_LOG_INVALID',
        message: /^previous checkpoint: origin /,
      })
    })
  })
})
