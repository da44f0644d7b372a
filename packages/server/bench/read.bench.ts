/**
 * Read benchmark on the embedded SQLite store: clinicians reading one patient's last 24 hours
 * of readings out of a store of a million, through the full PHI read path — the facts an
 * access decision needs (the patient exists, in this organization), then one transaction that
 * opens the patient's data key once, reads one page through the patient-and-time index,
 * decrypts every reading and appends the read's audit event — measured beside the same query
 * run bare, in the same run: the same patient lookup and the same rows, without decryption,
 * audit or transaction.
 *
 * The store is seeded through the real sealing path (`insertObservations`, each reading sealed
 * under its patient's data key) in transactions of 50,000 readings. Seeding takes minutes, so
 * the seeded home (master key, key shares, database) is kept under
 * `<tmpdir>/ward-read-bench/<readings>-<patients>` and copied afresh for each run, so that one
 * run's audit events do not pile up into the next; delete that folder to seed again.
 *
 * A third phase, reported between the two, runs the full read without its audit append, to
 * show what the audit event costs; it is not a path Ward offers. Then the full and the bare
 * read run again with several clinicians reading at once (`WARD_BENCH_CLINICIANS`, default 8),
 * where reads that arrive together commit together.
 *
 * `WARD_BENCH_SECONDS` sets each phase's length (default 20), `WARD_BENCH_READINGS` the size of
 * the store (default 1,000,000), `WARD_BENCH_PATIENTS` how many patients share it (default
 * 1,000; the readings are spread evenly over ten days, so each read returns about
 * readings ÷ patients ÷ 10 of them).
 */
import { randomUUID } from 'node:crypto'
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'

import { Access, decide, type Principal } from '../src/access/index.js'
import {
  Ward,
  findOrganizationById,
  initializeWard,
  loadConfig,
  systemContext,
  type OperationContext,
  type WardConfig,
} from '../src/index.js'
import {
  insertObservations,
  type FhirObservation,
  type ObservationInput,
  type Patient,
} from '../src/records/index.js'
import { findPatientByPseudonym } from '../src/records/patients.js'
import { checkPageQuery, readReadingPage } from '../src/records/readings.js'

const seconds = Number(process.env['WARD_BENCH_SECONDS'] ?? 20)
const totalReadings = Number(process.env['WARD_BENCH_READINGS'] ?? 1_000_000)
const patientCount = Number(process.env['WARD_BENCH_PATIENTS'] ?? 1000)
const clinicians = Number(process.env['WARD_BENCH_CLINICIANS'] ?? 8)
const spanDays = 10
const seedTransaction = 50_000
// 2: readings sealed with their row's clear columns bound in; those sealed before do not open.
const seedFormat = 2
const day = 86_400_000

const cacheRoot = join(tmpdir(), 'ward-read-bench')
const cache = join(cacheRoot, `${totalReadings}-${patientCount}`)
const work = mkdtempSync(join(tmpdir(), 'ward-read-bench-run-'))

/** What the seeded store holds, beyond the database itself. */
interface Seeded {
  readonly format: number
  readonly organizationId: string
  readonly pseudonyms: readonly string[]
  /** The end of the seeded ten days: "now" for every read. */
  readonly end: string
}

function configFor(home: string): WardConfig {
  return loadConfig({
    env: {
      WARD_HOME: home,
      WARD_HOST_NAME: 'ward.bench',
      WARD_LOG_LEVEL: 'silent',
    },
  })
}

