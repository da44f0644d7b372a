import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { readVectors } from '../test/vectors.js'
import { concatBytes, fromBase64, fromHex, toBase64, toHex, utf8Encode } from './encoding.js'
import { isWardError } from './errors.js'
import type { VerifierKey } from './note.js'
import {
  MAX_NOTE_SIGNATURES,
  ed25519Signer,
  formatSignedNote,
  formatVerifierKey,
  noteKeyId,
  noteSignatureLine,
  parseNote,
  parseVerifierKey,
  signNote,
  verifyNote,
} from './note.js'

type NoteVector = {
  id: string
  vkey?: string
  vkeys?: string[]
  skey?: string
  ed25519_seed_hex?: string
  ed25519_public_key_hex?: string
  key_id_hex?: string
  key_id_recomputed_hex?: string
  key_id_recomputed_sha256_spki_hex?: string
  note_text?: string
  signed_note?: string
  enoch_ed25519_seed_hex?: string
  vkey_derived?: string
  signed_tree_from_comment?: string
  expected_note_text?: string
  expected_signatures?: { name: string; key_id_hex: string; sig_len: number }[]
  cases?: { desc?: string; message?: string; vkey?: string; rule?: string; expect?: string }[]
  key_pairs?: {
    vkey: string
    skey: string
    ed25519_seed_hex: string
    ed25519_public_key_hex: string
  }[]
}

const { vectors } = readVectors<{ vectors: NoteVector[] }>('signed-note.json')

function vector(id: string): NoteVector {
  const found = vectors.find((candidate) => candidate.id === id)
  assert.ok(found, `vector ${id} is in signed-note.json`)
  return found
}

/** Reads the `PRIVATE+KEY+<name>+<hex key ID>+base64(0x01 || seed)` form the vectors use. */
function parseSignerKey(skey: string): { name: string; keyIdHex: string; seed: Uint8Array } {
  const prefix = 'PRIVATE+KEY+'
  assert.ok(skey.startsWith(prefix))
  const rest = skey.slice(prefix.length)
  const nameEnd = rest.indexOf('+')
  const idEnd = rest.indexOf('+', nameEnd + 1)
  const encoded = fromBase64(rest.slice(idEnd + 1))
  assert.equal(encoded[0], 0x01, 'an Ed25519 signer key')
  assert.equal(encoded.length, 33)
  return {
    name: rest.slice(0, nameEnd),
    keyIdHex: rest.slice(nameEnd + 1, idEnd),
    seed: encoded.slice(1),
  }
}

const isMalformed = (error: unknown): boolean => isWardError(error, 'ERR_NOTE_MALFORMED')
const isUnverified = (error: unknown): boolean => isWardError(error, 'ERR_NOTE_UNVERIFIED')
const isBadVerifierKey = (error: unknown): boolean => isWardError(error, 'ERR_VERIFIER_KEY_INVALID')

