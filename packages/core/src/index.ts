// The public surface of @ward/core: pure, isomorphic logic with no I/O. Other packages import
// only from here.
export * from './checkpoint.js'
export * from './device-commands.js'
export * from './device-policy.js'
export * from './encoding.js'
export * from './errors.js'
export * from './jcs.js'
export * from './merkle.js'
export * from './note.js'
export * from './tiles.js'
export * from './verify-log.js'
export type { Sha256 } from './tree-hashing.js'
