import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { AccessFixture } from '../../test/access-fixture.js'
import { dialects } from '../../test/support.js'
import { roles, type Role } from '../access/principal.js'
import { systemContext } from '../context.js'
import {
  findDevice,
  findDeviceModel,
  setDeviceStatus,
  standardDeviceModels,
} from '../devices/index.js'
import { testManufacturerCa, testManufacturerCrl } from '../identity/test-support.js'
import type { Organization } from '../tenancy/index.js'
import type { Patient } from '../records/index.js'
import { platformLogName } from '../audit/index.js'
import { apiRoutes } from './routes/api.js'
import { fhirRoutes } from './routes/fhir.js'

/** Every route under the policy: the route table and the FHIR API. */
const routes = [...apiRoutes, ...fhirRoutes]

/**
 * The four situations every route is tried in, for every role:
 *
 * - `ownOrganization`: alpha, the principal's organization; resources not tied to a patient
 *   (an unassigned device, the clinician's care team); where a patient is named, patient `own`.
 * - `otherOrganization`: beta, where the principal holds no role; beta's resources.
 * - `ownPatient`: alpha, patient `own` — on the clinician's and coordinator's care team, and
 *   the patient principal themself — and what is tied to them (their device, their team).
 * - `otherPatient`: alpha, patient `other` — on a care team no test principal is on — and
 *   what is tied to them.
 */
const contexts = ['ownOrganization', 'otherOrganization', 'ownPatient', 'otherPatient'] as const
type Context = (typeof contexts)[number]

/** A: allowed (2xx). D: denied (403). H: hidden, answered as not found (404). */
type Cell = 'A' | 'D' | 'H'

/**
 * The expected answer of every route for every role, in the order of `contexts`. Written out
 * by hand: a change of the policy or the route table that changes any cell fails the test.
 */