describe('verifier keys', () => {
  it('reads the PeterNeumann key and recomputes its key ID', () => {
    const peter = vector('go-note-peterneumann')
    const key = parseVerifierKey(peter.vkey!)
    assert.equal(key.name, 'PeterNeumann')
    assert.equal(key.algorithm, 'ed25519')
    assert.equal(toHex(key.keyId), peter.key_id_hex)
    assert.equal(toHex(key.publicKey), peter.ed25519_public_key_hex)
    assert.deepEqual(noteKeyId(key.name, key.publicKey), key.keyId)
    assert.equal(formatVerifierKey(key.name, key.publicKey), peter.vkey)
  })

  it('recomputes the key ID of the C2SP example key', () => {
    const example = vector('c2sp-signed-note-example')
    assert.equal(toHex(parseVerifierKey(example.vkey!).keyId), example.key_id_recomputed_hex)
  })

  it('rejects the published bad verifier keys', () => {
    for (const testCase of vector('go-note-bad-vkeys').cases!) {
      if (testCase.vkey === undefined) continue
      assert.throws(() => parseVerifierKey(testCase.vkey!), isBadVerifierKey, testCase.expect)
    }
  })

  it('rejects every proper substring of a valid verifier key', () => {
    const vkey = vector('go-note-peterneumann').vkey!
    assert.ok(vector('go-note-bad-vkeys').cases!.some((testCase) => testCase.rule !== undefined))
    for (let start = 0; start <= vkey.length; start++) {
      for (let end = start + 1; end <= vkey.length; end++) {
        if (start === 0 && end === vkey.length) continue
        const fragment = vkey.slice(start, end)
        assert.throws(() => parseVerifierKey(fragment), isBadVerifierKey, fragment)
      }
    }
  })

  it('rejects a valid verifier key with any one byte incremented', () => {
    const bytes = utf8Encode(vector('go-note-peterneumann').vkey!)
    for (let i = 0; i < bytes.length; i++) {
      const altered = bytes.slice()
      altered[i]! += 1
      const text = new TextDecoder().decode(altered)
      assert.throws(() => parseVerifierKey(text), isBadVerifierKey, text)
    }
  })

  it('names what is wrong with a verifier key', () => {
    const peter = vector('go-note-peterneumann').vkey!
    const [, , encoded] = peter.split('+') as [string, string, string]
    const cases: [string, RegExp][] = [
      [peter.replace('c74f20a3', 'C74F20A3'), /key ID is not 8 lowercase hex digits/],
      [peter.replace('PeterNeumann', 'Peter Neumann'), /key name contains whitespace/],
      [peter.replace('PeterNeumann', ''), /key name is empty/],
      [peter.replace('c74f20a3', '00000000'), /key ID does not match/],
      [`PeterNeumann+c74f20a3+${encoded}=`, /not canonical base64/],
      [
        `PeterNeumann+c74f20a3+${toBase64(concatBytes(Uint8Array.of(0x04), new Uint8Array(32)))}`,
        /unsupported signature algorithm 0x04/,
      ],
    ]
    for (const [text, message] of cases) {
      assert.throws(() => parseVerifierKey(text), { code: 'ERR_VERIFIER_KEY_INVALID', message })
    }
  })

  it('keeps Ed25519 signer and verifier keys of the published key pairs consistent', () => {
    const pairs = [
      ...vector('formats-test-keys').key_pairs!,
      ...['go-note-peterneumann', 'go-sumdb-testkey'].map((id) => {
        const { vkey, skey, ed25519_seed_hex, ed25519_public_key_hex } = vector(id)
        return {
          vkey: vkey!,
          skey: skey!,
          ed25519_seed_hex: ed25519_seed_hex!,
          ed25519_public_key_hex: ed25519_public_key_hex!,
        }
      }),
    ]
    for (const pair of pairs) {
      const signerKey = parseSignerKey(pair.skey)
      const verifierKey = parseVerifierKey(pair.vkey)
      assert.equal(toHex(signerKey.seed), pair.ed25519_seed_hex)
      assert.equal(signerKey.name, verifierKey.name)
      assert.equal(signerKey.keyIdHex, toHex(verifierKey.keyId))

      const signer = ed25519Signer(signerKey.name, signerKey.seed)
      assert.equal(signer.vkey, pair.vkey)
      assert.equal(toHex(signer.publicKey), pair.ed25519_public_key_hex)
      assert.deepEqual(signer.verifierKey, verifierKey)
    }
  })

  it('reads ECDSA P-256 verifier keys whose key ID hashes the SubjectPublicKeyInfo', () => {
    for (const id of ['rekor-production-checkpoint-ecdsa', 'pixel6-production-checkpoint-ecdsa']) {
      const { vkey, key_id_recomputed_sha256_spki_hex: keyId } = vector(id)
      const key = parseVerifierKey(vkey!)
      assert.equal(key.algorithm, 'ecdsa-p256')
      assert.equal(toHex(key.keyId), keyId)
      assert.equal(formatVerifierKey(key.name, key.publicKey, 'ecdsa-p256'), vkey)
    }
  })
})

