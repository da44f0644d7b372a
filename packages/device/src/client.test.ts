import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'

import { isWardError } from '@ward/core'

import { DeliveryError, DeviceClient, enroll, parseRetryAfter } from './client.js'
import type { QueuedReading } from './queue.js'
import { SERVER_NAME, TestDeviceEndpoint, makePki } from '../test/device-endpoint.js'
import { enrolledDevice, spo2, temporaryDirectory } from '../test/support.js'

const run = promisify(execFile)

function reading(messageId: string, value = 97): QueuedReading {
  return {
    messageId,
    enqueuedAt: new Date().toISOString(),
    observation: {
      ...spo2(value),
      identifier: [{ system: 'urn:ward:device-message-id', value: messageId }],
    },
  }
}

test('enrolls with a token: a valid CSR for the serial, the private key kept on the device with mode 0600', async (t) => {
  const pki = await makePki()
  const endpoint = await TestDeviceEndpoint.start({ pki, tokens: { 'token-1': 'PO-0001' } })
  t.after(() => endpoint.close())
  const directory = join(temporaryDirectory(t), 'identity')

  const client = await enroll({
    url: endpoint.url,
    serverName: SERVER_NAME,
    caPem: pki.serverCa.certificatePem,
    serial: 'PO-0001',
    token: 'token-1',
    keyDirectory: directory,
  })
  t.after(() => client.close())

  const csrFile = join(directory, '..', 'request.csr')
  writeFileSync(csrFile, endpoint.certificateRequests[0]!)
  const verified = await run('openssl', ['req', '-verify', '-in', csrFile, '-noout', '-subject'])
  assert.match(verified.stderr + verified.stdout, /verify OK/)
  assert.match(verified.stdout, /CN\s*=\s*PO-0001/)
  const text = await run('openssl', ['req', '-in', csrFile, '-noout', '-text'])
  assert.match(text.stdout, /ASN1 OID: prime256v1/)
  assert.match(text.stdout, /ecdsa-with-SHA256/)

  const body = JSON.parse(endpoint.enrollmentBodies[0]!) as Record<string, unknown>
  assert.deepEqual(Object.keys(body).sort(), ['csr', 'serial', 'token'])
  assert.doesNotMatch(endpoint.enrollmentBodies[0]!, /PRIVATE KEY/)

  const files = readdirSync(directory).sort()
  assert.deepEqual(files, ['ca.pem', 'device-1.crt', 'device-1.key', 'identity.json'])
  assert.equal(statSync(join(directory, 'device-1.key')).mode & 0o777, 0o600)
  assert.equal(statSync(directory).mode & 0o777, 0o700)
  const certificate = new X509Certificate(readFileSync(join(directory, 'device-1.crt')))
  assert.equal(client.identity.serial, 'PO-0001')
  assert.match(certificate.subjectAltName ?? '', new RegExp(client.identity.deviceId))

  await assert.rejects(
    enroll({
      url: endpoint.url,
      serverName: SERVER_NAME,
      caPem: pki.serverCa.certificatePem,
      serial: 'PO-0001',
      token: 'token-1',
      keyDirectory: directory,
    }),
    (error) => isWardError(error, 'ERR_ALREADY_INITIALIZED'),
  )
})

test('refuses to enroll with a token already used, naming the status and code', async (t) => {
  const pki = await makePki()
  const endpoint = await TestDeviceEndpoint.start({ pki, tokens: { once: 'PO-0002' } })
  t.after(() => endpoint.close())
  const base = temporaryDirectory(t)
  const inputs = {
    url: endpoint.url,
    serverName: SERVER_NAME,
    caPem: pki.serverCa.certificatePem,
    serial: 'PO-0002',
    token: 'once',
  }
  ;(await enroll({ ...inputs, keyDirectory: join(base, 'a') })).close()
  await assert.rejects(enroll({ ...inputs, keyDirectory: join(base, 'b') }), (error) => {
    assert.ok(error instanceof DeliveryError)
    assert.equal(error.status, 401)
    assert.equal(error.problemCode, 'ERR_UNAUTHENTICATED')
    assert.equal(error.code, 'ERR_UNAUTHENTICATED')
    return true
  })
  assert.deepEqual(readdirSync(base), ['a'], 'a refused enrollment stores nothing')
})

