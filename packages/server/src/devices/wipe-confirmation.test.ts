import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { X509Certificate, randomUUID, sign } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { isWardError, wipeReportSigningInput, type WipeReport } from '@ward/core'

import { certificateSerial, checkWipeConfirmation, publicKeyId } from './index.js'

describe("a wipe report's erasure time", () => {
  let directory: string
  let certificate: X509Certificate
  let keyPem: string

  before(() => {
    // A P-256 key and a self-signed certificate, as a device holds.
    directory = mkdtempSync(join(tmpdir(), 'ward-wipe-'))
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-subj',
        '/CN=device',
        '-days',
        '1',
        '-keyout',
        join(directory, 'device.key'),
        '-out',
        join(directory, 'device.crt'),
      ],
      { stdio: 'ignore' },
    )
    keyPem = readFileSync(join(directory, 'device.key'), 'utf8')
    certificate = new X509Certificate(readFileSync(join(directory, 'device.crt')))
  })
  after(() => rmSync(directory, { recursive: true, force: true }))

  const commandId = randomUUID()
  const deviceId = randomUUID()
  const issuedAt = '2026-06-01T12:00:00.000Z'
  const now = new Date('2026-06-01T12:30:00.000Z')

  /** A confirmation signed by the device, erased at `erasedAt`. */
  function confirmation(erasedAt: string) {
    const report: WipeReport = {
      command: commandId,
      device: deviceId,
      erased: {
        queuedReadings: 0,
        rejectedReadings: 0,
        keys: [publicKeyId(certificate)],
        certificates: [certificateSerial(certificate)],
      },
      erasedAt,
    }
    const signature = sign('sha256', wipeReportSigningInput(report), keyPem).toString('base64')
    return { report, signature }
  }

  const check = (erasedAt: string) =>
    checkWipeConfirmation(
      confirmation(erasedAt),
      { commandId, deviceId, certificate, issuedAt },
      now,
    )

  test('is accepted between the command and now, within the clock skew', () => {
    for (const erasedAt of [
      '2026-06-01T12:10:00.000Z',
      '2026-06-01T11:56:00.000Z',
      '2026-06-01T12:34:00.000Z',
    ]) {
      assert.equal(check(erasedAt).report.erasedAt, erasedAt)
    }
  })

  test('is refused in the future or before the command was issued, naming the field', () => {
    for (const erasedAt of [
      '2099-01-01T00:00:00.000Z',
      '2026-06-01T12:36:00.000Z',
      '2026-06-01T11:54:00.000Z',
      '1970-01-01T00:00:00.000Z',
    ]) {
      assert.throws(
        () => check(erasedAt),
        (error: unknown) =>
          isWardError(error, 'ERR_INPUT_INVALID') &&
          error.details['field'] === 'report.erasedAt' &&
          error.message ===
            "report.erasedAt must lie between the command's issue and now, within 5 minutes of clock skew",
        erasedAt,
      )
    }
  })
})