describe('parseNote', () => {
  it('splits the multi-line C2SP example at its last blank line', () => {
    const example = vector('c2sp-signed-note-multiline')
    const note = parseNote(example.signed_note!)
    assert.equal(note.text, example.expected_note_text)
    assert.deepEqual(
      note.signatures.map(({ name, keyId, signature }) => ({
        name,
        key_id_hex: toHex(keyId),
        sig_len: signature.length,
      })),
      example.expected_signatures,
    )
  })

  it('reads a note given as UTF-8 bytes', () => {
    const example = vector('c2sp-signed-note-multiline')
    assert.equal(parseNote(utf8Encode(example.signed_note!)).text, example.expected_note_text)
  })

  for (const testCase of vector('go-note-malformed').cases!) {
    if (!testCase.expect!.includes('malformed')) continue
    it(`rejects a malformed note: ${testCase.desc}`, () => {
      const peter = vector('go-note-peterneumann')
      const message =
        testCase.message ??
        // The 101-signature case is published as a construction rather than as text.
        `${peter.note_text!}\n${peter.signed_note!.slice(peter.note_text!.length + 1).repeat(101)}`
      assert.throws(() => parseNote(message), isMalformed)
      assert.throws(() => verifyNote(message, [parseVerifierKey(peter.vkey!)]), isMalformed)
    })
  }

  it('accepts the most signatures allowed and names the line of the first one too many', () => {
    const peter = vector('go-note-peterneumann')
    const line = peter.signed_note!.slice(peter.note_text!.length + 1)
    const withMax = `${peter.note_text!}\n${line.repeat(MAX_NOTE_SIGNATURES)}`
    assert.equal(parseNote(withMax).signatures.length, MAX_NOTE_SIGNATURES)
    assert.deepEqual(verifyNote(withMax, [parseVerifierKey(peter.vkey!)]).verified, [
      'PeterNeumann',
    ])
    // Two text lines and the blank line come first, so signature 101 is on line 104.
    assert.throws(() => parseNote(`${withMax}${line}`), {
      code: 'ERR_NOTE_MALFORMED',
      message: /^note line 104: /,
    })
  })

  it('rejects a note that is not valid UTF-8, naming the line', () => {
    const peter = vector('go-note-peterneumann')
    const bytes = utf8Encode(peter.signed_note!)
    assert.throws(() => parseNote(concatBytes(Uint8Array.of(0xff), bytes)), {
      code: 'ERR_NOTE_MALFORMED',
      message: /^note line 1: .*UTF-8/,
    })
    const second = bytes.indexOf(0x0a) + 1
    const broken = concatBytes(
      bytes.subarray(0, second),
      Uint8Array.of(0xc3),
      bytes.subarray(second),
    )
    assert.throws(() => parseNote(broken), {
      code: 'ERR_NOTE_MALFORMED',
      message: /^note line 2: /,
    })
  })

  it('names the line at fault', () => {
    const peter = vector('go-note-peterneumann')
    const signed = peter.signed_note!
    const cases: [string, RegExp][] = [
      [
        signed.replace('\u2014 PeterNeumann ', '- PeterNeumann '),
        /^note line 4: not a signature line/,
      ],
      [signed.replace('you think', 'you\tthink'), /^note line 1: contains a control character/],
      [
        signed.replace('\n\u2014', '\n\u2014 Peter+Neumann'),
        /^note line 4: key name contains '\+'/,
      ],
      [`${signed}\u2014 Short AAAA\n`, /^note line 5: signature is too short/],
      [`${signed}\u2014 Spaces AAAA AAAA\n`, /^note line 5: signature is not canonical base64/],
      [`${signed}\u2014 Return AAAAAAAA\r\n`, /^note line 5: contains a control character/],
      [`${signed}\u2014 NoSignature\n`, /^note line 5: signature line has no space/],
      [signed.replace('\n\n', '\n'), /^note line 3: no blank line/],
    ]
    for (const [message, pattern] of cases) {
      assert.throws(() => parseNote(message), { code: 'ERR_NOTE_MALFORMED', message: pattern })
    }
  })

  it('rejects a note holding an unpaired surrogate', () => {
    const signed = vector('go-note-peterneumann').signed_note!
    assert.throws(() => parseNote(`\ud800${signed}`), isMalformed)
  })
})