test('enrolls a factory-provisioned device with the factory signature over the CSR', async (t) => {
  const pki = await makePki()
  const endpoint = await TestDeviceEndpoint.start({ pki })
  t.after(() => endpoint.close())

  const client = await enroll({
    url: endpoint.url,
    serverName: SERVER_NAME,
    caPem: pki.serverCa.certificatePem,
    serial: 'PO-FACTORY-1',
    factory: {
      certificateChainPem: pki.factory.certificatePem,
      privateKeyPem: pki.factory.privateKeyPem,
    },
    keyDirectory: temporaryDirectory(t),
  })
  t.after(() => client.close())
  const body = JSON.parse(endpoint.enrollmentBodies[0]!) as Record<string, unknown>
  assert.deepEqual(Object.keys(body).sort(), [
    'csr',
    'factoryCertificate',
    'factorySignature',
    'serial',
  ])
  assert.equal(body['factoryCertificate'], pki.factory.certificatePem)
  assert.doesNotMatch(endpoint.enrollmentBodies[0]!, /PRIVATE KEY/)
  assert.ok(client.identity.deviceId.length > 0)
})

test('maps a batch-response to accepted, duplicate and rejected per message id', async (t) => {
  const pki = await makePki()
  const endpoint = await TestDeviceEndpoint.start({
    pki,
    validate: (observation) => {
      const quantity = observation['valueQuantity'] as { value: number }
      return quantity.value < 0 ? 'value: SpO2 below 0 %' : undefined
    },
  })
  t.after(() => endpoint.close())
  const client = await enrolledDevice(endpoint, pki, temporaryDirectory(t))
  t.after(() => client.close())

  assert.deepEqual(await client.sendBatch([reading('m-1')]), [
    { messageId: 'm-1', result: 'accepted', status: 201 },
  ])
  const outcomes = await client.sendBatch([reading('m-2'), reading('m-1'), reading('m-3', -4)])
  assert.deepEqual(outcomes, [
    { messageId: 'm-2', result: 'accepted', status: 201 },
    { messageId: 'm-1', result: 'duplicate', status: 200 },
    { messageId: 'm-3', result: 'rejected', status: 422, reason: 'invalid: value: SpO2 below 0 %' },
  ])
  assert.equal(endpoint.stored.size, 2)
  assert.deepEqual(await client.sendBatch([]), [])
  assert.deepEqual(
    endpoint.requests.map((request) => request.protocol),
    ['TLSv1.3', 'TLSv1.3'],
  )
})

test('reports 429 and 503 with the delay Retry-After asks for', async (t) => {
  const pki = await makePki()
  // The date is made when the request comes, not before the slow set-up (keys, enrollment),
  // so that the delay it names is a minute from the answer however loaded the machine is.
  const answers = [
    () => ({ kind: 'refuse' as const, status: 429, retryAfter: '7' }),
    () => ({
      kind: 'refuse' as const,
      status: 503,
      retryAfter: new Date(Date.now() + 60_000).toUTCString(),
    }),
  ]
  const endpoint = await TestDeviceEndpoint.start({
    pki,
    interfere: () => answers.shift()?.() ?? { kind: 'answer' },
  })
  t.after(() => endpoint.close())
  const client = await enrolledDevice(endpoint, pki, temporaryDirectory(t))
  t.after(() => client.close())

  await assert.rejects(client.sendBatch([reading('m-1')]), (error) => {
    assert.ok(error instanceof DeliveryError)
    assert.equal(error.status, 429)
    assert.equal(error.code, 'ERR_RATE_LIMITED')
    assert.equal(error.retryAfterMs, 7000)
    assert.equal(error.refusesContent, false)
    return true
  })
  await assert.rejects(client.sendBatch([reading('m-1')]), (error) => {
    assert.ok(error instanceof DeliveryError)
    assert.equal(error.status, 503)
    assert.ok(error.retryAfterMs! > 55_000 && error.retryAfterMs! <= 60_000)
    return true
  })
  assert.equal((await client.sendBatch([reading('m-1')]))[0]!.result, 'accepted')
})

test('reads Retry-After as seconds or as an HTTP date, and nothing else', () => {
  const now = Date.parse('2025-03-01T12:00:00Z')
  assert.equal(parseRetryAfter('120', now), 120_000)
  assert.equal(parseRetryAfter(' 0 ', now), 0)
  assert.equal(parseRetryAfter('Sat, 01 Mar 2025 12:00:30 GMT', now), 30_000)
  assert.equal(parseRetryAfter('Sat, 01 Mar 2025 11:00:00 GMT', now), 0, 'a past date means now')
  assert.equal(parseRetryAfter('-5', now), undefined)
  assert.equal(parseRetryAfter('soon', now), undefined)
  assert.equal(parseRetryAfter(undefined, now), undefined)
})

