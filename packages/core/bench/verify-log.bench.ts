// Measures offline verification of a tile log of one million entries held in memory.
// Run: node --conditions=@ward/source --import tsx packages/core/bench/verify-log.bench.ts [size]
import {
  TILE_HEIGHT,
  TILE_WIDTH,
  concatBytes,
  ed25519Signer,
  encodeEntryBundle,
  entryBundlePath,
  entryBundlesForSize,
  formatCheckpoint,
  hashChildren,
  hashLeaf,
  nodeFromTiles,
  signNote,
  tilePath,
  tilesForSize,
  treeRoot,
  utf8Encode,
  verifyTileLog,
} from '../src/index.js'
import type { TileId } from '../src/index.js'

const size = Number(process.argv[2] ?? 1_000_000)
const origin = 'ward.example/audit/bench'
const signer = ed25519Signer(origin, new Uint8Array(32).fill(3))

/** An entry shaped and sized like a canonical JSON audit event (about 330 bytes). */
function entry(index: number): Uint8Array {
  return utf8Encode(
    JSON.stringify({
      action: 'R',
      agent: [{ network: '10.0.0.1', role: 'clinician', who: `user-${index % 977}` }],
      entity: [{ patient: `pseudonym-${(index * 7919) % 100003}`, what: `Observation/${index}` }],
      id: `evt-${index.toString(16).padStart(12, '0')}-4b1c-9f0e-2d7a5c3e8b61`,
      outcome: 'success',
      purposeOfUse: 'TREAT',
      requestId: `req-${index}`,
      type: 'rest',
      when: '2025-01-01T00:00:00.000Z',
    }),
  )
}

const startBuild = performance.now()
const files = new Map<string, Uint8Array>()
let entryBytes = 0
for (const { index, width } of entryBundlesForSize(size)) {
  const entries = Array.from({ length: width }, (_, i) => entry(index * TILE_WIDTH + i))
  for (const item of entries) entryBytes += item.length
  files.set(entryBundlePath(index, width), encodeEntryBundle(entries))
  files.set(tilePath({ level: 0, index, width }), concatBytes(...entries.map(hashLeaf)))
}
const readTile = (tile: TileId): Uint8Array => {
  const bytes = files.get(tilePath(tile))
  if (bytes === undefined) throw new Error(`missing ${tilePath(tile)}`)
  return bytes
}
for (const tile of tilesForSize(size).filter((candidate) => candidate.level > 0)) {
  // Hash j of a tile at level L + 1 joins the two halves of full tile j at level L.
  const halves = TILE_HEIGHT * tile.level - 1
  const hashes = Array.from({ length: tile.width }, (_, i) => {
    const j = tile.index * TILE_WIDTH + i
    const left = nodeFromTiles({ level: halves, index: 2 * j }, size, readTile)
    const right = nodeFromTiles({ level: halves, index: 2 * j + 1 }, size, readTile)
    return hashChildren(left, right)
  })
  files.set(tilePath(tile), concatBytes(...hashes))
}
const rootHash = treeRoot(size, (node) => nodeFromTiles(node, size, readTile))
files.set(
  'checkpoint',
  utf8Encode(signNote(formatCheckpoint({ origin, size, rootHash, extensions: [] }), signer)),
)
const buildSeconds = (performance.now() - startBuild) / 1000

const startVerify = performance.now()
const result = verifyTileLog({ read: (path) => files.get(path), verifierKey: signer.verifierKey })
const verifySeconds = (performance.now() - startVerify) / 1000

console.log(
  JSON.stringify({
    entries: result.size,
    averageEntryBytes: Math.round(entryBytes / size),
    buildSeconds: Number(buildSeconds.toFixed(2)),
    verifySeconds: Number(verifySeconds.toFixed(2)),
    entriesPerSecond: Math.round(size / verifySeconds),
  }),
)