const models = [
  {
    code: 'urn:iso:std:iso:11073:10101|150456',
    resource: (value: number) => ({
      code: {
        coding: [
          { system: 'urn:iso:std:iso:11073:10101', code: '150456' },
          { system: 'http://loinc.org', code: '2708-6' },
        ],
      },
      valueQuantity: { value, unit: '%', system: 'http://unitsofmeasure.org', code: '%' },
    }),
    value: (i: number) => 92 + (i % 8),
  },
  {
    code: 'urn:iso:std:iso:11073:10101|149530',
    resource: (value: number) => ({
      code: {
        coding: [
          { system: 'urn:iso:std:iso:11073:10101', code: '149530' },
          { system: 'http://loinc.org', code: '8867-4' },
        ],
      },
      valueQuantity: { value, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
    }),
    value: (i: number) => 55 + (i % 40),
  },
  {
    code: 'urn:iso:std:iso:11073:10101|150020',
    resource: (value: number) => ({
      code: {
        coding: [
          { system: 'urn:iso:std:iso:11073:10101', code: '150020' },
          { system: 'http://loinc.org', code: '85354-9' },
        ],
      },
      component: [
        {
          code: { coding: [{ system: 'urn:iso:std:iso:11073:10101', code: '150021' }] },
          valueQuantity: {
            value,
            unit: 'mmHg',
            system: 'http://unitsofmeasure.org',
            code: 'mm[Hg]',
          },
        },
        {
          code: { coding: [{ system: 'urn:iso:std:iso:11073:10101', code: '150022' }] },
          valueQuantity: {
            value: value - 40,
            unit: 'mmHg',
            system: 'http://unitsofmeasure.org',
            code: 'mm[Hg]',
          },
        },
      ],
    }),
    value: (i: number) => 110 + (i % 40),
  },
  {
    code: 'urn:iso:std:iso:11073:10101|160368',
    resource: (value: number) => ({
      code: { coding: [{ system: 'urn:iso:std:iso:11073:10101', code: '160368' }] },
      valueQuantity: { value, unit: 'mg/dL', system: 'http://unitsofmeasure.org', code: 'mg/dL' },
    }),
    value: (i: number) => 80 + (i % 90),
  },
]

async function seed(): Promise<Seeded> {
  rmSync(cache, { recursive: true, force: true })
  mkdirSync(cache, { recursive: true, mode: 0o700 })
  const config = configFor(join(cache, 'home'))
  const context = systemContext('bench-seed')
  await initializeWard(config, context)
  const ward = await Ward.open(config)
  const started = performance.now()
  try {
    const organization = await ward.createOrganization(context, { slug: 'bench', name: 'Bench' })
    const patients: Patient[] = []
    for (let i = 0; i < patientCount; i += 1) {
      const number = String(i + 1).padStart(5, '0')
      patients.push(
        await ward.fleet.createPatient(context, 'bench', {
          name: { family: `Benchpatient-${number}`, given: ['Test'] },
          birthDate: '1950-01-01',
        }),
      )
    }
    console.log(`seeded ${patientCount} patients in ${secondsSince(started)} s`)

    // Readings arrive over time from every patient at once, as ingest writes them.
    const end = Date.UTC(2026, 10, 1)
    const start = end - spanDays * day
    const perPatient = Math.ceil(totalReadings / patientCount)
    const step = (spanDays * day) / perPatient
    let rows: ObservationInput[] = []
    let written = 0
    const flush = async () => {
      await ward.store.transaction((tx) =>
        insertObservations(tx, ward.store.dialect, ward.keyring, rows),
      )
      written += rows.length
      rows = []
      if (written % 200_000 === 0) {
        console.log(`  ${written.toLocaleString('en')} readings, ${secondsSince(started)} s`)
      }
    }
    for (let s = 0; s < perPatient && written + rows.length < totalReadings; s += 1) {
      for (let p = 0; p < patientCount && written + rows.length < totalReadings; p += 1) {
        const patient = patients[p] as Patient
        const model = models[p % models.length] as (typeof models)[number]
        // Each patient on its own phase, a few minutes of jitter on each reading.
        const time = start + s * step + ((p * 7919) % step) + ((s * 104729 + p) % 300_000)
        const effectiveAt = new Date(Math.min(time, end - 1)).toISOString()
        const messageId = randomUUID()
        const resource: FhirObservation = {
          resourceType: 'Observation',
          status: 'final',
          category: [
            {
              coding: [
                {
                  system: 'http://terminology.hl7.org/CodeSystem/observation-category',
                  code: 'vital-signs',
                },
              ],
            },
          ],
          ...model.resource(model.value(s + p)),
          subject: { reference: `Patient/${patient.pseudonym}` },
          effectiveDateTime: effectiveAt,
          identifier: [{ system: 'urn:ward:device-message-id', value: messageId }],
        }
        rows.push({
          organizationId: organization.id,
          patientId: patient.id,
          deviceId: `bench-device-${p}`,
          messageId,
          code: model.code,
          effectiveAt,
          resource,
        })
        if (rows.length === seedTransaction) await flush()
      }
    }
    if (rows.length > 0) await flush()
    console.log(
      `seeded ${written.toLocaleString('en')} readings in ${secondsSince(started)} s ` +
        `(${Math.round(written / ((performance.now() - started) / 1000)).toLocaleString('en')}/s)`,
    )
    const seeded: Seeded = {
      format: seedFormat,
      organizationId: organization.id,
      pseudonyms: patients.map((patient) => patient.pseudonym),
      end: new Date(end).toISOString(),
    }
    writeFileSync(join(cache, 'seeded.json'), JSON.stringify(seeded))
    return seeded
  } finally {
    await ward.close()
  }
}

function loadSeeded(): Seeded | undefined {
  const file = join(cache, 'seeded.json')
  if (!existsSync(file)) return undefined
  const seeded = JSON.parse(readFileSync(file, 'utf8')) as Seeded
  return seeded.format === seedFormat ? seeded : undefined
}

function secondsSince(start: number): string {
  return ((performance.now() - start) / 1000).toFixed(1)
}

interface PhaseResult {
  readonly reads: number
  readonly readings: number
  readonly perSecond: number
  readonly p50: number
  readonly p99: number
}

/**
 * Runs `read` back to back for `seconds` in `clinicians` concurrent loops, each on patients
 * picked at random.
 */
async function phase(
  seeded: Seeded,
  read: (pseudonym: string) => Promise<number>,
  clinicians = 1,
): Promise<PhaseResult> {
  const latencies: number[] = []
  let readings = 0
  const started = performance.now()
  const until = started + seconds * 1000
  const loop = async (seed: number) => {
    let pick = seed
    while (performance.now() < until) {
      pick = (pick * 1103515245 + 12345) % 2147483648
      const pseudonym = seeded.pseudonyms[pick % seeded.pseudonyms.length] as string
      const begin = performance.now()
      const count = await read(pseudonym)
      latencies.push(performance.now() - begin)
      readings += count
    }
  }
  await Promise.all(Array.from({ length: clinicians }, (_, i) => loop(12345 + i * 7919)))
  const elapsed = (performance.now() - started) / 1000
  latencies.sort((a, b) => a - b)
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0
  return {
    reads: latencies.length,
    readings,
    perSecond: latencies.length / elapsed,
    p50: at(0.5),
    p99: at(0.99),
  }
}

async function main(): Promise<void> {
  console.log(
    `read benchmark: ${totalReadings.toLocaleString('en')} readings, ${patientCount} patients, ` +
      `${seconds} s a phase, on ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node.js ${process.version}`,
  )
  let seeded = loadSeeded()
  if (seeded === undefined) {
    console.log(`seeding ${cache} (kept for later runs)`)
    seeded = await seed()
  } else {
    console.log(`using the store seeded before in ${cache}`)
  }

  const copyStarted = performance.now()
  cpSync(join(cache, 'home'), join(work, 'home'), { recursive: true })
  console.log(`copied the seeded home in ${secondsSince(copyStarted)} s`)
  const ward = await Ward.open(configFor(join(work, 'home')))
  try {
    const organizationId = seeded.organizationId
    const to = seeded.end
    const from = new Date(Date.parse(to) - day).toISOString()
    // The clinician's care team holds every seeded patient, so each read is allowed by the
    // policy's care-team rule after the same fact lookups an API request makes.
    const access = new Access(ward)
    const organization = await findOrganizationById(ward.store.db, organizationId)
    const userId = randomUUID()
    const setup = systemContext('bench')
    const team = await access.createCareTeam(setup, organization, `bench-${userId}`)
    await access.addMember(setup, organization, team, userId)
    for (const pseudonym of seeded.pseudonyms) {
      const patient = await findPatientByPseudonym(ward.store.db, organizationId, pseudonym)
      await access.addPatient(setup, organization, team, patient)
    }
    const principal: Principal = {
      userId,
      organizationId,
      grants: [{ role: 'clinician', organizationId }],
      method: 'session',
      mfaVerified: true,
      credentialId: randomUUID(),
    }
    const clinician: OperationContext = {
      actor: { type: 'user', id: userId, role: 'clinician', address: '127.0.0.1' },
      requestId: randomUUID(),
      purposeOfUse: 'TREAT',
      organizationId,
      policyRule: 'unset',
    }
    const authorize = async (pseudonym: string) => {
      await findPatientByPseudonym(ward.store.db, organizationId, pseudonym)
      const resource = { type: 'patient' as const, organizationId, patientPseudonym: pseudonym }
      const decision = decide({
        principal,
        action: 'observation.read',
        resource,
        purposeOfUse: 'TREAT',
        facts: await access.facts(principal, resource),
        mfa: ward.config.auth.mfa,
      })
      if (!decision.allowed) throw new Error(`the bench clinician was denied: ${decision.rule}`)
      return decision.rule
    }

    const full = async (pseudonym: string) => {
      const policyRule = await authorize(pseudonym)
      const page = await ward.readings.readReadings(
        { ...clinician, requestId: randomUUID(), policyRule },
        { patient: pseudonym, from, to, limit: 1000 },
      )
      return page.readings.length
    }
    // Where the time goes: the full read's transaction, key and decryption without the audit
    // append (a transaction that writes nothing commits without waiting for the disk).
    const unaudited = async (pseudonym: string) => {
      await authorize(pseudonym)
      const page = await ward.store.transaction(async (tx) => {
        const patient = await findPatientByPseudonym(tx, organizationId, pseudonym)
        return readReadingPage(
          tx,
          ward.keyring,
          patient,
          checkPageQuery({ range: { from, to }, limit: 1000 }),
        )
      })
      return page.readings.length
    }
    const bare = async (pseudonym: string) => {
      const patient = await ward.store.db
        .selectFrom('patients')
        .select('id')
        .where('organization_id', '=', organizationId)
        .where('pseudonym', '=', pseudonym)
        .executeTakeFirstOrThrow()
      const rows = await ward.store.db
        .selectFrom('observations')
        .selectAll()
        .where('organization_id', '=', organizationId)
        .where('patient_id', '=', patient.id)
        .where('effective_at', '>=', from)
        .where('effective_at', '<', to)
        .orderBy('effective_at')
        .orderBy('id')
        .limit(1001)
        .execute()
      return rows.length
    }

    // A short warm-up of each, so that neither phase pays for the page cache alone.
    const warmSeconds = Math.min(2, seconds)
    for (const read of [bare, full]) {
      const until = performance.now() + warmSeconds * 1000
      for (let i = 0; performance.now() < until; i += 1) {
        await read(seeded.pseudonyms[i % seeded.pseudonyms.length] as string)
      }
    }

    const fullResult = await phase(seeded, full)
    const unauditedResult = await phase(seeded, unaudited)
    const bareResult = await phase(seeded, bare)
    const fullConcurrent = await phase(seeded, full, clinicians)
    const bareConcurrent = await phase(seeded, bare, clinicians)
    const print = (label: string, result: PhaseResult) =>
      console.log(
        `${label.padEnd(34)} ${Math.round(result.perSecond).toLocaleString('en').padStart(7)} reads/s` +
          `  p50 ${result.p50.toFixed(2)} ms  p99 ${result.p99.toFixed(2)} ms` +
          `  (${(result.readings / Math.max(1, result.reads)).toFixed(1)} readings a read, ${result.reads} reads)`,
      )
    print('full: authorize, decrypt, audit', fullResult)
    print('  of which without the audit append', unauditedResult)
    print('bare: same query, no decrypt/audit', bareResult)
    console.log(
      `full ÷ bare reads/s: ${(fullResult.perSecond / bareResult.perSecond).toFixed(2)}; ` +
        `p99 full ÷ bare: ${(fullResult.p99 / bareResult.p99).toFixed(2)}`,
    )
    print(`full, ${clinicians} clinicians at once`, fullConcurrent)
    print(`bare, ${clinicians} clinicians at once`, bareConcurrent)
    console.log(
      `${clinicians} at once, full ÷ bare reads/s: ` +
        `${(fullConcurrent.perSecond / bareConcurrent.perSecond).toFixed(2)}; ` +
        `p99 full ÷ bare: ${(fullConcurrent.p99 / bareConcurrent.p99).toFixed(2)}`,
    )
  } finally {
    await ward.close()
    rmSync(work, { recursive: true, force: true })
  }
}

await main()
