import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { tufKeyId } from '@ward/core'
import { Ward, loadConfig } from '@ward/server'

import {
  freshDatabase,
  temporaryDirectory,
  testEnvironment,
  type TestDatabase,
} from '../../server/test/support.js'

const repository = fileURLToPath(new URL('../../..', import.meta.url))
const entry = fileURLToPath(new URL('../dist/main.js', import.meta.url))

describe('ward updates: signing offline, publishing to Ward', () => {
  let directory: ReturnType<typeof temporaryDirectory>
  let database: TestDatabase
  let env: Record<string, string>
  let keys: string
  let repo: string

  const ward = (environment: Record<string, string>, ...args: string[]) => {
    const result = spawnSync(process.execPath, [entry, ...args], {
      cwd: repository,
      env: { PATH: process.env['PATH'] ?? '', ...environment },
      encoding: 'utf8',
    })
    return { status: result.status, stdout: result.stdout, stderr: result.stderr }
  }
  const ok = (...args: string[]) => {
    const result = ward(env, ...args)
    assert.equal(result.status, 0, `ward ${args.join(' ')} failed: ${result.stderr}`)
    return result.stdout
  }
  // The offline machine has no Ward at all: its home and database do not exist.
  const offline = (...args: string[]) => {
    const result = ward(
      {
        WARD_HOME: join(directory.path, 'no-ward-here'),
        WARD_DATABASE_URL: 'postgres://127.0.0.1:1/none',
      },
      ...args,
    )
    assert.equal(result.status, 0, `ward ${args.join(' ')} failed: ${result.stderr}`)
    return result.stdout
  }

  before(async () => {
    directory = temporaryDirectory()
    database = await freshDatabase('sqlite', directory.path)
    env = testEnvironment(join(directory.path, 'home'), database.url)
    keys = join(directory.path, 'offline', 'keys')
    repo = join(directory.path, 'offline', 'repo')
    ok('init')
    ok('org', 'create', 'acme', '--name', 'Acme clinic')
  })

  after(async () => {
    await database?.drop()
    directory?.remove()
  })

  test('a new user signs a root and a release offline and publishes them', () => {
    for (const [name, algorithm] of [
      ['root-1', 'ed25519'],
      ['root-2', 'ecdsa-p256'],
      ['targets-1', 'ed25519'],
    ] as const) {
      const printed = offline(
        'updates',
        'keygen',
        '--out',
        keys,
        '--name',
        name,
        '--algorithm',
        algorithm,
      )
      const publicKey = JSON.parse(readFileSync(join(keys, `${name}.pub.json`), 'utf8'))
      assert.match(printed, new RegExp(`key ${tufKeyId(publicKey)}`))
      assert.equal(statSync(join(keys, `${name}.key`)).mode & 0o777, 0o600)
    }
    ok('updates', 'online-keys', '--org', 'acme', '--out', join(directory.path, 'online-keys.json'))
    offline(
      'updates',
      'sign-root',
      '--repo',
      repo,
      '--version',
      '1',
      '--root-keys',
      `${join(keys, 'root-1.pub.json')},${join(keys, 'root-2.pub.json')}`,
      '--root-threshold',
      '2',
      '--targets-keys',
      join(keys, 'targets-1.pub.json'),
      '--online-keys',
      join(directory.path, 'online-keys.json'),
      '--sign-with',
      `${join(keys, 'root-1.key')},${join(keys, 'root-2.key')}`,
    )
    const image = join(directory.path, 'fw.bin')
    writeFileSync(image, Buffer.alloc(10_000, 0x5a))
    const sbom = join(directory.path, 'sbom.json')
    writeFileSync(sbom, '{"bomFormat":"CycloneDX","specVersion":"1.5"}')
    offline(
      'updates',
      'sign-release',
      '--repo',
      repo,
      '--image',
      image,
      '--name',
      'oximeter-1.2.0.bin',
      '--version',
      '1.2.0',
      '--models',
      'Pulse oximeter',
      '--hardware-revisions',
      'B,C',
      '--min-version',
      '1.0.0',
      '--notes',
      'Faster alarms',
      '--sbom',
      sbom,
      '--sign-with',
      join(keys, 'targets-1.key'),
    )
    assert.deepEqual(readdirSync(repo).sort(), ['1.root.json', '1.targets.json', 'images', 'sboms'])

    const published = ok('updates', 'publish', repo, '--org', 'acme')
    assert.match(published, /published 1\.root\.json/)
    assert.match(published, /release [0-9a-f-]{36}: oximeter-1\.2\.0\.bin 1\.2\.0/)
    assert.match(published, /signed snapshot 1 and timestamp 1/)
    assert.match(
      ok('updates', 'releases', '--org', 'acme'),
      /oximeter-1\.2\.0\.bin\t1\.2\.0\tmin 1\.0\.0/,
    )
  })

  test('publishing the same files again, or files signed below threshold, is refused', async () => {
    const again = ward(env, 'updates', 'publish', repo, '--org', 'acme')
    assert.equal(again.status, 1)
    assert.match(again.stderr, /nothing new to publish/)

    offline('updates', 'keygen', '--out', keys, '--name', 'root-3')
    offline(
      'updates',
      'sign-root',
      '--repo',
      repo,
      '--version',
      '2',
      '--root-keys',
      `${join(keys, 'root-1.pub.json')},${join(keys, 'root-3.pub.json')}`,
      '--root-threshold',
      '2',
      '--targets-keys',
      join(keys, 'targets-1.pub.json'),
      '--online-keys',
      join(directory.path, 'online-keys.json'),
      '--sign-with',
      `${join(keys, 'root-1.key')},${join(keys, 'root-3.key')}`,
    )
    const refused = ward(env, 'updates', 'publish', repo, '--org', 'acme')
    assert.equal(refused.status, 1)
    assert.match(
      refused.stderr,
      /2\.root\.json is signed by 1 of the 2 root keys of root version 1/,
    )

    const opened = await Ward.open(loadConfig({ env }))
    try {
      const [release] = await opened.updates.listReleases('acme')
      assert.deepEqual(release?.hardwareRevisions, ['B', 'C'])
      assert.equal(release?.hasSbom, true)
    } finally {
      await opened.close()
    }
  })

  test('sign-release refuses a version that is not semantic, naming the flag', () => {
    const result = ward(
      {},
      'updates',
      'sign-release',
      '--repo',
      repo,
      '--image',
      'x',
      '--version',
      '1.2',
      '--models',
      'm',
      '--min-version',
      '1.0.0',
      '--notes',
      'n',
      '--sign-with',
      'k',
    )
    assert.equal(result.status, 1)
    assert.match(result.stderr, /--version must be a semantic version/)
  })
})