test('renews with a new key over mutual TLS and keeps sending with the new certificate', async (t) => {
  const pki = await makePki()
  const endpoint = await TestDeviceEndpoint.start({ pki })
  t.after(() => endpoint.close())
  const directory = temporaryDirectory(t)
  const client = await enrolledDevice(endpoint, pki, directory, 'PO-0003')
  t.after(() => client.close())
  const firstKey = readFileSync(join(directory, 'device-1.key'), 'utf8')

  const renewed = await client.renew()
  assert.equal(renewed.deviceId, client.identity.deviceId)
  assert.deepEqual(readdirSync(directory).sort(), [
    'ca.pem',
    'device-2.crt',
    'device-2.key',
    'identity.json',
  ])
  assert.notEqual(readFileSync(join(directory, 'device-2.key'), 'utf8'), firstKey)
  assert.equal(statSync(join(directory, 'device-2.key')).mode & 0o777, 0o600)
  assert.equal((await client.sendBatch([reading('after-renewal')]))[0]!.result, 'accepted')

  const reopened = await DeviceClient.open(directory)
  t.after(() => reopened.close())
  assert.deepEqual(reopened.identity, renewed)
  assert.equal((await reopened.sendBatch([reading('after-reopen')]))[0]!.result, 'accepted')
  assert.equal(endpoint.requests.at(-1)!.deviceId, renewed.deviceId)
})

test('refuses a server not under the given CA, or one whose certificate does not name the Ward host', async (t) => {
  const pki = await makePki()
  const stranger = await makePki()
  const endpoint = await TestDeviceEndpoint.start({ pki, tokens: { a: 'PO-0004', b: 'PO-0004' } })
  t.after(() => endpoint.close())
  const base = temporaryDirectory(t)
  const inputs = { url: endpoint.url, serial: 'PO-0004' }

  await assert.rejects(
    enroll({
      ...inputs,
      serverName: SERVER_NAME,
      caPem: stranger.serverCa.certificatePem,
      token: 'a',
      keyDirectory: join(base, 'a'),
    }),
    (error) => error instanceof DeliveryError && error.status === undefined,
  )
  await assert.rejects(
    enroll({
      ...inputs,
      serverName: 'acme.other-ward.test',
      caPem: pki.serverCa.certificatePem,
      token: 'b',
      keyDirectory: join(base, 'b'),
    }),
    (error) => error instanceof DeliveryError && error.status === undefined,
  )
  assert.equal(endpoint.enrollmentBodies.length, 0, 'no request reached the endpoint')

  // An endpoint whose certificate does not name the Ward host in the server name is refused too.
  const impostor = await TestDeviceEndpoint.start({
    pki,
    serverName: 'globex.other-ward.test',
    tokens: { c: 'PO-0004' },
  })
  t.after(() => impostor.close())
  await assert.rejects(
    enroll({
      url: impostor.url,
      serial: 'PO-0004',
      serverName: 'globex.other-ward.test',
      caPem: pki.serverCa.certificatePem,
      token: 'c',
      keyDirectory: join(base, 'c'),
    }),
    (error) => error instanceof DeliveryError && /ERR_TLS_CERT_ALTNAME_INVALID/.test(error.message),
  )
  assert.equal(impostor.enrollmentBodies.length, 0)
})

test('speaks TLS 1.3 only unless told to allow TLS 1.2', async (t) => {
  const pki = await makePki()
  const endpoint = await TestDeviceEndpoint.start({
    pki,
    maxVersion: 'TLSv1.2',
    tokens: { a: 'PO-0005', b: 'PO-0005' },
  })
  t.after(() => endpoint.close())
  const base = temporaryDirectory(t)
  const inputs = {
    url: endpoint.url,
    serverName: SERVER_NAME,
    caPem: pki.serverCa.certificatePem,
    serial: 'PO-0005',
  }

  await assert.rejects(
    enroll({ ...inputs, token: 'a', keyDirectory: join(base, 'a') }),
    (error) => error instanceof DeliveryError && /unreachable/.test(error.message),
  )
  const client = await enroll({
    ...inputs,
    token: 'a',
    keyDirectory: join(base, 'b'),
    minTlsVersion: 'TLSv1.2',
  })
  client.close()
})