const matrix: Record<string, Record<Role, string>> = {
  'GET /v1/organizations': row({ 'platform-operator': 'AAAA' }, 'DDDD', 'AAAA'),
  'GET /v1/organizations/:organization/device-models': org([
    'support',
    'device-engineer',
    'org-admin',
  ]),
  'POST /v1/organizations/:organization/device-models': org(['device-engineer', 'org-admin']),
  'GET /v1/organizations/:organization/devices': org([
    'support',
    'device-engineer',
    'security-officer',
    'org-admin',
  ]),
  'POST /v1/organizations/:organization/devices': org(['device-engineer', 'org-admin']),
  'PUT /v1/organizations/:organization/devices/:serial/patient': org(['support', 'org-admin']),
  'POST /v1/organizations/:organization/devices/:serial/enrollment-tokens': org([
    'device-engineer',
    'org-admin',
  ]),
  'PUT /v1/organizations/:organization/manufacturers/:manufacturer/crl': org([
    'device-engineer',
    'security-officer',
    'org-admin',
  ]),
  'POST /v1/organizations/:organization/devices/:serial/suspension': org([
    'support',
    'device-engineer',
    'security-officer',
    'org-admin',
  ]),
  'DELETE /v1/organizations/:organization/devices/:serial/suspension': org([
    'support',
    'device-engineer',
    'security-officer',
    'org-admin',
  ]),
  'POST /v1/organizations/:organization/devices/:serial/revocation': org([
    'device-engineer',
    'security-officer',
    'org-admin',
  ]),
  'GET /v1/organizations/:organization/patients': org(['support', 'org-admin']),
  'POST /v1/organizations/:organization/patients': org(['care-coordinator', 'org-admin']),
  'GET /v1/organizations/:organization/care-teams': org([
    'clinician',
    'care-coordinator',
    'org-admin',
  ]),
  'POST /v1/organizations/:organization/care-teams': org(['org-admin']),
  'GET /v1/organizations/:organization/care-teams/:careTeam': row({
    clinician: 'AHAD',
    'care-coordinator': 'AHAD',
    'org-admin': 'AHAA',
  }),
  'PUT /v1/organizations/:organization/care-teams/:careTeam/members/:user': org(['org-admin']),
  'DELETE /v1/organizations/:organization/care-teams/:careTeam/members/:user': org(['org-admin']),
  'PUT /v1/organizations/:organization/care-teams/:careTeam/patients/:patient': org(['org-admin']),
  'DELETE /v1/organizations/:organization/care-teams/:careTeam/patients/:patient': org([
    'org-admin',
  ]),
  // Only for a patient outside the clinician's care teams: `own` is on theirs.
  'POST /v1/organizations/:organization/patients/:patient/break-glass': row({ clinician: 'DHDA' }),
  'GET /v1/organizations/:organization/break-glass-reviews': org(['privacy-officer']),
  'POST /v1/organizations/:organization/break-glass-reviews/:grant/closure': org([
    'privacy-officer',
  ]),
  'GET /v1/organizations/:organization/audit/checkpoint': org([
    'privacy-officer',
    'security-officer',
    'auditor',
  ]),
  'GET /v1/platform/audit/checkpoint': row({ 'platform-operator': 'AAAA' }, 'DDDD', 'AAAA'),
  'GET /v1/organizations/:organization/audit/tile/*': org([
    'privacy-officer',
    'security-officer',
    'auditor',
  ]),
  'GET /v1/organizations/:organization/audit/proof/inclusion': org([
    'privacy-officer',
    'security-officer',
    'auditor',
  ]),
  'GET /v1/organizations/:organization/audit/proof/consistency': org([
    'privacy-officer',
    'security-officer',
    'auditor',
  ]),
  'GET /v1/platform/audit/tile/*': row({ 'platform-operator': 'AAAA' }, 'DDDD', 'AAAA'),
  'GET /v1/platform/audit/proof/inclusion': row({ 'platform-operator': 'AAAA' }, 'DDDD', 'AAAA'),
  'GET /v1/platform/audit/proof/consistency': row({ 'platform-operator': 'AAAA' }, 'DDDD', 'AAAA'),
  // A patient reads through this route only naming PATRQT; under its default, TREAT, never.
  'GET /v1/organizations/:organization/patients/:patient/observations': row({
    patient: 'DHDD',
    clinician: 'AHAD',
    'care-coordinator': 'AHAD',
  }),
  'GET /v1/me/observations': row({ patient: 'AAAA' }, 'DDDD', 'DDDD'),

  // The FHIR API. Patient, Observation and the Device search name patient `own` in
  // ownOrganization; the Device read there is of an unassigned device. Support reads Patients
  // without identity and Devices, never Observations; AuditEvent is for the audit roles.
  'GET /v1/organizations/:organization/fhir/Patient/:id': row({
    patient: 'AHAD',
    clinician: 'AHAD',
    'care-coordinator': 'AHAD',
    support: 'AHAA',
  }),
  'GET /v1/organizations/:organization/fhir/Patient': row({
    patient: 'AHAD',
    clinician: 'AHAD',
    'care-coordinator': 'AHAD',
    support: 'AHAA',
  }),
  'GET /v1/organizations/:organization/fhir/Observation/:id': row({
    patient: 'AHAD',
    clinician: 'AHAD',
    'care-coordinator': 'AHAD',
  }),
  'GET /v1/organizations/:organization/fhir/Observation': row({
    patient: 'AHAD',
    clinician: 'AHAD',
    'care-coordinator': 'AHAD',
  }),
  'GET /v1/organizations/:organization/fhir/Device/:id': row({
    patient: 'DHAD',
    clinician: 'DHAD',
    'care-coordinator': 'DHAD',
    support: 'AHAA',
  }),
  'GET /v1/organizations/:organization/fhir/Device': row({
    patient: 'AHAD',
    clinician: 'AHAD',
    'care-coordinator': 'AHAD',
    support: 'AHAA',
  }),
  'GET /v1/organizations/:organization/fhir/AuditEvent': org(['privacy-officer', 'auditor']),
  // People, rollouts and the device lifecycle.
  'GET /v1/organizations/:organization/people': org(['org-admin']),
  'POST /v1/organizations/:organization/people': org(['org-admin']),
  'PUT /v1/organizations/:organization/people/:user/roles/:role': org(['org-admin']),
  'DELETE /v1/organizations/:organization/people/:user/roles/:role': org(['org-admin']),
  'POST /v1/organizations/:organization/people/:user/disablement': org(['org-admin']),
  'POST /v1/organizations/:organization/people/:user/setup-tokens': org(['org-admin']),
  // A platform resource: organization roles are refused (403), not hidden.
  'POST /v1/platform/organizations/:organization/first-admin': row(
    { 'platform-operator': 'AAAA' },
    'DDDD',
    'AAAA',
  ),
  'GET /v1/organizations/:organization/releases': org(['device-engineer', 'org-admin']),
  'GET /v1/organizations/:organization/rollouts': org(['support', 'device-engineer', 'org-admin']),
  'POST /v1/organizations/:organization/rollouts': org(['device-engineer', 'org-admin']),
  'GET /v1/organizations/:organization/rollouts/:rollout': org([
    'support',
    'device-engineer',
    'org-admin',
  ]),
  'POST /v1/organizations/:organization/rollouts/:rollout/pause': org([
    'device-engineer',
    'org-admin',
  ]),
  'POST /v1/organizations/:organization/rollouts/:rollout/resume': org([
    'device-engineer',
    'org-admin',
  ]),
  'POST /v1/organizations/:organization/rollouts/:rollout/abort': org([
    'device-engineer',
    'org-admin',
  ]),
  'POST /v1/organizations/:organization/devices/:serial/wipe': org([
    'device-engineer',
    'security-officer',
    'org-admin',
  ]),
  'GET /v1/organizations/:organization/devices/:serial/wipe-certificates': org([
    'device-engineer',
    'security-officer',
    'org-admin',
  ]),
  'POST /v1/organizations/:organization/devices/:serial/decommission': org([
    'device-engineer',
    'org-admin',
  ]),
}