describe('verifyNote', () => {
  const peter = vector('go-note-peterneumann')
  const peterKey = parseVerifierKey(peter.vkey!)

  it('verifies the PeterNeumann note', () => {
    assert.deepEqual(verifyNote(peter.signed_note!, [peterKey]), {
      text: peter.note_text,
      verified: ['PeterNeumann'],
      unverified: [],
    })
  })

  it('lists a signature by an unknown key as unverified and ignores it', () => {
    const two = vector('go-note-two-signatures')
    assert.deepEqual(verifyNote(two.signed_note!, [peterKey]), {
      text: peter.note_text,
      verified: ['PeterNeumann'],
      unverified: ['EnochRoot'],
    })
  })

  it('verifies both signatures when both keys are trusted', () => {
    const two = vector('go-note-two-signatures')
    const keys = two.vkeys!.map(parseVerifierKey)
    const result = verifyNote(two.signed_note!, keys)
    assert.deepEqual(result.verified, ['PeterNeumann', 'EnochRoot'])
    assert.deepEqual(result.unverified, [])
  })

  it('rejects a note no trusted key signed', () => {
    const two = vector('go-note-two-signatures')
    assert.throws(() => verifyNote(two.signed_note!, []), {
      code: 'ERR_NOTE_UNVERIFIED',
      message: 'note has no verifiable signatures',
    })
  })

  it('rejects a note whose signature by a trusted key fails, naming the key', () => {
    const corrupted = vector('go-note-malformed').cases!.find((testCase) =>
      testCase.expect!.startsWith('reject (invalid signature'),
    )!
    assert.throws(() => verifyNote(corrupted.message!, [peterKey]), {
      code: 'ERR_NOTE_UNVERIFIED',
      message: /invalid signature for key PeterNeumann\+c74f20a3/,
    })
    assert.throws(
      () => verifyNote(peter.signed_note!.replace('answer', 'Answer'), [peterKey]),
      (error) =>
        isWardError(error, 'ERR_NOTE_UNVERIFIED') && error.details.keyName === 'PeterNeumann',
    )
  })

  it('ignores signatures that share only the name or only the key ID of a trusted key', () => {
    const stranger = ed25519Signer('PeterNeumann', new Uint8Array(32).fill(7))
    const sameId = noteSignatureLine('Someone', peterKey.keyId, new Uint8Array(64))
    const note = formatSignedNote(peter.note_text!, [
      noteSignatureLine(stranger.name, stranger.keyId, stranger.sign(utf8Encode(peter.note_text!))),
      sameId,
      peter.signed_note!.slice(peter.note_text!.length + 1),
    ])
    assert.deepEqual(verifyNote(note, [peterKey]).unverified, ['PeterNeumann', 'Someone'])
  })

  it('verifies the production sum.golang.org checkpoint', () => {
    const sumdb = vector('sumdb-production-checkpoint')
    assert.deepEqual(verifyNote(sumdb.signed_note!, [parseVerifierKey(sumdb.vkey!)]).verified, [
      'sum.golang.org',
    ])
  })

  it('verifies the checkpoint with cosigners, ignoring cosigners it has no key for', () => {
    const cosigned = vector('sumdb-checkpoint-plus-cosigners')
    const keys = cosigned.vkeys!.map(parseVerifierKey)
    assert.deepEqual(verifyNote(cosigned.signed_note!, keys).verified, [
      'sum.golang.org',
      'monkeys',
      'bananas',
      'witness',
    ])
    const logOnly = verifyNote(cosigned.signed_note!, [keys[0]!])
    assert.deepEqual(logOnly.verified, ['sum.golang.org'])
    assert.deepEqual(logOnly.unverified, ['monkeys', 'bananas', 'witness'])

    // Lines by unknown names that reuse the witness signature bytes are ignored as well.
    const witnessLine = cosigned
      .signed_note!.split('\n')
      .find((line) => line.startsWith('\u2014 witness '))!
    const encoded = witnessLine.split(' ')[2]!
    const extended = `${cosigned.signed_note!}\u2014 random1 ${encoded}\n\u2014 random2 ${encoded}\n`
    const result = verifyNote(extended, keys)
    assert.equal(result.verified.length, 4)
    assert.deepEqual(result.unverified, ['random1', 'random2'])
  })

  it('verifies the signed tree of the sumdb test key', () => {
    const testKey = vector('go-sumdb-testkey')
    const result = verifyNote(testKey.signed_tree_from_comment!, [parseVerifierKey(testKey.vkey!)])
    assert.deepEqual(result.verified, ['localhost.localdev/sumdb'])
  })

  it('verifies the sigsum checkpoint with the key derived from its seed', () => {
    const sigsum = vector('sigsum-checkpoint')
    const origin = sigsum.signed_note!.slice(0, sigsum.signed_note!.indexOf('\n'))
    const signer = ed25519Signer(origin, fromHex(sigsum.ed25519_seed_hex!))
    assert.equal(signer.vkey, sigsum.vkey_derived)
    assert.equal(toHex(signer.publicKey), sigsum.ed25519_public_key_hex)
    assert.deepEqual(verifyNote(sigsum.signed_note!, [signer.verifierKey]).verified, [origin])
    // Deterministic Ed25519: signing the text again gives the published note byte for byte.
    assert.equal(signNote(parseNote(sigsum.signed_note!).text, signer), sigsum.signed_note)
  })

  it('verifies the production ECDSA P-256 checkpoints of Rekor and the Pixel 6 log', () => {
    for (const id of ['rekor-production-checkpoint-ecdsa', 'pixel6-production-checkpoint-ecdsa']) {
      const { vkey, signed_note: signed } = vector(id)
      const key = parseVerifierKey(vkey!)
      assert.deepEqual(verifyNote(signed!, [key]).verified, [key.name], id)
      const altered = signed!.replace('\n', 'x\n')
      assert.throws(() => verifyNote(altered, [key]), isUnverified, id)
    }
  })

  it('rejects a malformed or ambiguous list of trusted keys', () => {
    const badKey: VerifierKey = { ...peterKey, publicKey: new Uint8Array(31) }
    assert.throws(() => verifyNote(peter.signed_note!, [badKey]), isBadVerifierKey)
    assert.throws(
      () => verifyNote(peter.signed_note!, [peterKey, { ...peterKey }]),
      isBadVerifierKey,
    )
  })
})

