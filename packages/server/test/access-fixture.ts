import { readFileSync } from 'node:fs'
import { Agent, request } from 'node:https'
import { join } from 'node:path'
import { Writable } from 'node:stream'

import { Access } from '../src/access/access.js'
import type { AuditEvent } from '../src/audit/index.js'
import { openBreakGlass, type BreakGlassGrant } from '../src/access/break-glass.js'
import type { CareTeam } from '../src/access/care-teams.js'
import { roles, type Principal, type Role } from '../src/access/principal.js'
import { systemContext } from '../src/context.js'
import { standardDeviceModels } from '../src/devices/index.js'
import { serveWard, type Authenticate, type RunningWard } from '../src/http/index.js'
import { createLogger } from '../src/logging/index.js'
import type { Patient } from '../src/records/index.js'
import type { Organization } from '../src/tenancy/index.js'
import { initializeWard } from '../src/ward.js'
import { freshDatabase, temporaryDirectory, testConfig, type TestDatabase } from './support.js'

/** An HTTP answer, body parsed when it is JSON. */
export interface Answer {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly text: string
  readonly json: unknown
  readonly bytes: Buffer
}

/** The header the test authenticate function reads to pick a principal. */
export const principalHeader = 'x-test-principal'

/** A patient of the fixture with the data the tests read back. */
export interface FixturePatient {
  readonly patient: Patient
  readonly readings: number
}

/**
 * A Ward serving over real HTTPS on a real store, with two organizations — `alpha`, where every
 * test principal belongs, and `beta`, where none does — and the people, patients, care teams
 * and devices the access tests need:
 *
 * - in alpha: patient `own` (on care team `team`, whose members are the clinician and the care
 *   coordinator; the patient principal is this patient) and patient `other` (on `otherTeam`,
 *   which has no test principal as member), each with readings;
 * - in beta: patient `beta` on care team `betaTeam`.
 *
 * Principals are named `<role>` (org roles in alpha, the platform operator in no organization),
 * all with MFA passed; more can be added to `principals` by a test.
 */
export class AccessFixture {
  readonly principals = new Map<string, Principal>()
  readonly logLines: string[] = []
  running!: RunningWard
  access!: Access
  alpha!: Organization
  beta!: Organization
  own!: Patient
  other!: Patient
  betaPatient!: Patient
  team!: CareTeam
  otherTeam!: CareTeam
  betaTeam!: CareTeam
  #directory!: ReturnType<typeof temporaryDirectory>
  #database!: TestDatabase
  #ca!: Buffer
  #agent = new Agent({ keepAlive: true, maxSockets: 4 })
  #counter = 0

