import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { buildTreeStore } from '../test/tree-store.js'
import { fromHex, toHex } from './encoding.js'
import { isWardError } from './errors.js'
import type { TileId } from './tiles.js'
import {
  MAX_ENTRY_SIZE,
  TILE_WIDTH,
  decodeEntryBundle,
  encodeEntryBundle,
  entryBundlePath,
  entryBundlesForSize,
  nodeFromTiles,
  parseEntryBundlePath,
  parseTilePath,
  tileFromNodes,
  tilePath,
  tilesForSize,
} from './tiles.js'

const isLogError = (error: unknown): boolean => isWardError(error, 'ERR_LOG_INVALID')
const isInputError = (error: unknown): boolean => isWardError(error, 'ERR_INPUT_INVALID')

describe('tile paths', () => {
  it('writes tile indexes in 3-digit groups with x on all but the last', () => {
    assert.equal(tilePath({ level: 0, index: 1234067, width: 256 }), 'tile/0/x001/x234/067')
    assert.equal(tilePath({ level: 2, index: 5, width: 256 }), 'tile/2/005')
    assert.equal(tilePath({ level: 1, index: 0, width: 17 }), 'tile/1/000.p/17')
    assert.equal(tilePath({ level: 63, index: 1000, width: 1 }), 'tile/63/x001/000.p/1')
    assert.equal(entryBundlePath(1234067, 256), 'tile/entries/x001/x234/067')
    assert.equal(entryBundlePath(5, 255), 'tile/entries/005.p/255')
    assert.equal(entryBundlePath(5), 'tile/entries/005')
  })

  it('rejects levels, indexes and widths outside the specification', () => {
    const bad: TileId[] = [
      { level: 64, index: 0, width: 256 },
      { level: -1, index: 0, width: 256 },
      { level: 0, index: -1, width: 256 },
      { level: 0, index: 0.5, width: 256 },
      { level: 0, index: 0, width: 0 },
      { level: 0, index: 0, width: 257 },
    ]
    for (const tile of bad) assert.throws(() => tilePath(tile), isInputError, JSON.stringify(tile))
  })

  it('reads back exactly the paths it writes', () => {
    const tiles: TileId[] = [
      { level: 0, index: 0, width: 256 },
      { level: 3, index: 1234067, width: 12 },
      { level: 10, index: Number.MAX_SAFE_INTEGER, width: 256 },
    ]
    for (const tile of tiles) assert.deepEqual(parseTilePath(tilePath(tile)), tile)
    assert.deepEqual(parseEntryBundlePath('tile/entries/x001/002.p/9'), { index: 1002, width: 9 })
  })

  it('rejects non-canonical tile paths', () => {
    for (const path of [
      'tile/0/x000/005',
      'tile/0/005.p/256',
      'tile/0/005.p/017',
      'tile/00/005',
      'tile/64/000',
      'tile/0/5',
      'tile/0/x005',
      'tile/0/005/',
      '/tile/0/005',
      'tile/entries/000',
    ]) {
      assert.throws(() => parseTilePath(path), isInputError, path)
    }
    assert.throws(() => parseEntryBundlePath('tile/entries/x000/001'), isInputError)
    assert.throws(() => parseEntryBundlePath('tile/0/001'), isInputError)
  })
})

describe('tiles of a tree', () => {
  it('lists the tiles of the 70,000-entry example of the specification', () => {
    const tiles = tilesForSize(70000)
    const level0 = tiles.filter((tile) => tile.level === 0)
    assert.equal(level0.filter((tile) => tile.width === TILE_WIDTH).length, 273)
    assert.deepEqual(level0.at(-1), { level: 0, index: 273, width: 112 })
    assert.deepEqual(
      tiles.filter((tile) => tile.level > 0),
      [
        { level: 1, index: 0, width: 256 },
        { level: 1, index: 1, width: 17 },
        { level: 2, index: 0, width: 1 },
      ],
    )
  })

  it('gives a tree of 256 entries a full level-0 tile and a level-1 tile of width 1', () => {
    assert.deepEqual(tilesForSize(256), [
      { level: 0, index: 0, width: 256 },
      { level: 1, index: 0, width: 1 },
    ])
    assert.deepEqual(tilesForSize(1), [{ level: 0, index: 0, width: 1 }])
    assert.deepEqual(tilesForSize(0), [])
  })

  it('lists the entry bundles of a tree', () => {
    assert.deepEqual(entryBundlesForSize(257), [
      { index: 0, width: 256 },
      { index: 1, width: 1 },
    ])
    assert.deepEqual(entryBundlesForSize(512), [
      { index: 0, width: 256 },
      { index: 1, width: 256 },
    ])
    assert.deepEqual(entryBundlesForSize(0), [])
    assert.throws(() => entryBundlesForSize(-1), isInputError)
  })
})

