import { WardError } from '@ward/core'

import { commonPasswords } from './common-passwords.js'

/**
 * NIST SP 800-63B's floor for a password a person chooses when it is the only factor is 15
 * characters, and 8 when it is used with a second factor. Ward cannot know at set-up time
 * whether the person will enroll MFA, so it takes the single-factor floor for everyone.
 */
export const minimumPasswordLength = 15

/** Generous, so passphrases fit; bounded, so hashing cost per attempt stays bounded. */
export const maximumPasswordLength = 128

/**
 * The password as Ward hashes it: Unicode NFKC, so the same passphrase typed on different
 * keyboards or input methods is the same password (SP 800-63B asks verifiers to normalize).
 */
export function normalizePassword(password: string): string {
  return password.normalize('NFKC')
}

/**
 * Checks a new password against Ward's rules, after SP 800-63B: a length in characters
 * (code points, after normalization) from {@link minimumPasswordLength} to
 * {@link maximumPasswordLength}; no composition rules; refused when it is a common password
 * (ignoring case, separators, punctuation and trailing digits), is built from the login name
 * or the word "ward", is one shorter part repeated (`iloveyouiloveyou`, `letmein-letmein`), or
 * is mostly one repeated or sequential run. Throws `ERR_INPUT_INVALID` naming the rule; the message never repeats the password.
 */
export function checkNewPassword(password: string, context: { loginName: string }): void {
  const normalized = normalizePassword(password)
  const length = [...normalized].length
  if (length < minimumPasswordLength || length > maximumPasswordLength) {
    throw refused(
      `password must be ${minimumPasswordLength} to ${maximumPasswordLength} characters long; ` +
        'a passphrase of several words is easiest',
      'length',
    )
  }

  // Compared ignoring case, separators and punctuation (`Pass.Word` is `password`), and again
  // without trailing digits (`password2026!` is `password`).
  const folded = normalized.toLowerCase()
  const core = folded.replace(/[^\p{L}\p{N}]+/gu, '')
  const stripped = core.replace(/\d+$/u, '')
  if (commonPasswords.has(folded) || commonPasswords.has(core) || commonPasswords.has(stripped)) {
    throw refused('password is on the list of commonly used passwords', 'common')
  }

  // The whole login name, and each part of it (`dr.okafor` gives `okafor` too).
  const loginParts = context.loginName.toLowerCase().split(/[^\p{L}\p{N}]+/u)
  const contextWords = [loginParts.join(''), ...loginParts, 'ward']
  const withoutContext = contextWords.reduce(removeAll, core)
  if (withoutContext.length < 8) {
    throw refused(
      'password must not be built from the login name or the word "ward"; ' +
        'add at least 8 other letters or digits',
      'context',
    )
  }

  if (distinctRuns(core) < 8) {
    throw refused(
      'password is mostly repeated or sequential characters (like "aaaa" or "1234"); ' +
        'choose one with more variety',
      'repetition',
    )
  }

  if (isRepeatedPart(core) || isRepeatedPart(stripped) || isMostlyRepeated(core)) {
    throw refused(
      'password is one shorter part typed again (like "sunsun" or "ab-ab-ab"); ' +
        'a repeat adds almost nothing to guess, so choose words that do not repeat',
      'repeated',
    )
  }
}

function refused(message: string, rule: string): WardError {
  return new WardError('ERR_INPUT_INVALID', message, { details: { field: 'password', rule } })
}

/** True when `text` is one shorter part written two or more times over: `abcabcabc`. */
function isRepeatedPart(text: string): boolean {
  return /^(.+?)\1+$/su.test(text)
}

/**
 * True when some part of at least four characters, written two or more times, makes up two
 * thirds of `text` or more: `dragon99dragon99x` and `password1password2` are a repeat with a
 * character changed or added. A passphrase whose one word recurs stays well below that.
 */
function isMostlyRepeated(text: string): boolean {
  const characters = [...text]
  const length = characters.length
  for (let size = Math.floor(length / 2); size >= 4; size -= 1) {
    for (let start = 0; start + 2 * size <= length; start += 1) {
      const part = characters.slice(start, start + size).join('')
      const copies = text.split(part).length - 1
      if (copies >= 2 && copies * size * 3 >= length * 2) return true
    }
  }
  return false
}

function removeAll(text: string, part: string): string {
  return part.length < 3 ? text : text.split(part).join('')
}

/**
 * How many characters of `text` are neither the same as the one before it nor one code
 * point above or below it: "aaaa1234" counts 2, a real passphrase counts nearly every one.
 */
function distinctRuns(text: string): number {
  const points = [...text].map((character) => character.codePointAt(0) as number)
  let count = points.length > 0 ? 1 : 0
  for (let index = 1; index < points.length; index += 1) {
    const step = (points[index] as number) - (points[index - 1] as number)
    if (step !== 0 && step !== 1 && step !== -1) count += 1
  }
  return count
}
