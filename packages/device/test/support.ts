import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'

import { enroll } from '../src/client.js'
import type { DeviceClient } from '../src/client.js'
import type { Observation } from '../src/fhir.js'

import { SERVER_NAME } from './device-endpoint.js'
import type { TestDeviceEndpoint, TestPki } from './device-endpoint.js'

/** A new empty directory, removed when the test ends. */
export function temporaryDirectory(t: TestContext): string {
  const directory = mkdtempSync(join(tmpdir(), 'ward-device-'))
  t.after(() => rmSync(directory, { recursive: true, force: true }))
  return directory
}

/** A pulse oximeter's SpO2 reading. */
export function spo2(value = 97): Observation {
  return {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '59408-5' }] },
    effectiveDateTime: new Date().toISOString(),
    valueQuantity: { value, unit: '%', system: 'http://unitsofmeasure.org', code: '%' },
  }
}

/** Enrolls a new device with the endpoint, under a token made for it. */
export async function enrolledDevice(
  endpoint: TestDeviceEndpoint,
  pki: TestPki,
  keyDirectory: string,
  serial = `PO-${randomUUID().slice(0, 8)}`,
): Promise<DeviceClient> {
  const token = randomUUID()
  endpoint.addToken(token, serial)
  return enroll({
    url: endpoint.url,
    serverName: SERVER_NAME,
    caPem: pki.serverCa.certificatePem,
    serial,
    token,
    keyDirectory,
  })
}
