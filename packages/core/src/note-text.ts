// Character rules shared by signed notes and the checkpoints carried in them. Internal to core.

/**
 * The index of the first character a C2SP signed note may not contain — an ASCII control
 * character other than newline, or an unpaired surrogate, which has no UTF-8 form — or -1.
 */
export function forbiddenNoteCharacterIndex(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x20) {
      if (code !== 0x0a) return i
    } else if (code >= 0xd800 && code <= 0xdfff) {
      const next = text.charCodeAt(i + 1)
      if (code >= 0xdc00 || !(next >= 0xdc00 && next <= 0xdfff)) return i
      i++
    }
  }
  return -1
}

/** The 1-based line that character `index` of `text` sits on. */
export function lineOfIndex(text: string, index: number): number {
  let line = 1
  for (let i = text.indexOf('\n'); i !== -1 && i < index; i = text.indexOf('\n', i + 1)) line++
  return line
}