/** Rows for a route of an organization that `allowed` may use everywhere in it. */
function org(allowed: readonly Role[]): Record<Role, string> {
  return row(Object.fromEntries(allowed.map((role) => [role, 'AHAA'])))
}

/**
 * A full row: the given cells, `others` for every other role of an organization (denied in
 * their own, hidden in another) and `platform` for the platform operator, who holds no role in
 * any organization and so finds none of its resources.
 */
function row(
  cells: Partial<Record<Role, string>>,
  others = 'DHDD',
  platform = 'HHHH',
): Record<Role, string> {
  return Object.fromEntries(
    roles.map((role) => [role, cells[role] ?? (role === 'platform-operator' ? platform : others)]),
  ) as Record<Role, string>
}

/** The URL parameters, body and purpose-of-use header of one request in one context. */
interface Prepared {
  readonly params: Record<string, string>
  readonly query?: Record<string, string>
  readonly body?: unknown
}

/** The error code of an answer: problem details' `code`, or an OperationOutcome's first. */
function errorCode(json: unknown): string | undefined {
  const body = json as Record<string, unknown> | undefined
  if (typeof body?.['code'] === 'string') return body['code']
  const issue = (body?.['issue'] as { diagnostics?: string }[] | undefined)?.[0]
  return issue?.diagnostics?.split(':')[0]
}

/** The error message of an answer, either way. */
function errorDetail(json: unknown): string | undefined {
  const body = json as Record<string, unknown> | undefined
  if (typeof body?.['detail'] === 'string') return body['detail']
  const issue = (body?.['issue'] as { diagnostics?: string }[] | undefined)?.[0]
  return issue?.diagnostics?.split(': ').slice(1).join(': ')
}

