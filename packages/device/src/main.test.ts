import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'

import { SERVER_NAME, TestDeviceEndpoint, makePki } from '../test/device-endpoint.js'
import { spo2, temporaryDirectory } from '../test/support.js'

// The command is tested as users run it: the compiled build.
const command = new URL('../dist/main.js', import.meta.url).pathname
const execute = promisify(execFile)

async function wardDevice(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execute(process.execPath, [command, ...args])
    return { code: 0, stdout, stderr }
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string }
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr }
  }
}

test('prints help with exit 0, and exits 2 naming the mistake for bad usage', async () => {
  const [help, unknown, missing, bad] = await Promise.all([
    wardDevice(['--help']),
    wardDevice(['launch']),
    wardDevice(['send']),
    wardDevice(['simulate', '--devices', 'many']),
  ])
  assert.equal(help.code, 0)
  for (const word of ['enroll', 'send', 'simulate', '--server-name', '--tokens', '--template']) {
    assert.ok(help.stdout.includes(word), `help mentions ${word}`)
  }
  assert.equal(unknown.code, 2)
  assert.match(unknown.stderr, /unknown command: launch/)
  assert.equal(missing.code, 2)
  assert.match(missing.stderr, /missing --dir/)
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /--devices must be positive/)
})

test('enrolls, sends a Bundle of readings and simulates a small fleet from the command line', async (t) => {
  const pki = await makePki()
  const endpoint = await TestDeviceEndpoint.start({
    pki,
    tokens: { 'token-a': 'PO-0100', 'sim-0': 'PO-0200', 'sim-1': 'PO-0201' },
  })
  t.after(() => endpoint.close())
  const base = temporaryDirectory(t)
  const caFile = join(base, 'ca.pem')
  writeFileSync(caFile, pki.serverCa.certificatePem)
  const connection = ['--url', endpoint.url, '--server-name', SERVER_NAME, '--ca', caFile]
  const device = join(base, 'device')

  const enrolled = await wardDevice([
    'enroll',
    ...connection,
    '--serial',
    'PO-0100',
    '--token',
    'token-a',
    '--dir',
    device,
  ])
  assert.equal(enrolled.code, 0, enrolled.stderr)
  assert.match(enrolled.stdout, /^enrolled PO-0100 as device [0-9a-f-]+/)

  const bundleFile = join(base, 'bundle.json')
  writeFileSync(
    bundleFile,
    JSON.stringify({
      resourceType: 'Bundle',
      type: 'collection',
      entry: [{ resource: spo2(95) }, { resource: spo2(96) }, { resource: spo2(97) }],
    }),
  )
  const sent = await wardDevice(['send', '--dir', device, '--file', bundleFile])
  assert.equal(sent.code, 0, sent.stderr)
  assert.match(sent.stdout, /queued 3; accepted 3, duplicate 0, rejected 0, still queued 0/)
  assert.equal(endpoint.stored.size, 3)

  const tokens = join(base, 'tokens.txt')
  writeFileSync(tokens, '# serial token\nPO-0200 sim-0\nPO-0201 sim-1\n')
  const simulated = await wardDevice([
    'simulate',
    ...connection,
    '--devices',
    '2',
    '--rate',
    '5',
    '--duration',
    '1',
    '--dir',
    join(base, 'fleet'),
    '--tokens',
    tokens,
  ])
  assert.equal(simulated.code, 0, simulated.stderr)
  assert.match(simulated.stdout, /^done devices=2 /m)
  assert.match(simulated.stdout, /generated 10, refused 0, accepted 10/)
  assert.equal(endpoint.stored.size, 13)
})