describe('entry bundles', () => {
  it('prefixes each entry with its big-endian uint16 length', () => {
    const bundle = encodeEntryBundle([fromHex('aa'), fromHex('bbcc')])
    assert.equal(toHex(bundle), '0001aa0002bbcc')
    assert.deepEqual(decodeEntryBundle(bundle), [fromHex('aa'), fromHex('bbcc')])
  })

  it('round-trips a full bundle with entries up to the largest size', () => {
    const entries = Array.from({ length: TILE_WIDTH }, (_, i) =>
      new Uint8Array(i === 0 ? MAX_ENTRY_SIZE : i + 1).fill(i),
    )
    assert.deepEqual(decodeEntryBundle(encodeEntryBundle(entries)), entries)
  })

  it('refuses to encode empty, oversized or too many entries', () => {
    assert.throws(() => encodeEntryBundle([]), isLogError)
    assert.throws(() => encodeEntryBundle([new Uint8Array(0)]), isLogError)
    assert.throws(() => encodeEntryBundle([new Uint8Array(MAX_ENTRY_SIZE + 1)]), isLogError)
    assert.throws(
      () => encodeEntryBundle(Array.from({ length: TILE_WIDTH + 1 }, () => new Uint8Array(1))),
      isLogError,
    )
  })

  const damaged: [string, string, number | undefined][] = [
    ['an empty bundle', '', undefined],
    ['a length cut short', '0001aa00', 1],
    ['an entry cut short', '0001aa0003bbcc', 1],
    ['an empty entry', '0001aa0000', 1],
  ]
  for (const [what, hex, entry] of damaged) {
    it(`rejects ${what}`, () => {
      assert.throws(
        () => decodeEntryBundle(fromHex(hex)),
        (error) => isWardError(error, 'ERR_LOG_INVALID') && error.details.entry === entry,
      )
    })
  }

  it('rejects a bundle of more than 256 entries', () => {
    const entries = Array.from({ length: TILE_WIDTH }, () => new Uint8Array(1))
    const bundle = encodeEntryBundle(entries)
    const oversized = new Uint8Array(bundle.length + 3)
    oversized.set(bundle)
    oversized.set([0, 1, 7], bundle.length)
    assert.throws(() => decodeEntryBundle(oversized), isLogError)
  })
})

describe('tiles and complete subtrees', () => {
  function tilesOf(size: number, getNode: (node: { level: number; index: number }) => Uint8Array) {
    const files = new Map<string, Uint8Array>()
    for (const tile of tilesForSize(size)) files.set(tilePath(tile), tileFromNodes(tile, getNode))
    return (tile: TileId): Uint8Array => {
      const bytes = files.get(tilePath(tile))
      if (bytes === undefined) throw new Error(`no tile ${tilePath(tile)}`)
      return bytes
    }
  }

  const leaves = Array.from({ length: 65536 + 300 }, (_, i) => Uint8Array.of(i & 0xff, i >> 8, 7))
  const store = buildTreeStore(leaves)

  it('reads every complete subtree of small trees back from their tiles', () => {
    for (const size of [1, 2, 3, 255, 256, 257, 511, 1000]) {
      const readTile = tilesOf(size, store.getNode)
      for (let level = 0; 2 ** level <= size; level++) {
        for (let index = 0; (index + 1) * 2 ** level <= size; index++) {
          const node = { level, index }
          assert.deepEqual(
            nodeFromTiles(node, size, readTile),
            store.getNode(node),
            `${size} ${level}/${index}`,
          )
        }
      }
    }
  })

  it('reads subtrees above one tile height from a tree with three tile levels', () => {
    const size = leaves.length
    const readTile = tilesOf(size, store.getNode)
    for (let level = 0; 2 ** level <= size; level++) {
      const count = Math.floor(size / 2 ** level)
      for (const index of new Set([0, 1, Math.floor(count / 2), count - 1])) {
        if (index < 0 || index >= count) continue
        const node = { level, index }
        assert.deepEqual(
          nodeFromTiles(node, size, readTile),
          store.getNode(node),
          `${level}/${index}`,
        )
      }
    }
  })

  it('asks for the partial tile a tree of the given size has', () => {
    const asked: string[] = []
    const readTile = tilesOf(300, store.getNode)
    nodeFromTiles({ level: 5, index: 8 }, 300, (tile) => {
      asked.push(tilePath(tile))
      return readTile(tile)
    })
    assert.deepEqual(asked, ['tile/0/001.p/44'])
  })

  it('rejects a node that is not complete in the tree', () => {
    const readTile = tilesOf(300, store.getNode)
    assert.throws(() => nodeFromTiles({ level: 2, index: 75 }, 300, readTile), {
      code: 'ERR_PROOF_RANGE',
    })
    assert.throws(() => nodeFromTiles({ level: 9, index: 0 }, 300, readTile), {
      code: 'ERR_PROOF_RANGE',
    })
  })

  it('rejects a tile of the wrong length, naming it', () => {
    assert.throws(() => nodeFromTiles({ level: 0, index: 0 }, 300, () => new Uint8Array(32)), {
      code: 'ERR_LOG_INVALID',
      message: /^tile\/0\/000: tile is 32 bytes, expected 8192$/,
    })
  })
})
