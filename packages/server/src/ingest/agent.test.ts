import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { describe, test } from 'node:test'

import {
  DeviceAgent,
  DurableQueue,
  enroll,
  type AgentCounters,
  type DeviceClient,
  type Observation,
} from '@ward/device'

import {
  dialects,
  freshDatabase,
  temporaryDirectory,
  testConfig,
  testEnvironment,
} from '../../test/support.js'
import { systemContext } from '../context.js'
import { readObservations } from '../records/index.js'
import { Ward, initializeWard } from '../ward.js'
import {
  createTestOrganization,
  patienceMs,
  registerTestDevice,
  spo2Reading,
  startTestWard,
  type TestOrganization,
} from './test-support.js'

const root = new URL('../../../../', import.meta.url).pathname
const serveScript = join(root, 'packages/server/test/serve-ward.ts')
const fastRetry = { baseDelayMs: 50, maxDelayMs: 500 }

/** An SpO2 reading as a device agent queues it: no message id yet, the queue gives one. */
function reading(percent: number): Observation {
  const observation = spo2Reading('unused', percent)
  delete observation['identifier']
  return observation as Observation
}

/** A glucose reading, which no pulse oximeter may send. */
function glucose(): Observation {
  return {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '15074-8' }] },
    effectiveDateTime: new Date().toISOString(),
    valueQuantity: {
      value: 6.3,
      unit: 'mmol/L',
      system: 'http://unitsofmeasure.org',
      code: 'mmol/L',
    },
  }
}

/** One simulated device: its agent's client, queue and agent, in a directory of its own. */
interface RunningAgent {
  readonly client: DeviceClient
  readonly queue: DurableQueue
  readonly agent: DeviceAgent
  readonly enqueued: string[]
}

/** Enrolls a device with the device agent SDK and starts its agent. */
async function startAgent(options: {
  directory: string
  apiUrl: string
  deviceUrl: string
  organization: TestOrganization
  caPem: string
  serial: string
  token: string
  batchSize: number
  clock?: () => number
}): Promise<RunningAgent> {
  const client = await enroll({
    url: options.deviceUrl,
    enrollmentUrl: options.apiUrl,
    serverName: options.organization.serverName,
    caPem: options.caPem,
    serial: options.serial,
    token: options.token,
    keyDirectory: join(options.directory, 'identity'),
  })
  const queue = await DurableQueue.open(join(options.directory, 'queue'))
  const agent = new DeviceAgent({
    queue,
    client,
    batchSize: options.batchSize,
    retry: fastRetry,
    certificate: client,
    ...(options.clock === undefined ? {} : { now: options.clock }),
  })
  agent.start()
  return { client, queue, agent, enqueued: [] }
}

async function stopAgent(running: RunningAgent): Promise<void> {
  await running.agent.stop()
  running.client.close()
  await running.queue.close()
}

function total(agents: readonly RunningAgent[], field: keyof AgentCounters): number {
  return agents.reduce((sum, running) => sum + running.agent.counters[field], 0)
}

/** A Ward serving in a child process, which the test may kill. */
interface WardProcess {
  readonly child: ChildProcess
  readonly url: string
  readonly deviceUrl: string
  readonly exited: Promise<void>
}

/** Starts `serve-ward.ts` with `env` and resolves once it logs that it is listening. */
function startWardProcess(env: Record<string, string>): Promise<WardProcess> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env }
  // Not a test process itself: the test runner's marker would change how Node starts it.
  delete childEnv['NODE_TEST_CONTEXT']
  const child = spawn(
    process.execPath,
    ['--conditions=@ward/source', '--import', 'tsx', serveScript],
    { cwd: root, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const errors: string[] = []
  child.stderr?.on('data', (chunk: Buffer) => errors.push(chunk.toString('utf8')))
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
    lines.on('line', (line) => {
      const entry = JSON.parse(line) as { msg?: string; url?: string; deviceUrl?: string }
      if (entry.msg === 'listening' && entry.url !== undefined && entry.deviceUrl !== undefined) {
        resolve({ child, url: entry.url, deviceUrl: entry.deviceUrl, exited })
      }
    })
    void exited.then(() => reject(new Error(`Ward exited before listening: ${errors.join('')}`)))
  })
}