  async start(
    dialect: 'sqlite' | 'postgres',
    options: { authenticate?: Authenticate | null; environment?: Record<string, string> } = {},
  ) {
    this.#directory = temporaryDirectory()
    this.#database = await freshDatabase(dialect, this.#directory.path)
    const config = testConfig(join(this.#directory.path, 'home'), this.#database.url, {
      WARD_HTTP_RATE_LIMIT_PER_MINUTE: '1000000',
      ...options.environment,
    })
    await initializeWard(config, systemContext('test'))
    const sink = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        this.logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
        done()
      },
    })
    const authenticate: Authenticate = async (request) => {
      const name = request.headers[principalHeader]
      return typeof name === 'string' ? this.principals.get(name) : undefined
    }
    this.running = await serveWard(
      config,
      createLogger('info', sink),
      options.authenticate === null ? {} : { authenticate: options.authenticate ?? authenticate },
    )
    this.#ca = readFileSync(config.http.certFile)
    const ward = this.running.ward
    this.access = new Access(ward)

    const system = systemContext('test')
    this.alpha = await ward.createOrganization(system, { slug: 'alpha', name: 'Alpha Clinic' })
    this.beta = await ward.createOrganization(system, { slug: 'beta', name: 'Beta Clinic' })
    for (const slug of ['alpha', 'beta']) {
      for (const model of standardDeviceModels) {
        await ward.fleet.createDeviceModel(system, slug, model)
      }
    }
    this.own = await this.createPatient('alpha')
    this.other = await this.createPatient('alpha')
    this.betaPatient = await this.createPatient('beta')
    for (const patient of [this.own, this.other, this.betaPatient]) await this.addReadings(patient)

    this.team = await this.access.createCareTeam(system, this.alpha, 'Cardiology')
    this.otherTeam = await this.access.createCareTeam(system, this.alpha, 'Oncology')
    this.betaTeam = await this.access.createCareTeam(system, this.beta, 'Cardiology')
    await this.access.addPatient(system, this.alpha, this.team, this.own)
    await this.access.addPatient(system, this.alpha, this.otherTeam, this.other)
    await this.access.addPatient(system, this.beta, this.betaTeam, this.betaPatient)
    // The care teams' members are people of their organizations, holding their care roles.
    await this.person(this.alpha, 'user-clinician', 'clinician')
    await this.person(this.alpha, 'user-care-coordinator', 'care-coordinator')
    await this.person(this.beta, 'user-beta-clinician')
    await this.access.addMember(system, this.alpha, this.team, 'user-clinician')
    await this.access.addMember(system, this.alpha, this.team, 'user-care-coordinator')
    await this.access.addMember(system, this.beta, this.betaTeam, 'user-beta-clinician')

    for (const role of roles) this.principals.set(role, this.principal(role))
    return this
  }

  /** A session principal holding `role` in alpha (the platform operator in no organization). */
  principal(role: Role, extra: Partial<Principal> = {}): Principal {
    const organizationId = role === 'platform-operator' ? null : this.alpha.id
    return {
      userId: `user-${role}`,
      organizationId,
      grants: [{ role, organizationId }],
      ...(role === 'patient' ? { patientPseudonym: this.own.pseudonym } : {}),
      method: 'session',
      mfaVerified: true,
      credentialId: `session-${role}`,
      ...extra,
    }
  }

  async createPatient(slug: string): Promise<Patient> {
    return this.running.ward.fleet.createPatient(systemContext('test'), slug, {
      name: { family: 'Testpatient', given: ['Fixture'] },
      birthDate: '1970-01-01',
    })
  }

  /** A fresh device in `slug`, assigned to `patient` when given, in `status`. */
  async device(
    slug: string,
    patient?: Patient,
    status: 'provisioned' | 'suspended' = 'provisioned',
  ): Promise<string> {
    const fleet = this.running.ward.fleet
    const context = systemContext('test')
    const serial = `SN-${++this.#counter}`
    await fleet.createDevice(context, slug, { serial, model: 'Pulse oximeter' })
    if (patient !== undefined) await fleet.assignDevice(context, slug, serial, patient.pseudonym)
    if (status === 'suspended') await fleet.suspendDevice(context, slug, serial)
    return serial
  }

  /** A fresh care team in `organization`, with `patient` in its care when given. */
  /**
   * Rows in the people tables for user id `id` of `organization` (none: a platform operator)
   * holding `role` (null: none), so that the fixture's principals can be put on care teams; the
   * person has no password or session, since the fixture authenticates principals itself.
   */
  async person(organization: Organization | null, id: string, role: Role | null = 'clinician') {
    const now = new Date().toISOString()
    const db = this.running.ward.store.db
    await db
      .insertInto('users')
      .values({
        id,
        organization_id: organization?.id ?? null,
        login_name: id,
        status: 'active',
        patient_pseudonym: null,
        created_at: now,
        updated_at: now,
      })
      .onConflict((conflict) => conflict.doNothing())
      .execute()
    if (role === null) return
    await db
      .insertInto('user_role_grants')
      .values({
        id: `${id}-${role}`,
        user_id: id,
        organization_id: organization?.id ?? null,
        role,
        created_at: now,
      })
      .onConflict((conflict) => conflict.doNothing())
      .execute()
  }

  async careTeam(organization: Organization, patient?: Patient): Promise<CareTeam> {
    const team = await this.access.createCareTeam(
      systemContext('test'),
      organization,
      `Team ${++this.#counter}`,
    )
    if (patient !== undefined) {
      await this.access.addPatient(systemContext('test'), organization, team, patient)
    }
    return team
  }

  /**
   * An open emergency grant to `patient` for a user who is not a test principal: by default a
   * new one each time, since a person may hold only one running grant per patient.
   */
  async grant(
    patient: Patient,
    userId = this.unique('user-night-clinician'),
  ): Promise<BreakGlassGrant> {
    const ward = this.running.ward
    return ward.store.transaction((tx) =>
      openBreakGlass(tx, ward.keyring, {
        userId,
        patient,
        reasonCode: 'emergency-treatment',
        reason: 'fixture emergency reason',
        durationMinutes: 30,
        maxDurationMinutes: 240,
      }),
    )
  }

  unique(prefix: string): string {
    return `${prefix}-${++this.#counter}`
  }

  async addReadings(patient: Patient): Promise<void> {
    const ward = this.running.ward
    const serial = await this.device(
      patient.organizationId === this.alpha?.id ? 'alpha' : 'beta',
      patient,
    )
    const slug = patient.organizationId === this.alpha?.id ? 'alpha' : 'beta'
    const device = (await ward.fleet.listDevices(slug)).find((found) => found.serial === serial)
    const { insertObservations } = await import('../src/records/index.js')
    await ward.store.transaction((tx) =>
      insertObservations(
        tx,
        ward.store.dialect,
        ward.keyring,
        [0, 1, 2].map((index) => ({
          organizationId: patient.organizationId,
          patientId: patient.id,
          deviceId: device?.id ?? '',
          messageId: `m-${index}`,
          code: '8867-4',
          effectiveAt: `2026-03-0${index + 1}T08:00:00Z`,
          resource: {
            resourceType: 'Observation',
            status: 'final',
            code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
            valueQuantity: { value: 60 + index, unit: '/min' },
          },
        })),
      ),
    )
  }

  /** Sends one request over HTTPS as principal `as` (no principal when undefined). */
  call(
    method: string,
    path: string,
    as: string | undefined,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
      const outgoing = request(
        new URL(path, this.running.url),
        {
          method,
          ca: this.#ca,
          agent: this.#agent,
          servername: 'localhost',
          headers: {
            ...(as === undefined ? {} : { [principalHeader]: as }),
            ...(payload === undefined
              ? {}
              : { 'content-type': 'application/json', 'content-length': payload.length }),
            ...headers,
          },
        },
        (incoming) => {
          const chunks: Buffer[] = []
          incoming.on('data', (chunk: Buffer) => chunks.push(chunk))
          incoming.on('end', () => {
            const bytes = Buffer.concat(chunks)
            const text = bytes.toString('utf8')
            let json: unknown
            try {
              json = JSON.parse(text)
            } catch {
              json = undefined
            }
            resolve({
              status: incoming.statusCode ?? 0,
              headers: incoming.headers,
              text,
              json,
              bytes,
            })
          })
        },
      )
      outgoing.on('error', reject)
      outgoing.end(payload)
    })
  }

  /** Every audit event body of log `log`, parsed, oldest first. */
  async auditEvents(log: string): Promise<AuditEvent[]> {
    const db = this.running.ward.store.db
    const rows = await db
      .selectFrom('audit_entries')
      .innerJoin('audit_logs', 'audit_logs.id', 'audit_entries.log_id')
      .select('audit_entries.body')
      .where('audit_logs.name', '=', log)
      .orderBy('audit_entries.idx')
      .execute()
    return rows.map((row) => JSON.parse(Buffer.from(row.body).toString('utf8')) as AuditEvent)
  }

  /** Every stored audit event body of every log, as text. */
  async allAuditText(): Promise<string> {
    const rows = await this.running.ward.store.db
      .selectFrom('audit_entries')
      .select('body')
      .execute()
    return rows.map((row) => Buffer.from(row.body).toString('utf8')).join('\n')
  }

  async stop(): Promise<void> {
    this.#agent.destroy()
    await this.running.close()
    await this.#database.drop()
    this.#directory.remove()
  }
}