describe('signing', () => {
  it('re-signs the PeterNeumann note byte for byte from its seed', () => {
    const peter = vector('go-note-peterneumann')
    const signer = ed25519Signer('PeterNeumann', fromHex(peter.ed25519_seed_hex!))
    assert.equal(signer.vkey, peter.vkey)
    assert.equal(signNote(peter.note_text!, signer), peter.signed_note)
  })

  it('assembles the two-signature note byte for byte from both seeds', () => {
    const peter = vector('go-note-peterneumann')
    const two = vector('go-note-two-signatures')
    const text = peter.note_text!
    const lines = [
      ed25519Signer('PeterNeumann', fromHex(peter.ed25519_seed_hex!)),
      ed25519Signer('EnochRoot', fromHex(two.enoch_ed25519_seed_hex!)),
    ].map((signer) => {
      assert.ok(two.vkeys!.includes(signer.vkey))
      return noteSignatureLine(signer.name, signer.keyId, signer.sign(utf8Encode(text)))
    })
    assert.equal(formatSignedNote(text, lines), two.signed_note)
  })

  it('signs through a signer that holds its key outside core', () => {
    const inner = ed25519Signer('example.com/log', new Uint8Array(32).fill(1))
    const seen: Uint8Array[] = []
    const note = signNote('example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n', {
      name: inner.name,
      keyId: inner.keyId,
      sign: (message) => {
        seen.push(message)
        return inner.sign(message)
      },
    })
    assert.equal(seen.length, 1)
    assert.deepEqual(verifyNote(note, [inner.verifierKey]).verified, ['example.com/log'])
  })

  it('refuses to sign or assemble text that is not note text', () => {
    const signer = ed25519Signer('example.com/log', new Uint8Array(32))
    assert.throws(() => signNote('no final newline', signer), isMalformed)
    assert.throws(() => signNote('bell\u0007\n', signer), isMalformed)
    assert.throws(() => formatSignedNote('text\n', []), isMalformed)
    const line = noteSignatureLine(signer.name, signer.keyId, new Uint8Array(64))
    assert.throws(() => formatSignedNote('text\n', [line.slice(0, -1)]), isMalformed)
    assert.throws(() => formatSignedNote('text\n', [line + line]), isMalformed)
    assert.throws(() => formatSignedNote('text\n', ['\u2014 x\n']), isMalformed)
  })

  it('refuses signature lines with a bad name, key ID or signature', () => {
    assert.throws(
      () => noteSignatureLine('two words', new Uint8Array(4), new Uint8Array(64)),
      isMalformed,
    )
    assert.throws(
      () => noteSignatureLine('name', new Uint8Array(3), new Uint8Array(64)),
      isMalformed,
    )
    assert.throws(
      () => noteSignatureLine('name', new Uint8Array(4), new Uint8Array(0)),
      isMalformed,
    )
  })

  it('refuses an Ed25519 seed that is not 32 bytes', () => {
    assert.throws(() => ed25519Signer('name', new Uint8Array(31)), { code: 'ERR_KEY_INVALID' })
    assert.throws(() => ed25519Signer('bad name', new Uint8Array(32)), { code: 'ERR_KEY_INVALID' })
  })
})
