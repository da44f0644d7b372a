import { WardError } from './errors.js'

// Semantic Versioning 2.0.0, section 9 and 10: numeric parts without leading zeros, an
// optional pre-release and optional build metadata.
const semverPattern =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$/

/** A parsed semantic version. Build metadata is kept but never compared. */
export interface SemanticVersion {
  readonly major: number
  readonly minor: number
  readonly patch: number
  readonly prerelease: readonly string[]
  readonly text: string
}

/** True when `text` is a Semantic Versioning 2.0.0 version such as `1.2.0` or `2.0.0-rc.1`. */
export function isSemanticVersion(text: string): boolean {
  return text.length <= 64 && semverPattern.test(text)
}

/**
 * Parses `text` as a semantic version; `ERR_INPUT_INVALID` naming `field` when it is not one
 * (at most 64 characters).
 */
export function parseSemanticVersion(text: string, field = 'version'): SemanticVersion {
  const match = text.length <= 64 ? semverPattern.exec(text) : null
  if (match === null) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `${field} must be a semantic version such as 1.2.0 (MAJOR.MINOR.PATCH)`,
      { details: { field } },
    )
  }
  const numeric = [match[1], match[2], match[3]].map(Number) as [number, number, number]
  if (!numeric.every(Number.isSafeInteger)) {
    throw new WardError('ERR_INPUT_INVALID', `${field} has a part too large`, {
      details: { field },
    })
  }
  return {
    major: numeric[0],
    minor: numeric[1],
    patch: numeric[2],
    prerelease: match[4] === undefined ? [] : match[4].split('.'),
    text,
  }
}

/**
 * Compares two versions by Semantic Versioning precedence: negative when `a` comes first, 0
 * when they rank equal (build metadata aside), positive when `a` comes after `b`.
 */
export function compareSemanticVersions(a: string, b: string): number {
  const left = parseSemanticVersion(a)
  const right = parseSemanticVersion(b)
  for (const part of ['major', 'minor', 'patch'] as const) {
    if (left[part] !== right[part]) return left[part] < right[part] ? -1 : 1
  }
  // A version without a pre-release ranks above the same version with one.
  if (left.prerelease.length === 0 || right.prerelease.length === 0) {
    return right.prerelease.length - left.prerelease.length
  }
  const length = Math.min(left.prerelease.length, right.prerelease.length)
  for (let index = 0; index < length; index++) {
    const x = left.prerelease[index] as string
    const y = right.prerelease[index] as string
    if (x === y) continue
    const xNumeric = /^\d+$/.test(x)
    const yNumeric = /^\d+$/.test(y)
    if (xNumeric && yNumeric) return Number(x) < Number(y) ? -1 : 1
    if (xNumeric !== yNumeric) return xNumeric ? -1 : 1
    return x < y ? -1 : 1
  }
  return left.prerelease.length - right.prerelease.length
}