async function waitUntil(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

for (const { dialect, skip } of dialects) {
  describe(`the device agent against Ward's endpoint on ${dialect}`, { skip }, () => {
    test('enrolls on the API, delivers a few hundred readings, sets aside what is refused, renews', async () => {
      const testWard = await startTestWard(dialect)
      let running: RunningAgent | undefined
      try {
        const acme = await createTestOrganization(testWard.ward, 'acme')
        const { serial, token } = await registerTestDevice(testWard.ward, acme)
        running = await startAgent({
          directory: join(testWard.directory, 'device'),
          apiUrl: testWard.running.url,
          deviceUrl: testWard.running.devices.url,
          organization: acme,
          caPem: testWard.serverCaPem,
          serial,
          token,
          batchSize: 50,
        })

        const ids: string[] = []
        for (let i = 0; i < 300; i++) ids.push(await running.queue.enqueue(reading(85 + (i % 15))))
        const refused = [
          await running.queue.enqueue(glucose()),
          await running.queue.enqueue(glucose()),
        ]
        await running.agent.drain(AbortSignal.timeout(2 * patienceMs))

        const counters = running.agent.counters
        assert.equal(counters.accepted, 300)
        assert.equal(counters.duplicate, 0)
        assert.equal(counters.rejected, 2)
        assert.equal(counters.queued, 0)
        const set = await running.queue.rejectedReadings()
        assert.deepEqual(
          set.map((rejected) => rejected.messageId),
          refused,
        )
        assert.match(set[0]?.reason ?? '', /is not a measurement this device model may send/)

        const stored = await readObservations(testWard.ward.store.db, testWard.ward.keyring, {
          organizationId: acme.id,
          patientId: acme.patient.id,
        })
        assert.deepEqual(new Set(stored.map((observation) => observation.messageId)), new Set(ids))
        assert.ok(
          stored.every((observation) => observation.deviceId === running?.client.identity.deviceId),
        )

        const renewed = await running.client.renew()
        assert.equal(renewed.deviceId, running.client.identity.deviceId)
        const after = await running.queue.enqueue(reading(99))
        await running.agent.drain(AbortSignal.timeout(patienceMs))
        assert.equal(running.agent.counters.accepted, 301)
        const again = await readObservations(testWard.ward.store.db, testWard.ward.keyring, {
          organizationId: acme.id,
          patientId: acme.patient.id,
        })
        assert.ok(again.some((observation) => observation.messageId === after))

        // Suspended, the device is refused at the handshake, and its agent says it may be that.
        await testWard.ward.fleet.suspendDevice(systemContext('test'), 'acme', serial)
        const batch = [
          { messageId: 'x', enqueuedAt: new Date().toISOString(), observation: reading(97) },
        ]
        // A request already on its way over the open connection may be answered 403 before the
        // connection is cut; the next one needs a new handshake.
        await running.client.sendBatch(batch).catch(() => undefined)
        await assert.rejects(
          running.client.sendBatch(batch),
          /unreachable \(.+\), or it refused this device's certificate at the handshake/,
        )
      } finally {
        if (running !== undefined) await stopAgent(running)
        await testWard.close()
      }
    })

    test('renews its certificate on its own once two thirds of its lifetime have passed', async () => {
      const testWard = await startTestWard(dialect)
      let running: RunningAgent | undefined
      try {
        const acme = await createTestOrganization(testWard.ward, 'acme')
        const { serial, token } = await registerTestDevice(testWard.ward, acme)
        let now = Date.now()
        running = await startAgent({
          directory: join(testWard.directory, 'device'),
          apiUrl: testWard.running.url,
          deviceUrl: testWard.running.devices.url,
          organization: acme,
          caPem: testWard.serverCaPem,
          serial,
          token,
          batchSize: 10,
          clock: () => now,
        })
        await running.queue.enqueue(reading(97))
        await running.agent.drain(AbortSignal.timeout(patienceMs))
        const first = running.client.certificateValidity()

        // Past two thirds of the first certificate's life: the next batch goes out renewed.
        const lifetime = first.notAfter.getTime() - first.notBefore.getTime()
        now = first.notBefore.getTime() + lifetime * 0.7
        const renewed = new Promise<void>((resolve) => running?.agent.once('renewed', resolve))
        await running.queue.enqueue(reading(98))
        await running.agent.drain(AbortSignal.timeout(patienceMs))
        await renewed
        assert.notEqual(running.client.certificateValidity(), first)
        assert.equal(running.agent.counters.accepted, 2)

        // Halfway through the renewed certificate's life, no further renewal happens.
        const second = running.client.certificateValidity()
        now =
          second.notBefore.getTime() + (second.notAfter.getTime() - second.notBefore.getTime()) / 2
        let again = false
        running.agent.once('renewed', () => (again = true))
        await running.queue.enqueue(reading(99))
        await running.agent.drain(AbortSignal.timeout(patienceMs))
        assert.equal(again, false)
        assert.equal(running.agent.counters.accepted, 3)
      } finally {
        if (running !== undefined) await stopAgent(running)
        await testWard.close()
      }
    })

    test('stores exactly what the agents saw acknowledged when Ward is killed mid-stream and restarted', async () => {
      const scratch = temporaryDirectory()
      const database = await freshDatabase(dialect, scratch.path)
      const home = join(scratch.path, 'home')
      const env = {
        ...testEnvironment(home, database.url),
        WARD_HTTP_HOST: '127.0.0.1',
        WARD_DEVICE_HOST: '127.0.0.1',
      }
      const config = testConfig(home, database.url, env)
      const agents: RunningAgent[] = []
      let ward: WardProcess | undefined
      try {
        await initializeWard(config, systemContext('test'))
        const setup = await Ward.open(config)
        let acme: TestOrganization
        const devices: { serial: string; token: string }[] = []
        try {
          acme = await createTestOrganization(setup, 'acme')
          for (let i = 0; i < 3; i++) devices.push(await registerTestDevice(setup, acme))
        } finally {
          await setup.close()
        }

        ward = await startWardProcess(env)
        const caPem = readFileSync(config.http.certFile, 'utf8')
        for (const [index, device] of devices.entries()) {
          agents.push(
            await startAgent({
              directory: join(scratch.path, `device-${index}`),
              apiUrl: ward.url,
              deviceUrl: ward.deviceUrl,
              organization: acme,
              caPem,
              ...device,
              batchSize: 10,
            }),
          )
        }

        // Each device makes a reading every 10 ms, before, during and after the crash. Its
        // last 50 wait for the crash, so that however slowly a loaded machine delivers, the
        // crash never comes after the devices are done.
        const perDevice = 200
        let crash!: () => void
        const crashed = new Promise<void>((resolve) => (crash = resolve))
        let producing = true
        const producers = agents.map(async (running, index) => {
          for (let i = 0; i < perDevice; i++) {
            if (i === perDevice - 50) await crashed
            running.enqueued.push(await running.queue.enqueue(reading(80 + ((i + index) % 20))))
            await new Promise((resolve) => setTimeout(resolve, 10))
          }
        })
        void Promise.all(producers).finally(() => {
          producing = false
        })

        await waitUntil(() => total(agents, 'accepted') >= 120, patienceMs, 'readings acknowledged')
        ward.child.kill('SIGKILL')
        await ward.exited
        crash()
        const acknowledgedBeforeCrash = total(agents, 'accepted') + total(agents, 'duplicate')
        assert.ok(producing, 'the crash came while the devices were still making readings')

        const { port: apiPort } = new URL(ward.url)
        const { port: devicePort } = new URL(ward.deviceUrl)
        ward = await startWardProcess({
          ...env,
          WARD_HTTP_PORT: apiPort,
          WARD_DEVICE_PORT: devicePort,
        })
        await Promise.all(producers)
        await Promise.all(
          agents.map((running) => running.agent.drain(AbortSignal.timeout(2 * patienceMs))),
        )

        const acknowledged = total(agents, 'accepted') + total(agents, 'duplicate')
        assert.ok(acknowledged > acknowledgedBeforeCrash, 'delivery went on after the restart')
        assert.equal(total(agents, 'rejected'), 0)
        assert.equal(total(agents, 'queued'), 0)
        assert.ok(total(agents, 'retries') > 0, 'the agents met the crash')

        ward.child.kill('SIGTERM')
        await ward.exited
        ward = undefined

        const check = await Ward.open(config)
        try {
          const rows = await check.store.db
            .selectFrom('observations')
            .select(['device_id', 'message_id'])
            .where('organization_id', '=', acme.id)
            .execute()
          assert.equal(rows.length, acknowledged, 'stored observations = acknowledged readings')
          const keys = rows.map((row) => `${row.device_id}/${row.message_id}`)
          assert.equal(new Set(keys).size, rows.length, 'no message id is stored twice')
          const expected = agents.flatMap((running) =>
            running.enqueued.map((id) => `${running.client.identity.deviceId}/${id}`),
          )
          assert.equal(expected.length, agents.length * perDevice)
          assert.deepEqual(new Set(keys), new Set(expected))
        } finally {
          await check.close()
        }
      } finally {
        for (const running of agents) await stopAgent(running)
        if (ward !== undefined) {
          ward.child.kill('SIGKILL')
          await ward.exited
        }
        await database.drop()
        scratch.remove()
      }
    })
  })
}