for (const { dialect, skip } of dialects) {
  describe(`authorization matrix on ${dialect}`, { skip }, () => {
    const fixture = new AccessFixture()

    before(async () => {
      await fixture.start(dialect)
      // Releases as the release repository would answer them: each fits the Pulse oximeter.
      fixture.running.ward.rollouts.useReleases({
        findRelease: async (tx, organizationId, releaseId) => ({
          id: releaseId,
          version: '1.1.0',
          targetName: 'oximeter-1.1.0.bin',
          deviceModelIds: [(await findDeviceModel(tx, organizationId, 'Pulse oximeter')).id],
        }),
      })
      for (const slug of [fixture.alpha.slug, fixture.beta.slug]) await activeDevice(slug)
    })

    /** A fresh device of `slug` that has enrolled (active), as rollouts and wipes need. */
    const activeDevice = async (slug: string): Promise<string> => {
      const serial = await fixture.device(slug)
      const ward = fixture.running.ward
      const organization = slug === fixture.alpha.slug ? fixture.alpha : fixture.beta
      await ward.store.transaction(async (tx) =>
        setDeviceStatus(tx, await findDevice(tx, organization.id, serial), 'active'),
      )
      return serial
    }

    /** A fresh rollout in `slug`, every open one there aborted first; paused when asked. */
    const rollout = async (slug: string, paused = false): Promise<string> => {
      const rollouts = fixture.running.ward.rollouts
      const system = systemContext('test')
      for (const open of await rollouts.list(slug)) {
        if (open.state === 'running' || open.state === 'paused') {
          await rollouts.abort(system, slug, open.id)
        }
      }
      const made = await rollouts.create(system, slug, { releaseId: fixture.unique('release') })
      if (paused) await rollouts.pause(system, slug, made.id)
      return made.id
    }

    /** A manufacturer registered in `slug` and a CRL its CA signed, made once per organization. */
    const manufacturers = new Map<string, Promise<{ name: string; crl: string }>>()
    const manufacturer = (slug: string) => {
      let made = manufacturers.get(slug)
      if (made === undefined) {
        made = (async () => {
          const name = 'Matrix Maker'
          const ca = await testManufacturerCa(`CN=Matrix Maker ${slug}`)
          await fixture.running.ward.fleet.registerManufacturer(systemContext('test'), slug, {
            name,
            certificatePem: ca.certificatePem,
          })
          return { name, crl: await testManufacturerCrl(ca, { number: 1 }) }
        })()
        manufacturers.set(slug, made)
      }
      return made
    }

    /** A fresh person of `organization` holding `clinician`. */
    const person = async (organization: Organization): Promise<string> => {
      const created = await fixture.running.ward.people.createUser(systemContext('test'), {
        organizationId: organization.id,
        loginName: fixture.unique('person'),
        roles: ['clinician'],
      })
      return created.user.id
    }
    after(async () => {
      await fixture.stop()
    })

    const place = (context: Context): { organization: Organization; patient: Patient } => {
      switch (context) {
        case 'ownOrganization':
        case 'ownPatient':
          return { organization: fixture.alpha, patient: fixture.own }
        case 'otherOrganization':
          return { organization: fixture.beta, patient: fixture.betaPatient }
        case 'otherPatient':
          return { organization: fixture.alpha, patient: fixture.other }
      }
    }

    /** Builds the request of `key` in `context`, creating fresh resources where it changes them. */
    const prepare = async (key: string, context: Context, role: Role): Promise<Prepared> => {
      const { organization, patient } = place(context)
      const slug = organization.slug
      const tied = context === 'ownPatient' || context === 'otherPatient'
      const team =
        context === 'otherOrganization'
          ? fixture.betaTeam
          : context === 'otherPatient'
            ? fixture.otherTeam
            : fixture.team
      const base = { organization: slug, patient: patient.pseudonym, careTeam: team.id }
      const device = (status?: 'suspended') =>
        fixture.device(slug, tied ? patient : undefined, status)

      switch (key) {
        case 'POST /v1/organizations/:organization/device-models':
          return {
            params: base,
            body: {
              name: fixture.unique('Model'),
              manufacturer: 'Acme',
              policy: standardDeviceModels[0]?.policy,
            },
          }
        case 'POST /v1/organizations/:organization/devices':
          return { params: base, body: { serial: fixture.unique('NEW'), model: 'Pulse oximeter' } }
        case 'PUT /v1/organizations/:organization/devices/:serial/patient':
          return {
            params: { ...base, serial: await device() },
            body: { patient: patient.pseudonym },
          }
        case 'POST /v1/organizations/:organization/devices/:serial/enrollment-tokens':
        case 'POST /v1/organizations/:organization/devices/:serial/suspension':
        case 'POST /v1/organizations/:organization/devices/:serial/revocation':
          return { params: { ...base, serial: await device() } }
        case 'PUT /v1/organizations/:organization/manufacturers/:manufacturer/crl': {
          // The same CRL each time: an upload of the stored CRL number again is accepted.
          const { name, crl } = await manufacturer(slug)
          return { params: { ...base, manufacturer: name }, body: { crl } }
        }
        case 'DELETE /v1/organizations/:organization/devices/:serial/suspension':
          return { params: { ...base, serial: await device('suspended') } }
        case 'POST /v1/organizations/:organization/patients':
          return {
            params: base,
            body: {
              identity: { name: { family: 'Testpatient', given: [] }, birthDate: '1980-02-02' },
            },
          }
        case 'POST /v1/organizations/:organization/care-teams':
          return { params: base, body: { name: fixture.unique('Team') } }
        case 'PUT /v1/organizations/:organization/care-teams/:careTeam/members/:user':
        case 'DELETE /v1/organizations/:organization/care-teams/:careTeam/members/:user':
          return { params: { ...base, user: await person(organization) } }
        case 'DELETE /v1/organizations/:organization/care-teams/:careTeam/patients/:patient': {
          const fresh = await fixture.careTeam(organization, patient)
          return { params: { ...base, careTeam: fresh.id } }
        }
        case 'POST /v1/organizations/:organization/patients/:patient/break-glass':
          return {
            params: base,
            body: { reasonCode: 'patient-unresponsive', reason: 'matrix test emergency' },
          }
        case 'POST /v1/organizations/:organization/break-glass-reviews/:grant/closure':
          return {
            params: { ...base, grant: (await fixture.grant(patient)).id },
            body: { outcome: 'justified' },
          }
        // The FHIR API.
        case 'GET /v1/organizations/:organization/fhir/Patient/:id':
          return { params: { ...base, id: patient.pseudonym } }
        case 'GET /v1/organizations/:organization/fhir/Patient':
          return { params: base, query: { _id: patient.pseudonym } }
        case 'GET /v1/organizations/:organization/fhir/Observation/:id':
          return { params: { ...base, id: await observationOf(patient) } }
        case 'GET /v1/organizations/:organization/fhir/Observation':
        case 'GET /v1/organizations/:organization/fhir/Device':
          return { params: base, query: { patient: `Patient/${patient.pseudonym}` } }
        case 'GET /v1/organizations/:organization/fhir/Device/:id':
          return { params: { ...base, id: await deviceId(slug, await device()) } }
        case 'POST /v1/organizations/:organization/people':
          return { params: base, body: { login: fixture.unique('person'), roles: ['clinician'] } }
        case 'PUT /v1/organizations/:organization/people/:user/roles/:role':
          return {
            params: { ...base, user: await person(organization), role: 'care-coordinator' },
            body: {},
          }
        case 'DELETE /v1/organizations/:organization/people/:user/roles/:role':
          return { params: { ...base, user: await person(organization), role: 'clinician' } }
        case 'POST /v1/organizations/:organization/people/:user/disablement':
        case 'POST /v1/organizations/:organization/people/:user/setup-tokens':
          return { params: { ...base, user: await person(organization) } }
        case 'POST /v1/platform/organizations/:organization/first-admin': {
          // Each allowed call needs an organization without an admin.
          const fresh =
            role === 'platform-operator'
              ? (
                  await fixture.running.ward.createOrganization(systemContext('test'), {
                    slug: fixture.unique('org'),
                    name: 'Fresh Clinic',
                  })
                ).slug
              : slug
          return { params: { organization: fresh }, body: { login: fixture.unique('admin') } }
        }
        case 'POST /v1/organizations/:organization/rollouts':
          await rollout(slug)
          await fixture.running.ward.rollouts.abort(
            systemContext('test'),
            slug,
            (await fixture.running.ward.rollouts.list(slug))[0]?.id ?? '',
          )
          return { params: base, body: { release: fixture.unique('release') } }
        case 'GET /v1/organizations/:organization/rollouts/:rollout':
        case 'POST /v1/organizations/:organization/rollouts/:rollout/pause':
        case 'POST /v1/organizations/:organization/rollouts/:rollout/abort':
          return { params: { ...base, rollout: await rollout(slug) } }
        case 'POST /v1/organizations/:organization/rollouts/:rollout/resume':
          return { params: { ...base, rollout: await rollout(slug, true) } }
        case 'POST /v1/organizations/:organization/devices/:serial/wipe':
          return { params: { ...base, serial: await activeDevice(slug) } }
        case 'GET /v1/organizations/:organization/devices/:serial/wipe-certificates':
        case 'POST /v1/organizations/:organization/devices/:serial/decommission':
          return { params: { ...base, serial: await device() } }
        case 'GET /v1/organizations/:organization/audit/tile/*':
          return { params: { ...base, '*': await firstTile(slug) } }
        case 'GET /v1/platform/audit/tile/*':
          return { params: { '*': await firstTile(platformLogName) } }
        case 'GET /v1/organizations/:organization/audit/proof/inclusion':
        case 'GET /v1/platform/audit/proof/inclusion': {
          const size = await signedSize(key.includes('platform') ? platformLogName : slug)
          return { params: base, query: { index: '0', size: String(size) } }
        }
        case 'GET /v1/organizations/:organization/audit/proof/consistency':
        case 'GET /v1/platform/audit/proof/consistency': {
          const size = await signedSize(key.includes('platform') ? platformLogName : slug)
          return { params: base, query: { from: '1', to: String(size) } }
        }
        default:
          return { params: base }
      }
    }

    /** The size of the log's newest signed checkpoint, which proofs reach up to. */
    const signedSize = async (log: string): Promise<number> =>
      (await fixture.running.ward.currentCheckpoint(log)).size

    /** The path after `tile/` of the first level-0 tile of the log's newest checkpoint. */
    const firstTile = async (log: string): Promise<string> => {
      const { size } = await fixture.running.ward.currentCheckpoint(log)
      return size >= 256 ? '0/000' : `0/000.p/${size}`
    }

    const observationOf = async (patient: Patient): Promise<string> => {
      const row = await fixture.running.ward.store.db
        .selectFrom('observations')
        .select('id')
        .where('patient_id', '=', patient.id)
        .executeTakeFirstOrThrow()
      return row.id
    }

    const deviceId = async (slug: string, serial: string): Promise<string> => {
      const devices = await fixture.running.ward.fleet.listDevices(slug)
      const found = devices.find((device) => device.serial === serial)
      assert.ok(found)
      return found.id
    }

    test('every route of the route table has a matrix row, and every row a route', () => {
      const keys = routes.map((route) => `${route.method} ${route.url}`)
      assert.deepEqual([...new Set(keys)].sort(), keys.slice().sort(), 'routes are unique')
      for (const key of keys) assert.ok(matrix[key], `no matrix row for ${key}`)
      for (const key of Object.keys(matrix)) assert.ok(keys.includes(key), `no route ${key}`)
    })

    for (const route of routes) {
      const key = `${route.method} ${route.url}`
      test(`${key} answers each role as the matrix says`, async () => {
        const expected = matrix[key]
        assert.ok(expected, `no matrix row for ${key}`)
        const failures: string[] = []
        for (const role of roles) {
          const cells: string = expected[role]
          assert.equal(cells.length, contexts.length, `${key} ${role}: one cell per context`)
          for (const [index, context] of contexts.entries()) {
            const cell = cells[index] as Cell
            const prepared = await prepare(key, context, role)
            const path = route.url
              .replace(/:([a-zA-Z]+)/g, (_, name: string) => {
                const value = prepared.params[name]
                assert.ok(value !== undefined, `${key}: no value for :${name}`)
                return encodeURIComponent(value)
              })
              // A wildcard's value is a path: its slashes stay.
              .replace(/\*$/, () => {
                const value = prepared.params['*']
                assert.ok(value !== undefined, `${key}: no value for *`)
                return value
              })
            const query =
              prepared.query === undefined ? '' : `?${new URLSearchParams(prepared.query)}`
            const answer = await fixture.call(route.method, path + query, role, prepared.body)
            const got: Cell | string =
              answer.status >= 200 && answer.status < 300
                ? 'A'
                : answer.status === 403
                  ? 'D'
                  : answer.status === 404
                    ? 'H'
                    : `${answer.status} ${answer.text}`
            if (got !== cell) failures.push(`${role} in ${context}: expected ${cell}, got ${got}`)
            if (got === 'H') {
              assert.equal(errorCode(answer.json), 'ERR_NOT_FOUND')
              assert.equal(errorDetail(answer.json), 'no such resource')
            }
            if (got === 'D') assert.equal(errorCode(answer.json), 'ERR_ACCESS_DENIED')
          }
        }
        assert.deepEqual(failures, [], failures.join('\n'))
      })
    }

    test('every route answers 401 with problem details to a request without a principal', async () => {
      for (const route of routes) {
        const path = route.url.replace(/:([a-zA-Z]+)/g, 'x')
        const answer = await fixture.call(route.method, path, undefined, {})
        assert.equal(answer.status, 401, `${route.method} ${route.url}`)
        assert.equal(errorCode(answer.json), 'ERR_UNAUTHENTICATED')
        assert.match(String(answer.headers['www-authenticate']), /^Bearer/)
      }
    })
  })
}
